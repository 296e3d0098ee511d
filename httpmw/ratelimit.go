package httpmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// ErrNoKey is what a key function returns (wrapped with %w) when the
// request carries nothing to key it by, such as a missing API key: the
// middleware answers 400 Bad Request. Any other key-function error is the
// server's fault and gets 500 Internal Server Error.
var ErrNoKey = errors.New("httpmw: request has no usable rate-limit key")

// Policy is one rate limit RateLimit applies to every request: a budget,
// and how a request is keyed, limited and costed against it.
//
// The functions are called concurrently, once per request, under
// recover: an error or a panic answers the request (see RateLimit) and is
// logged naming the policy; it never crashes the server. The zero Policy
// is invalid: Budget is required.
type Policy struct {
	// Name is the policy's name in the RateLimit and RateLimit-Policy
	// fields and in log records: 1 to 64 bytes of printable ASCII. If
	// Name is "", "default". Names must be unique within a RateLimit, and
	// should be across the RateLimit middlewares a request passes, whose
	// fields share one list.
	Name string
	// Budget is the token bucket the policy draws from. Required.
	Budget limiter.Budget
	// Key names the bucket a request draws from. If Key is nil, the
	// client's address (RateLimitConfig.ClientIP). An error wrapping
	// ErrNoKey answers 400 Bad Request; any other error, a panic or an
	// empty key 500 Internal Server Error; no budget is asked then.
	Key func(*http.Request) (string, error)
	// Limit, if set, returns the request's own limit (per plan, per key,
	// per route), which the key's bucket then refills at, ramping on
	// change (see limiter.Request.Limit). If Limit is nil, or returns the
	// zero Limit, the budget's own limit. An error, a panic or an invalid
	// limit (limiter.Limit.Validate) answers 500, before any policy's
	// budget is asked.
	Limit func(*http.Request) (limiter.Limit, error)
	// Cost is the number of tokens a request takes. If Cost is nil, 1. A
	// cost of 0 only reads the bucket; a negative one, or one above the
	// burst, can never be granted: a server bug, answered 500 without
	// Retry-After before any policy's budget is asked. The burst is the
	// per-request limit's, else the budget's own when it reports it
	// through a Limit() limiter.Limit method (as limiter.Local,
	// fleet.Strict and fleet.Leased do); a budget that does not is left
	// to reject the cost itself, after the other policies took theirs.
	Cost func(*http.Request) int
	// Shadow makes the policy decide and report (in the log, and in the
	// fields when RateLimitConfig.ShadowHeaders) without ever refusing or
	// failing a request: to try a limit out before enforcing it. Its
	// functions' failures are logged as the server bugs they are (Error),
	// and the policy is then left out of the request.
	Shadow bool
}

// RateLimitConfig configures RateLimit. The zero value keys requests by
// the peer's address (an IPv6 client by its /64), limits every request,
// sends the IETF fields only, answers refusals with a short plain-text
// body, holds up to 1024 refusals at once (see RateLimit), and tells
// clients to come back in a second when a budget fails without saying
// when.
type RateLimitConfig struct {
	// ClientIP finds and keys the client's address, for the policies
	// without a Key. It must be zero when every policy has a Key.
	ClientIP ClientIP
	// Skip, if set, exempts the requests for which it returns true: they
	// pass untouched, and no budget is asked. It is called concurrently.
	Skip func(*http.Request) bool
	// LegacyHeaders also sends X-RateLimit-Limit (the burst),
	// X-RateLimit-Remaining and X-RateLimit-Reset (seconds, as the
	// RateLimit field's t) of the most restrictive policy: the one that
	// refused, else the one with the fewest tokens left.
	LegacyHeaders bool
	// ShadowHeaders also sends the shadow policies' members in the
	// RateLimit and RateLimit-Policy fields.
	ShadowHeaders bool
	// Denied, if set, writes the body of 429 and 503 responses in place of
	// a short plain-text message. The status code and the rate-limit
	// fields are the middleware's and are applied again when Denied
	// writes its header, so Denied cannot change them; it may add fields
	// (such as Content-Type) and learn why it was called from
	// DenialFromContext.
	Denied http.Handler
	// MaxHeld is the most refusals held at once for plain clients (see
	// RateLimit); beyond it, a refusal is answered at once with its wait
	// rounded up to whole seconds. If MaxHeld is 0, 1024; if negative,
	// no refusal is held.
	MaxHeld int
	// UnavailableRetryAfter is the wait told with a 503 when a budget
	// fails without one (Retry-After, rounded up to whole seconds). If
	// UnavailableRetryAfter is 0, 1 s; it must not be negative.
	UnavailableRetryAfter time.Duration
	// Clock times the holds. If Clock is nil, the system clock.
	Clock limiter.Clock
	// Logger receives budget failures and server bugs, shadow policies'
	// too (Error; a shadow policy's failed budget: Warn), shadow refusals
	// (Info), and refusals and client faults (Debug), each kind throttled
	// to about one record a second with a count of those suppressed. If
	// Logger is nil, nothing is logged.
	Logger *slog.Logger
	// Observe receives a shadow policy's refusals as observe.Decision
	// events of Outcome observe.Shadow, named by the policy (its budget,
	// if observed, reports its own decision too). Read once at
	// construction; nil: none.
	Observe *observe.Hooks
}

