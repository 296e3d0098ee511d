package httpmw

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
)

// ErrInvalidOption is returned by RateLimit, Invalidate and Admit when an
// option is invalid, options conflict, or an option does not apply to the
// constructor it was given to; the wrapped message names the option.
var ErrInvalidOption = errors.New("httpmw: invalid option")

// ErrNoKey is what a key function returns (wrapped with %w) when the request
// carries nothing to key it by, such as a missing API key: the middleware
// answers 400 Bad Request. Any other key-function error is the server's
// fault and gets 500 Internal Server Error.
var ErrNoKey = errors.New("httpmw: request has no usable rate-limit key")

// DefaultPolicyName is the policy name used in the RateLimit fields unless
// WithPolicyName says otherwise.
const DefaultPolicyName = "default"

// maxPolicyName bounds the policy name, which is sent on every response.
const maxPolicyName = 64

// Header names accepted by WithClientIPHeaders.
const (
	// HeaderXForwardedFor is the de facto X-Forwarded-For header: a comma
	// separated list of addresses, each proxy appending its peer.
	HeaderXForwardedFor = "X-Forwarded-For"
	// HeaderForwarded is the Forwarded header of RFC 7239.
	HeaderForwarded = "Forwarded"
)

// Option configures RateLimit, Invalidate or Admit; each option's comment
// says which it applies to, and a constructor rejects the others with
// ErrInvalidOption. The zero Option is invalid.
type Option struct {
	name  string
	scope target
	apply func(*config) error
}

// target is the set of constructors an Option applies to.
type target uint8

const (
	forRateLimit target = 1 << iota
	forInvalidate
	forAdmit

	forAll = forRateLimit | forInvalidate | forAdmit
)

// String names the constructor, for errors.
func (t target) String() string {
	switch t {
	case forRateLimit:
		return "RateLimit"
	case forInvalidate:
		return "Invalidate"
	case forAdmit:
		return "Admit"
	}
	return "this constructor"
}

type config struct {
	keyFunc     func(*http.Request) (string, error)
	trusted     []netip.Prefix
	trustedSet  bool
	useXFF      bool
	useFwd      bool
	headersSet  bool
	cost        func(*http.Request) int
	policyName  string
	logger      *slog.Logger
	denyHandler http.Handler

	sessionStart func(*http.Request) bool // Admit
	maxNotices   int                      // Invalidate
}

func defaultConfig() config {
	return config{
		useXFF:     true,
		useFwd:     true,
		policyName: DefaultPolicyName,
		logger:     slog.New(slog.DiscardHandler),
		maxNotices: DefaultMaxNotices,
	}
}

func buildConfig(t target, opts []Option) (config, error) {
	c := defaultConfig()
	for i, opt := range opts {
		if opt.apply == nil {
			return c, fmt.Errorf("%w: option %d is the zero Option", ErrInvalidOption, i)
		}
		if opt.scope&t == 0 {
			return c, fmt.Errorf("%w: %s does not apply to %v", ErrInvalidOption, opt.name, t)
		}
		if err := opt.apply(&c); err != nil {
			return c, fmt.Errorf("%w: %s: %w", ErrInvalidOption, opt.name, err)
		}
	}
	if c.keyFunc != nil && c.trustedSet {
		return c, fmt.Errorf("%w: WithTrustedProxies configures the default key function, which WithKeyFunc replaces; use one or the other", ErrInvalidOption)
	}
	if c.keyFunc != nil && c.headersSet {
		return c, fmt.Errorf("%w: WithClientIPHeaders configures the default key function, which WithKeyFunc replaces; use one or the other", ErrInvalidOption)
	}
	return c, nil
}

// WithKeyFunc sets the function that names the client of a request: for
// RateLimit, the bucket it draws from; for Invalidate and Admit, its client
// ID (at most admission.MaxClientIDLen bytes), which places it in cohorts and
// admission slots. The default key is the client IP address (see
// WithTrustedProxies) for RateLimit, and for Invalidate and Admit the
// HeaderClient header when the request carries one, else the client IP
// address. An error wrapping ErrNoKey gets 400 Bad Request, any other error
// (or an empty key) 500 Internal Server Error; neither calls the limiter,
// coordinator or admission. f is called concurrently and must be safe for
// concurrent use. It cannot be combined with WithTrustedProxies or
// WithClientIPHeaders, which configure the default key function. Applies
// to RateLimit, Invalidate and Admit.
func WithKeyFunc(f func(*http.Request) (string, error)) Option {
	return Option{name: "WithKeyFunc", scope: forAll, apply: func(c *config) error {
		if f == nil {
			return errors.New("key function is nil")
		}
		c.keyFunc = f
		return nil
	}}
}

