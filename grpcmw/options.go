package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/herdcap/herdcap/internal/logthrottle"
	"github.com/herdcap/herdcap/limiter"
)

// DefaultUnavailableRetryAfter is the retry delay sent with codes.Unavailable
// when the limiter's error comes with a Decision whose RetryAfter is zero.
const DefaultUnavailableRetryAfter = time.Second

// KeyFunc derives the limiter key of a call from its context and full method
// name ("/package.Service/Method"). A non-nil error rejects the call without
// consulting the budget: an error carrying a gRPC status (see
// google.golang.org/grpc/status.FromError) is returned to the client as it
// is; any other error becomes codes.InvalidArgument with a generic message.
// An empty key is treated like an error. A KeyFunc is called concurrently.
type KeyFunc func(ctx context.Context, fullMethod string) (string, error)

// CostFunc returns the number of tokens a call takes (default 1). Zero lets
// the call through without taking anything. A negative cost, or one larger
// than the limit's burst, can never be granted: it is a server bug, not a
// reason for the client to retry, so the call ends with codes.Internal
// without pushback (and the error is logged, throttled). A CostFunc is
// called concurrently.
type CostFunc func(ctx context.Context, fullMethod string) int

// Option configures the server interceptors: UnaryServerRateLimit,
// StreamServerRateLimit and NewLimiter (the rate limit), the invalidation
// interceptors (UnaryServerInvalidate, StreamServerInvalidate) and the
// admission interceptors (UnaryServerAdmission, StreamServerAdmission).
// Each option's comment says which it applies to, and a constructor
// rejects the others with ErrInvalidOption. The zero Option is invalid.
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
	forAdmission

	forAll = forRateLimit | forInvalidate | forAdmission
)

// String names the constructors, for errors.
func (t target) String() string {
	switch t {
	case forRateLimit:
		return "the rate-limit interceptors"
	case forInvalidate:
		return "the invalidation interceptors"
	case forAdmission:
		return "the admission interceptors"
	}
	return "this constructor"
}

// ErrInvalidOption is wrapped by the error a constructor returns for a bad
// option; the message names the option.
var ErrInvalidOption = errors.New("grpcmw: invalid option")

// ErrNilBudget is returned by a constructor given a nil limiter.Budget.
var ErrNilBudget = errors.New("grpcmw: budget is nil")

type config struct {
	key              KeyFunc
	keySet           bool     // WithKeyFunc was given
	maxNotices       int      // invalidation
	cost             CostFunc // nil means 1
	skip             func(fullMethod string) bool
	logger           *slog.Logger
	unavailableRetry time.Duration
	logs             *logThrottles // the constructor's own; shared by copies of the config
}

// logThrottles hold each kind of record an interceptor logs per call to
// about one a second (with the count suppressed before it), so that an
// outage or a flood of bad calls does not become a log storm.
type logThrottles struct {
	failed    logthrottle.Throttle // the budget, admission or coordinator failed
	misconfig logthrottle.Throttle // the budget or admission rejected a cost or key
	key       logthrottle.Throttle // the key function failed
	input     logthrottle.Throttle // malformed herdcap metadata (Debug)
	denied    logthrottle.Throttle // denials (Debug)
}

// logThrottled logs a record at level through throttle th, adding the
// count of records suppressed before it. Disabled levels cost nothing.
func (c *config) logThrottled(ctx context.Context, th *logthrottle.Throttle, level slog.Level, msg string, attrs ...slog.Attr) {
	if !c.logger.Enabled(ctx, level) {
		return
	}
	if n, ok := th.Allow(); ok {
		c.logger.LogAttrs(ctx, level, msg, append(attrs, slog.Uint64("suppressed", n))...)
	}
}

func buildConfig(b limiter.Budget, opts []Option) (config, error) {
	if b == nil {
		return config{}, ErrNilBudget
	}
	if isNil(b) {
		return config{}, fmt.Errorf("%w (a nil %T)", ErrNilBudget, b)
	}
	return applyOptions(forRateLimit, opts)
}