// defaultMaxHeld is MaxHeld's default.
const defaultMaxHeld = 1024

// RateLimit returns middleware that passes every request through the
// policies before the next handler, or an error wrapping ErrInvalidConfig
// that names the bad field. The middleware is the standard
// func(http.Handler) http.Handler, safe for concurrent use.
//
// Every policy's budget is asked for every request (each takes its own
// tokens, whatever the others answer), and the most restrictive answer
// decides (package doc, "Several policies"):
//
//   - allowed by every non-shadow policy: the next handler runs, with the
//     RateLimit-Policy and RateLimit fields of every policy set;
//   - refused: 429 Too Many Requests with Retry-After, Herdcap-Retry-After-Ms
//     and the fields, told the refusing policy's wait, spread by the
//     budget so that callers refused together come back one after
//     another. So that plain clients, which wait whole seconds, come back
//     at their own time too, the refusal is held for the wait's fraction
//     of a second and Retry-After carries the whole seconds left (package
//     doc, "Plain clients");
//   - a budget failed (limiter.ErrUnavailable, say): 503 Service
//     Unavailable with Retry-After only (the budget's wait, else
//     UnavailableRetryAfter, in whole seconds rounded up) and no
//     rate-limit fields. That wait is no turn of the caller's own (a
//     breaker's open period is the same for everyone), so it is not sent
//     to the millisecond: clients jitter it, instead of coming back
//     together as the breaker half-opens;
//   - a key function failed: 400 for ErrNoKey, else 500; a limit or cost
//     function failed or panicked, or returned a limit or cost no budget
//     can grant: 500 without Retry-After, since no retry can succeed, and
//     no policy's budget is asked;
//   - the request's context ended while it was decided: 503, as nobody is
//     left to read it.
//
// No response body ever carries an error's text. On the allowed path,
// with the default key and a Local budget, the middleware makes two
// allocations (the field values).
func RateLimit(cfg RateLimitConfig, policies ...Policy) (func(http.Handler) http.Handler, error) {
	m, err := newRateLimit(cfg, policies)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(next, w, r)
		})
	}, nil
}

// rateLimit is RateLimit's middleware.
type rateLimit struct {
	core          *serverside.RateLimiter[*http.Request]
	fields        []policyHeader
	legacy        bool
	shadowHeaders bool
	denied        http.Handler
	maxHeld       int64
	held          atomic.Int64
	clock         limiter.Clock
}

// policyHeader is one policy's part of the fields.
type policyHeader struct {
	name   string // serialized, quotes included
	policy policyField
	shadow bool
}

// names are the words of RateLimit's log records.
var rateLimitNames = serverside.Names{Component: "httpmw: RateLimit", BadRequest: "400", Unavailable: "503", Internal: "500"}