// WithTrustedProxies names the reverse proxies (as CIDR prefixes such as
// "10.0.0.0/8", or single addresses such as "192.0.2.1") whose forwarding
// headers the default key function believes. A request whose immediate peer
// (Request.RemoteAddr) is inside one of them is keyed by the right-most
// address of the X-Forwarded-For / Forwarded chain that is not itself a
// trusted proxy; any other request is keyed by its peer address, whatever
// headers it carries. By default no proxy is trusted. A prefix that does not
// parse is an error naming it. Applies to RateLimit, Invalidate and Admit.
func WithTrustedProxies(cidrs ...string) Option {
	return Option{name: "WithTrustedProxies", scope: forAll, apply: func(c *config) error {
		for _, s := range cidrs {
			p, err := parsePrefix(s)
			if err != nil {
				return err
			}
			c.trusted = append(c.trusted, p)
		}
		c.trustedSet = true
		return nil
	}}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			// An IPv4-mapped prefix would never match: addresses
			// are unmapped before the check.
			return netip.Prefix{}, fmt.Errorf("CIDR %q: IPv4-mapped IPv6 prefixes are not supported; write the IPv4 prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: neither a prefix nor an address: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: zoned addresses are not supported", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// WithClientIPHeaders restricts the forwarding headers the default key
// function reads from trusted proxies to names, each HeaderXForwardedFor or
// HeaderForwarded (case-insensitive). By default both are read, and when a
// request carries both they must name the same client, or the request is
// keyed by its peer: that keeps a client from choosing its key with a header
// the proxy passes through untouched. Name only the header your proxies set
// (and overwrite or append to) if your clients may send the other one.
// Applies to RateLimit, Invalidate and Admit.
func WithClientIPHeaders(names ...string) Option {
	return Option{name: "WithClientIPHeaders", scope: forAll, apply: func(c *config) error {
		if len(names) == 0 {
			return errors.New("no header named")
		}
		c.useXFF, c.useFwd, c.headersSet = false, false, true
		for _, n := range names {
			switch {
			case strings.EqualFold(n, HeaderXForwardedFor):
				c.useXFF = true
			case strings.EqualFold(n, HeaderForwarded):
				c.useFwd = true
			default:
				return fmt.Errorf("header %q is neither %s nor %s", n, HeaderXForwardedFor, HeaderForwarded)
			}
		}
		return nil
	}}
}

// WithCost sets the number of tokens a request takes (default 1). f is
// called concurrently, once per request. A cost of 0 only reads the bucket.
// A negative cost, or one above the limit's burst, can never be granted:
// it is a server bug, not a reason for the client to retry, so the request
// gets 500 Internal Server Error without Retry-After (and the error is
// logged, throttled). Applies to RateLimit only.
func WithCost(f func(*http.Request) int) Option {
	return Option{name: "WithCost", scope: forRateLimit, apply: func(c *config) error {
		if f == nil {
			return errors.New("cost function is nil")
		}
		c.cost = f
		return nil
	}}
}

// WithPolicyName sets the policy name sent in the RateLimit-Policy and
// RateLimit fields (default DefaultPolicyName). It is sent as a structured
// field String, so it must be 1 to 64 bytes of printable ASCII. Applies to
// RateLimit only.
func WithPolicyName(name string) Option {
	return Option{name: "WithPolicyName", scope: forRateLimit, apply: func(c *config) error {
		if err := checkPolicyName(name); err != nil {
			return err
		}
		c.policyName = name
		return nil
	}}
}

func checkPolicyName(name string) error {
	if name == "" || len(name) > maxPolicyName {
		return fmt.Errorf("policy name must be 1 to %d bytes, got %d", maxPolicyName, len(name))
	}
	for i := 0; i < len(name); i++ {
		if ch := name[i]; ch < 0x20 || ch > 0x7e {
			return fmt.Errorf("policy name %q: byte %d (%#x) is not printable ASCII, which a structured field String requires", name, i, ch)
		}
	}
	return nil
}

// WithLogger sets the logger for limiter, coordinator, admission and
// key-function errors (and, at Debug level, malformed herdcap headers). By
// default nothing is logged. Records are rate limited to about one per
// second per kind, carrying a count of those suppressed, so that an outage
// does not become a log storm. Applies to RateLimit, Invalidate and Admit.
func WithLogger(l *slog.Logger) Option {
	return Option{name: "WithLogger", scope: forAll, apply: func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	}}
}

// WithDenyHandler sets a handler that writes the body of 429 and 503
// responses in place of the default short plain-text message. The status
// code, Retry-After and RateLimit fields are set by the middleware and
// re-applied when h writes its header, so h cannot change them; it may add
// headers (such as Content-Type) and learn why it was called from
// DenialFromContext(r.Context()). Applies to RateLimit only.
func WithDenyHandler(h http.Handler) Option {
	return Option{name: "WithDenyHandler", scope: forRateLimit, apply: func(c *config) error {
		if h == nil {
			return errors.New("handler is nil")
		}
		c.denyHandler = h
		return nil
	}}
}
