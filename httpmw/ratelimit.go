package httpmw

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/herdcap/herdcap/internal/logthrottle"
	"github.com/herdcap/herdcap/limiter"
)

// RateLimit returns middleware that takes tokens from b for every request
// before passing it on, or an error wrapping ErrInvalidOption that names the
// bad option. Configuration errors are returned rather than panicked, so the
// constructor has the (middleware, error) shape; the middleware itself is the
// standard func(http.Handler) http.Handler.
//
// A request is keyed by the client IP address (see WithTrustedProxies), or
// by WithKeyFunc, and takes WithCost tokens (default 1). Then:
//
//   - allowed: the next handler runs, with the RateLimit-Policy and
//     RateLimit fields set (draft-ietf-httpapi-ratelimit-headers-11; see
//     the comment on the field names in headers.go for the exact mapping);
//   - quota exceeded: 429 Too Many Requests with Retry-After (whole
//     seconds, rounded up, at least 1) and the two RateLimit fields;
//   - the budget rejected the cost or key (limiter.ErrInvalidRequest:
//     WithCost beyond the burst or negative, or an empty key): 500 Internal
//     Server Error without Retry-After, since no retry can succeed;
//   - the limiter failed otherwise (limiter.ErrUnavailable when a store is
//     down and the budget fails closed, or any other error): 503 Service Unavailable
//     with Retry-After (from the Decision, at least 1 s) and no RateLimit
//     fields, since no limit was applied. The error is logged (WithLogger),
//     never sent;
//   - the key function failed: 400 Bad Request if its error wraps ErrNoKey,
//     else 500 Internal Server Error (also for an empty key), without
//     calling the limiter. The default key function fails, with ErrNoKey,
//     only for a request without RemoteAddr.
//
// Denial bodies are a short plain-text message unless WithDenyHandler says
// otherwise. No response body ever carries an error's text.
//
// The fields are set before the next handler runs, so it may replace them.
// Some values the middleware sets (RateLimit-Policy, Retry-After,
// Content-Type) are slices shared between responses: handlers may Set, Add
// or Del those fields but must not assign to the elements of their slices.
//
// The middleware is safe for concurrent use. On the allowed path, with the
// default key and a Local budget, it makes one allocation: the RateLimit
// value.
func RateLimit(b limiter.Budget, opts ...Option) (func(http.Handler) http.Handler, error) {
	if b == nil {
		return nil, errors.New("httpmw: RateLimit: budget is nil")
	}
	c, err := buildConfig(forRateLimit, opts)
	if err != nil {
		return nil, err
	}
	name := sfString(c.policyName)
	m := &middleware{
		budget:     b,
		keyFunc:    c.keyFunc,
		cost:       c.cost,
		policy:     policyField{name: name},
		rlPrefix:   name + ";r=",
		policyName: c.policyName,
		deny:       c.denyHandler,
		log:        c.logger,
	}
	if m.keyFunc == nil {
		ip := &clientIP{trusted: c.trusted, useXFF: c.useXFF, useFwd: c.useFwd}
		m.keyFunc = ip.key
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(next, w, r)
		})
	}, nil
}

type middleware struct {
	budget     limiter.Budget
	keyFunc    func(*http.Request) (string, error)
	cost       func(*http.Request) int
	policy     policyField
	rlPrefix   string // serialized policy name and ";r="
	policyName string
	deny       http.Handler
	log        *slog.Logger

	limiterLog, keyLog logThrottle
}

// Values of constant header fields, shared between responses.
var (
	textPlain = []string{"text/plain; charset=utf-8"}
	noSniff   = []string{"nosniff"}
)

func (m *middleware) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	key, err := m.keyFunc(r)
	if err != nil || key == "" {
		m.keyFailed(w, r, err)
		return
	}
	cost := 1
	if m.cost != nil {
		cost = m.cost(r)
	}
	d, err := m.budget.Take(r.Context(), limiter.Request{Key: key, N: cost})
	if err != nil {
		if errors.Is(err, limiter.ErrInvalidRequest) {
			m.misconfigured(w, r, err)
			return
		}
		m.unavailable(w, r, d, err)
		return
	}
	h := w.Header()
	if !d.Allowed {
		secs, ra := retryAfter(d.RetryAfter)
		m.setFields(h, d, secs)
		h[headerRetryAfter] = ra
		m.refuse(w, r, http.StatusTooManyRequests, d)
		return
	}
	m.setFields(h, d, ceilSeconds(d.ResetAfter))
	next.ServeHTTP(w, r)
}

// setFields sets RateLimit-Policy (when the limit can be described) and
// RateLimit with effective window t seconds.
func (m *middleware) setFields(h http.Header, d limiter.Decision, t int64) {
	if p := m.policy.get(d.Limit); p != nil {
		h[headerPolicy] = p
	}
	h[headerRateLimit] = rateLimitField(m.rlPrefix, d.Remaining, t)
}