func newRateLimit(cfg RateLimitConfig, policies []Policy) (*rateLimit, error) {
	if len(policies) == 0 {
		return nil, errors.New("no Policy given")
	}
	sc := serverside.RateLimitConfig[*http.Request]{
		Common: serverside.Common[*http.Request]{Skip: cfg.Skip, Keys: serverside.Keys{NoKey: ErrNoKey},
			Logger: cfg.Logger, Names: rateLimitNames},
		UnavailableRetryAfter: cfg.UnavailableRetryAfter,
		Path:                  "RateLimitConfig",
		Observe:               cfg.Observe,
	}
	keyed := 0
	for _, p := range policies {
		sc.Policies = append(sc.Policies, serverside.Policy[*http.Request]{Name: p.Name, Budget: p.Budget,
			Key: p.Key, Limit: p.Limit, Cost: p.Cost, Shadow: p.Shadow})
		if p.Key != nil {
			keyed++
		}
	}
	if keyed == len(policies) && !cfg.ClientIP.isZero() {
		return nil, errors.New("RateLimitConfig.ClientIP is set, but every Policy has its own Key")
	}
	ip, err := cfg.ClientIP.build("RateLimitConfig.ClientIP")
	if err != nil {
		return nil, err
	}
	sc.DefaultKey = ip.key
	core, err := serverside.NewRateLimiter(sc)
	if err != nil {
		return nil, err
	}
	m := &rateLimit{core: core, legacy: cfg.LegacyHeaders, shadowHeaders: cfg.ShadowHeaders, denied: cfg.Denied,
		maxHeld: int64(cfg.MaxHeld), clock: sysclock.Or(cfg.Clock)}
	if m.maxHeld == 0 {
		m.maxHeld = defaultMaxHeld
	}
	m.fields = make([]policyHeader, core.Len())
	for i := range m.fields {
		f := &m.fields[i]
		f.name = sfString(core.Name(i))
		f.policy.name = f.name
		f.shadow = core.Shadow(i)
	}
	return m, nil
}

// inlineStates is the number of policies whose states serve keeps on its
// stack.
const inlineStates = 4

// serve runs the middleware for r with states on the stack (each array is
// zeroed only when its branch runs).
func (m *rateLimit) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	switch n := m.core.Len(); {
	case n == 1:
		var one [1]serverside.State
		m.serveWith(next, w, r, one[:])
	case n <= inlineStates:
		var some [inlineStates]serverside.State
		m.serveWith(next, w, r, some[:n])
	default:
		m.serveWith(next, w, r, make([]serverside.State, n))
	}
}

// serveWith runs the middleware for r with zero states, one per policy.
func (m *rateLimit) serveWith(next http.Handler, w http.ResponseWriter, r *http.Request, states []serverside.State) {
	o := m.core.Decide(r.Context(), r, states)
	switch o.Verdict {
	case serverside.Pass:
		m.report(w.Header(), states, -1, 0)
		next.ServeHTTP(w, r)
	case serverside.Deny:
		m.deny(w, r, states, o)
	case serverside.Unavailable, serverside.Gone:
		setRetryAfter(w.Header(), o.RetryAfter, o.Exact)
		m.refuse(w, r, http.StatusServiceUnavailable, o, states)
	case serverside.BadRequest:
		writeText(w, http.StatusBadRequest)
	default:
		writeText(w, http.StatusInternalServerError)
	}
}

// deny answers 429 for the outcome o: after holding it for the fraction of
// a second of its wait, when it may, so that Retry-After's whole seconds
// bring a plain client back at its own time.
func (m *rateLimit) deny(w http.ResponseWriter, r *http.Request, states []serverside.State, o serverside.Outcome) {
	secs, left := m.hold(r.Context(), o.RetryAfter)
	h := w.Header()
	m.report(h, states, o.Policy, secs)
	vals := []string{seconds(secs), seconds(wire.CeilMillis(left))}
	h[headerRetryAfter] = vals[0:1:1]
	h[headerRetryAfterMillis] = vals[1:2:2]
	m.refuse(w, r, http.StatusTooManyRequests, o, states)
}

// setRetryAfter sets the fields of a 503 told to come back after ra:
// Retry-After (whole seconds, rounded up, at least 1) and, when ra is the
// decision's own (exact), Herdcap-Retry-After-Ms.
func setRetryAfter(h http.Header, ra time.Duration, exact bool) {
	_, secs := retryAfter(ra)
	vals := []string{secs, seconds(wire.CeilMillis(ra))}
	h[headerRetryAfter] = vals[0:1:1]
	if exact {
		h[headerRetryAfterMillis] = vals[1:2:2]
	}
}

// refusalFields are the fields of a refusal the middleware decides,
// applied again (or removed) when a Denied handler writes its header.
var refusalFields = []string{headerPolicy, headerRateLimit, headerRetryAfter, headerRetryAfterMillis,
	headerLegacyLimit, headerLegacyRemaining, headerLegacyReset}

// hold waits out the fraction of a second of a refusal's wait ra, when it
// has one and fewer than MaxHeld refusals are held, or until ctx is done.
// It returns the Retry-After to send and the exact wait left: the whole
// seconds left (possibly 0) after a hold, else ra rounded up to whole
// seconds, at least 1, and ra.
func (m *rateLimit) hold(ctx context.Context, ra time.Duration) (int64, time.Duration) {
	frac := ra % time.Second
	if frac <= 0 || m.maxHeld < 0 {
		secs, _ := retryAfter(ra)
		return secs, ra
	}
	if m.held.Add(1) > m.maxHeld {
		m.held.Add(-1)
		secs, _ := retryAfter(ra)
		return secs, ra
	}
	defer m.held.Add(-1)
	done := make(chan struct{})
	t := m.clock.AfterFunc(frac, func() { close(done) })
	select {
	case <-done:
	case <-ctx.Done():
		t.Stop()
	}
	return min(int64(ra/time.Second), maxSFInteger), ra - frac
}

