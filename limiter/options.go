package limiter

import (
	"fmt"
	"log/slog"
	"time"
)

// FailurePolicy says what a Redis-backed budget answers while Redis cannot:
// when a call fails or exceeds its time budget, and for as long as the
// breaker stays open (during which Redis is not called at all).
type FailurePolicy uint8

const (
	// FailLocal (the default) answers from an in-process bucket holding this
	// node's share of the limit: the limit divided by the number of live
	// nodes last seen in the heartbeat set. The fleet as a whole stays near
	// the limit while Redis is away.
	FailLocal FailurePolicy = iota
	// FailOpen allows every request.
	FailOpen
	// FailClosed denies every request with ErrUnavailable.
	FailClosed
)

// String returns "local", "open" or "closed".
func (p FailurePolicy) String() string {
	switch p {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", uint8(p))
}

// Defaults for the options below.
const (
	// DefaultMaxKeys is the default capacity of in-process key maps.
	DefaultMaxKeys = 100_000
	// DefaultTimeout is the default time budget of one Redis call.
	DefaultTimeout = 20 * time.Millisecond
	// DefaultBreakerFailures is how many consecutive failed Redis calls
	// open the breaker by default.
	DefaultBreakerFailures = 3
	// DefaultBreakerOpen is how long the breaker stays open by default
	// before one probe call is let through.
	DefaultBreakerOpen = time.Second
	// DefaultHeartbeat is the default interval of the live-node heartbeat.
	DefaultHeartbeat = time.Second
	// DefaultRamp is the default window over which SetLimit moves a
	// budget from its old limit to the new one (see WithRamp).
	DefaultRamp = 10 * time.Second
)

type options struct {
	clock      Clock
	clockSet   bool
	ramp       time.Duration
	maxKeys    int
	timeout    time.Duration
	failure    FailurePolicy
	brFailures int
	brOpen     time.Duration
	logger     *slog.Logger
	name       string
	prefix     string
	nodeID     string
	heartbeat  time.Duration
	leaseMin   int
	leaseMax   int
	leaseAhead time.Duration
}

func defaultOptions() options {
	return options{
		clock:      SystemClock,
		ramp:       DefaultRamp,
		maxKeys:    DefaultMaxKeys,
		timeout:    DefaultTimeout,
		failure:    FailLocal,
		brFailures: DefaultBreakerFailures,
		brOpen:     DefaultBreakerOpen,
		logger:     slog.New(slog.DiscardHandler),
		name:       "default",
		prefix:     "herdcap",
		heartbeat:  DefaultHeartbeat,
		leaseMin:   1,
		leaseAhead: 100 * time.Millisecond,
	}
}

// Option configures a backend. Options that do not apply to a backend are
// rejected by its constructor with ErrInvalidOption.
type Option struct {
	name  string
	apply func(*options) error
	// scope is the set of backends the option applies to.
	scope backendKind
}

type backendKind uint8

const (
	kindLocal backendKind = 1 << iota
	kindRedis
	kindLeased

	kindAll    = kindLocal | kindRedis | kindLeased
	kindRemote = kindRedis | kindLeased
)

func (k backendKind) String() string {
	switch k {
	case kindLocal:
		return "NewLocal"
	case kindRedis:
		return "NewRedis"
	case kindLeased:
		return "NewLeased"
	}
	return "backend"
}

func buildOptions(kind backendKind, opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt.apply == nil {
			return o, fmt.Errorf("%w: zero Option value", ErrInvalidOption)
		}
		if opt.scope&kind == 0 {
			return o, fmt.Errorf("%w: %s does not apply to %v", ErrInvalidOption, opt.name, kind)
		}
		if err := opt.apply(&o); err != nil {
			return o, fmt.Errorf("%w: %s: %w", ErrInvalidOption, opt.name, err)
		}
	}
	return o, nil
}

// WithClock makes the backend take its time from c instead of the system
// clock. On the Redis backends, an injected clock's time is passed to the
// script, which then ignores Redis TIME.
func WithClock(c Clock) Option {
	return Option{name: "WithClock", scope: kindAll, apply: func(o *options) error {
		if c == nil {
			return fmt.Errorf("clock is nil")
		}
		o.clock, o.clockSet = c, true
		return nil
	}}
}