// unavailable answers 503 for a limiter error.
func (m *middleware) unavailable(w http.ResponseWriter, r *http.Request, d limiter.Decision, err error) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// The client has gone; nothing to report.
		m.log.LogAttrs(ctx, slog.LevelDebug, "httpmw: request canceled while rate limiting", slog.Any("error", err))
	} else if n, ok := m.limiterLog.Allow(); ok {
		m.log.LogAttrs(ctx, slog.LevelError, "httpmw: rate limiter failed; answering 503",
			slog.String("policy", m.policyName),
			slog.String("source", d.Via.String()),
			slog.Bool("unavailable", errors.Is(err, limiter.ErrUnavailable)),
			slog.Any("error", err),
			slog.Uint64("suppressed", n))
	}
	_, ra := retryAfter(d.RetryAfter)
	w.Header()[headerRetryAfter] = ra
	m.refuse(w, r, http.StatusServiceUnavailable, d)
}

// misconfigured answers 500 when the budget rejected the request's cost or
// key: a server bug (WithCost beyond the burst, say) that no retry would fix,
// so no Retry-After either.
func (m *middleware) misconfigured(w http.ResponseWriter, r *http.Request, err error) {
	if n, ok := m.keyLog.Allow(); ok {
		m.log.LogAttrs(r.Context(), slog.LevelError, "httpmw: the budget rejected the request's cost or key; answering 500",
			slog.String("policy", m.policyName),
			slog.Any("error", err),
			slog.Uint64("suppressed", n))
	}
	writeText(w, http.StatusInternalServerError)
}

// keyFailed answers 400 or 500 for a key-function failure.
func (m *middleware) keyFailed(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoKey):
		status = http.StatusBadRequest
	case err == nil:
		err = errors.New("key function returned an empty key")
	}
	if status == http.StatusInternalServerError {
		if n, ok := m.keyLog.Allow(); ok {
			m.log.LogAttrs(r.Context(), slog.LevelError, "httpmw: key function failed; answering 500",
				slog.String("policy", m.policyName),
				slog.Any("error", err),
				slog.Uint64("suppressed", n))
		}
	}
	writeText(w, status)
}

// refuse writes a denial (429 or 503) whose fields are already set on w.
func (m *middleware) refuse(w http.ResponseWriter, r *http.Request, status int, d limiter.Decision) {
	if m.deny == nil {
		writeText(w, status)
		return
	}
	h := w.Header()
	dw := &denyWriter{
		ResponseWriter: w,
		status:         status,
		policy:         h[headerPolicy],
		rateLimit:      h[headerRateLimit],
		retryAfter:     h[headerRetryAfter],
	}
	den := Denial{Status: status, RetryAfter: d.RetryAfter, Decision: d}
	m.deny.ServeHTTP(dw, r.WithContext(context.WithValue(r.Context(), denialKey{}, den)))
	dw.WriteHeader(status) // in case the deny handler wrote nothing
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
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = noSniff
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

// Denial describes why a deny handler (WithDenyHandler) was called.
type Denial struct {
	// Status is 429 (quota exceeded) or 503 (the limiter failed).
	Status int
	// RetryAfter is the limiter's wait hint, before rounding up to the
	// whole seconds sent in Retry-After.
	RetryAfter time.Duration
	// Decision is the limiter's answer. After a limiter failure it may be
	// the zero Decision but for RetryAfter.
	Decision limiter.Decision
}

type denialKey struct{}

// DenialFromContext returns the Denial a deny handler was called for, from
// its request's context; false outside a deny handler.
func DenialFromContext(ctx context.Context) (Denial, bool) {
	d, ok := ctx.Value(denialKey{}).(Denial)
	return d, ok
}

// denyWriter hands a deny handler the response while keeping the status
// code and rate-limit fields the middleware chose.
type denyWriter struct {
	http.ResponseWriter
	status                        int
	policy, rateLimit, retryAfter []string
	wrote                         bool
}

// WriteHeader writes the middleware's status, whatever code is asked for,
// after re-applying the rate-limit fields.
func (dw *denyWriter) WriteHeader(int) {
	if dw.wrote {
		return
	}
	dw.wrote = true
	h := dw.Header()
	for _, f := range [...]struct {
		k string
		v []string
	}{{headerPolicy, dw.policy}, {headerRateLimit, dw.rateLimit}, {headerRetryAfter, dw.retryAfter}} {
		if f.v != nil {
			h[f.k] = f.v
		} else {
			delete(h, f.k)
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
// deliberately no Unwrap: reaching the underlying writer would let a deny
// handler send another status.
func (dw *denyWriter) Flush() {
	dw.WriteHeader(dw.status)
	if f, ok := dw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logThrottle lets through about one log record per second, counting the
// ones it holds back, so that a failing limiter under load does not flood
// the log.
type logThrottle = logthrottle.Throttle