// refuse writes a refusal (429 or 503) whose fields are already set on w:
// a plain-text body, or the Denied handler's.
func (m *rateLimit) refuse(w http.ResponseWriter, r *http.Request, status int, o serverside.Outcome, states []serverside.State) {
	if m.denied == nil {
		writeText(w, status)
		return
	}
	h := w.Header()
	dw := &denyWriter{ResponseWriter: w, status: status, vals: make([][]string, len(refusalFields))}
	for i, k := range refusalFields {
		dw.vals[i] = slices.Clone(h[k])
	}
	den := Denial{Status: status, RetryAfter: o.RetryAfter}
	if o.Policy >= 0 {
		den.Policy = m.core.Name(o.Policy)
		den.Decision = states[o.Policy].Decision
	}
	m.denied.ServeHTTP(dw, r.WithContext(context.WithValue(r.Context(), denialKey{}, den)))
	dw.WriteHeader(status) // in case the handler wrote nothing
}

// Bodies of the responses the middleware writes itself.
var (
	body400 = []byte("Bad Request\n")
	body429 = []byte("Too Many Requests\n")
	body500 = []byte("Internal Server Error\n")
	body503 = []byte("Service Unavailable\n")
)

// writeText writes status with its standard text as a plain-text body.
func writeText(w http.ResponseWriter, status int) {
	h := w.Header()
	vals := []string{"text/plain; charset=utf-8", "nosniff"}
	h["Content-Type"] = vals[0:1:1]
	h["X-Content-Type-Options"] = vals[1:2:2]
	w.WriteHeader(status)
	var body []byte
	switch status {
	case http.StatusBadRequest:
		body = body400
	case http.StatusTooManyRequests:
		body = body429
	case http.StatusServiceUnavailable:
		body = body503
	default:
		body = body500
	}
	_, _ = w.Write(body)
}

// Denial describes why a Denied handler (RateLimitConfig.Denied) was
// called.
type Denial struct {
	// Status is 429 (a quota is spent) or 503 (a budget failed).
	Status int
	// RetryAfter is the wait the refusal was told, unrounded (before any
	// hold, and before rounding to the whole seconds of Retry-After): for
	// a 429 the caller's turn, sent to the millisecond too; for a 503 the
	// failed budget's wait (or UnavailableRetryAfter), sent as Retry-After
	// alone.
	RetryAfter time.Duration
	// Policy is the name of the policy that refused or failed.
	Policy string
	// Decision is that policy's answer. After a budget failure it may be
	// the zero Decision but for RetryAfter.
	Decision limiter.Decision
}

type denialKey struct{}

// DenialFromContext returns the Denial a Denied handler was called for,
// from its request's context; false outside a Denied handler.
func DenialFromContext(ctx context.Context) (Denial, bool) {
	d, ok := ctx.Value(denialKey{}).(Denial)
	return d, ok
}

// denyWriter hands a Denied handler the response while keeping the status
// code and rate-limit fields the middleware chose.
type denyWriter struct {
	http.ResponseWriter
	status int
	vals   [][]string // of refusalFields
	wrote  bool
}

// WriteHeader writes the middleware's status, whatever code is asked for,
// after applying the rate-limit fields again.
func (dw *denyWriter) WriteHeader(int) {
	if dw.wrote {
		return
	}
	dw.wrote = true
	h := dw.Header()
	for i, k := range refusalFields {
		if v := dw.vals[i]; v != nil {
			h[k] = v
		} else {
			delete(h, k)
		}
	}
	dw.ResponseWriter.WriteHeader(dw.status)
}

// Write writes the status first if needed.
func (dw *denyWriter) Write(p []byte) (int, error) {
	dw.WriteHeader(dw.status)
	return dw.ResponseWriter.Write(p)
}

// Flush writes the status first if needed, then flushes. There is
// deliberately no Unwrap: reaching the underlying writer would let a
// Denied handler send another status.
func (dw *denyWriter) Flush() {
	dw.WriteHeader(dw.status)
	if f, ok := dw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