// WithRamp sets the window over which SetLimit moves from the old limit to
// the new one, linearly in both rate and burst (default DefaultRamp, 10 s):
// a limit changed at runtime never moves in one jump, so a mistaken change
// (a zero too many) can be noticed and undone before it has spread.
//
// WithRamp(0) is an explicit opt-out: a new limit applies at once. It is
// meant for callers that pace limit changes themselves, such as a
// simulation stepping limits in virtual time, or a test of the limit itself.
// A negative window is rejected.
func WithRamp(window time.Duration) Option {
	return Option{name: "WithRamp", scope: kindAll, apply: func(o *options) error {
		if window < 0 {
			return fmt.Errorf("window must be >= 0, got %v", window)
		}
		o.ramp = window
		return nil
	}}
}

// WithMaxKeys bounds the number of keys held in process (Local buckets,
// Leased leases). Default DefaultMaxKeys. When full, the backend first drops
// keys whose buckets are full (which loses nothing: a full bucket is what a
// new key starts with), then the least recently used of a sample.
func WithMaxKeys(n int) Option {
	return Option{name: "WithMaxKeys", scope: kindLocal | kindLeased, apply: func(o *options) error {
		if n < 1 {
			return fmt.Errorf("max keys must be >= 1, got %d", n)
		}
		o.maxKeys = n
		return nil
	}}
}

// WithTimeout sets the time budget of one Redis call (default
// DefaultTimeout). A call that takes longer is abandoned, counted as a
// failure by the breaker, and answered by the failure policy.
func WithTimeout(d time.Duration) Option {
	return Option{name: "WithTimeout", scope: kindRemote, apply: func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be > 0, got %v", d)
		}
		o.timeout = d
		return nil
	}}
}

// WithFailure sets the failure policy (default FailLocal).
func WithFailure(p FailurePolicy) Option {
	return Option{name: "WithFailure", scope: kindRemote, apply: func(o *options) error {
		if p > FailClosed {
			return fmt.Errorf("unknown policy %v", p)
		}
		o.failure = p
		return nil
	}}
}

// WithBreaker tunes the circuit breaker around Redis: it opens after
// failures consecutive failed calls and stays open for openFor before letting
// one probe through. Defaults DefaultBreakerFailures and DefaultBreakerOpen.
func WithBreaker(failures int, openFor time.Duration) Option {
	return Option{name: "WithBreaker", scope: kindRemote, apply: func(o *options) error {
		if failures < 1 {
			return fmt.Errorf("failures must be >= 1, got %d", failures)
		}
		if openFor <= 0 {
			return fmt.Errorf("openFor must be > 0, got %v", openFor)
		}
		o.brFailures, o.brOpen = failures, openFor
		return nil
	}}
}

// WithLogger sets the logger for breaker transitions and background errors.
// By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return Option{name: "WithLogger", scope: kindAll, apply: func(o *options) error {
		if l == nil {
			return fmt.Errorf("logger is nil")
		}
		o.logger = l
		return nil
	}}
}

// WithName namespaces the budget's keys in Redis, so that several budgets
// can share one Redis without sharing buckets. Default "default". Budgets on
// different nodes that should share buckets must use the same name.
func WithName(name string) Option {
	return Option{name: "WithName", scope: kindRemote, apply: func(o *options) error {
		if err := checkName(name); err != nil {
			return fmt.Errorf("name %w", err)
		}
		o.name = name
		return nil
	}}
}

// WithPrefix sets the first component of every Redis key (default
// "herdcap").
func WithPrefix(prefix string) Option {
	return Option{name: "WithPrefix", scope: kindRemote, apply: func(o *options) error {
		if err := checkName(prefix); err != nil {
			return fmt.Errorf("prefix %w", err)
		}
		o.prefix = prefix
		return nil
	}}
}

// WithNodeID names this node in the live-node heartbeat set. Default: a
// random ID. Two nodes must never share an ID.
func WithNodeID(id string) Option {
	return Option{name: "WithNodeID", scope: kindRemote, apply: func(o *options) error {
		if id == "" || len(id) > 256 {
			return fmt.Errorf("node ID must be 1 to 256 bytes, got %d", len(id))
		}
		o.nodeID = id
		return nil
	}}
}

// WithHeartbeat sets how often the node announces itself in the live-node
// set that FailLocal divides the limit by (default DefaultHeartbeat). A node
// is counted live for three intervals after its last heartbeat.
func WithHeartbeat(interval time.Duration) Option {
	return Option{name: "WithHeartbeat", scope: kindRemote, apply: func(o *options) error {
		if interval < 10*time.Millisecond {
			return fmt.Errorf("interval must be >= 10ms, got %v", interval)
		}
		o.heartbeat = interval
		return nil
	}}
}

func checkName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 bytes, got %d", len(s))
	}
	for _, r := range s {
		if r == '{' || r == '}' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("must not contain braces, colons, spaces or control characters, got %q", s)
		}
	}
	return nil
}