// isNil reports whether v is nil or an interface holding a nil pointer,
// map, slice, func or channel.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return isNilable(rv.Kind()) && rv.IsNil()
}

// applyOptions builds the configuration of a constructor of target t.
func applyOptions(t target, opts []Option) (config, error) {
	c := config{
		key:              PeerIP,
		logger:           slog.New(slog.DiscardHandler),
		unavailableRetry: DefaultUnavailableRetryAfter,
		maxNotices:       DefaultMaxNotices,
		logs:             new(logThrottles),
	}
	for i, o := range opts {
		if o.apply == nil {
			return c, fmt.Errorf("%w: option %d is the zero Option value", ErrInvalidOption, i)
		}
		if o.scope&t == 0 {
			return c, fmt.Errorf("%w: %s does not apply to %v", ErrInvalidOption, o.name, t)
		}
		if err := o.apply(&c); err != nil {
			return c, fmt.Errorf("%w: %s: %w", ErrInvalidOption, o.name, err)
		}
	}
	return c, nil
}

func isNilable(k reflect.Kind) bool {
	switch k {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return true
	}
	return false
}

// WithKeyFunc sets how a call's key is derived: for the rate limit, the
// bucket it draws from; for the invalidation and admission interceptors,
// the client ID (at most admission.MaxClientIDLen bytes), which places the
// client in cohorts and admission slots. The default is PeerIP (one bucket
// per client IP address) for the rate limit, and for the others the
// MetadataClient metadata when the call carries it, else PeerIP. Applies
// to every interceptor.
func WithKeyFunc(f KeyFunc) Option {
	return Option{name: "WithKeyFunc", scope: forAll, apply: func(c *config) error {
		if f == nil {
			return errors.New("key function is nil")
		}
		c.key, c.keySet = f, true
		return nil
	}}
}

// WithCost sets how many tokens a call takes. The default is one token per
// call (a stream costs one token when it opens, whatever it carries).
// Applies to the rate limit only.
func WithCost(f CostFunc) Option {
	return Option{name: "WithCost", scope: forRateLimit, apply: func(c *config) error {
		if f == nil {
			return errors.New("cost function is nil")
		}
		c.cost = f
		return nil
	}}
}

// WithSkip exempts the methods for which skip returns true (for example
// "/grpc.health.v1.Health/Check") from the limit: their calls go straight to
// the handler, and neither the key function nor the budget is consulted. By
// default no method is skipped. skip is called concurrently. Applies to
// every interceptor: a skipped method is not rate limited, is told no
// invalidations, and opens no session (admission).
func WithSkip(skip func(fullMethod string) bool) Option {
	return Option{name: "WithSkip", scope: forAll, apply: func(c *config) error {
		if skip == nil {
			return errors.New("skip function is nil")
		}
		c.skip = skip
		return nil
	}}
}

// WithLogger sets the logger. Limiter, admission and coordinator errors
// are logged at Error level, key function errors without a gRPC status at
// Warn, denials, malformed herdcap metadata and status-carrying key
// function errors at Debug. Each kind of record is throttled to about one
// a second per interceptor, with a "suppressed" count of the records held
// back before it, so that an outage does not flood the log. By default
// nothing is logged. Applies to every interceptor.
func WithLogger(l *slog.Logger) Option {
	return Option{name: "WithLogger", scope: forAll, apply: func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	}}
}

// WithUnavailableRetryAfter sets the retry delay sent with codes.Unavailable
// when the limiter fails without suggesting one (a zero
// Decision.RetryAfter), or the admission fails without saying when to come
// back. Default DefaultUnavailableRetryAfter; d must be > 0. Applies to the
// rate limit and admission interceptors.
func WithUnavailableRetryAfter(d time.Duration) Option {
	return Option{name: "WithUnavailableRetryAfter", scope: forRateLimit | forAdmission, apply: func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("delay must be > 0, got %v", d)
		}
		c.unavailableRetry = d
		return nil
	}}
}
