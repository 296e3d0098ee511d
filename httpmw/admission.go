package httpmw

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// Admitter is what Admit needs of an *admission.Gate: a decision on
// whether clientID's session may start now, given the ticket it
// presented ("" for none). It is called concurrently.
type Admitter interface {
	Admit(ctx context.Context, clientID, ticket string) (admission.Decision, error)
}

// WithSessionStart sets which requests Admit treats as the start of a
// session: those for which f returns true pass through the admission gate,
// the others go straight to the handler. By default every request does, and
// the resume token tells new sessions from resumed ones: a request with a
// valid HeaderResume token resumes (the Admission lets it in without
// spending the budget and the response carries a fresh token), one without
// is a new session. Typical predicates select a login or connect endpoint.
// f is called concurrently. Applies to Admit only.
func WithSessionStart(f func(*http.Request) bool) Option {
	return Option{name: "WithSessionStart", scope: forAdmit, apply: func(c *config) error {
		if f == nil {
			return errors.New("predicate is nil")
		}
		c.sessionStart = f
		return nil
	}}
}

// Admit returns middleware that admits new sessions through a, so that a
// herd of clients reconnecting at once comes back as a flat stream. Its
// error wraps ErrInvalidOption and names the bad option (or says a is nil).
//
// For each request that starts a session (WithSessionStart), the middleware
// finds the client ID (HeaderClient, else the client IP address; or
// WithKeyFunc) and the resume token the request presents (HeaderResume;
// a missing, malformed, expired or foreign token makes it a new session),
// and asks a. Then:
//
//   - admitted: the next handler runs; when the Admission issues resume
//     tickets (admission.Config.TicketKeys), HeaderResume carries the client's fresh
//     token on the response;
//   - refused (the budget is spent): 503 Service Unavailable with
//     Retry-After, the wait in whole seconds rounded up (at least 1), and
//     HeaderRetryAfterMillis, the exact wait in milliseconds. A booked
//     client that comes back after the wait (and within the Admission's
//     slot grace) is let in: the slot is a promise. The handler does not
//     run;
//   - the admission failed (limiter.ErrUnavailable when a Redis store is
//     down under FailClosed, limiter.ErrClosed, or any other error):
//     503 with the same two fields when the decision says when to come
//     back, else Retry-After: 1. The error is logged (WithLogger,
//     throttled), never sent;
//   - the client ID is one the Admission rejects (limiter.ErrInvalidRequest,
//     from a WithKeyFunc returning more than admission.MaxClientIDLen bytes):
//     500 Internal Server Error without Retry-After, since no retry helps;
//   - a malformed HeaderClient gets 400 Bad Request; key-function errors
//     are answered as for RateLimit.
//
// Refusals are 503 rather than 429: the client is not over a quota of its
// own; the server is turning away new sessions to protect itself. Bodies
// are a short plain-text message and never carry an error's text.
//
// The middleware is safe for concurrent use.
func Admit(a Admitter, opts ...Option) (func(http.Handler) http.Handler, error) {
	if a == nil {
		return nil, errors.New("httpmw: Admit: admitter is nil")
	}
	c, err := buildConfig(forAdmit, opts)
	if err != nil {
		return nil, err
	}
	m := &admitter{
		a:     a,
		key:   sessionKeyFunc(&c),
		start: c.sessionStart,
		slog:  sessionLog{log: c.logger, name: "httpmw: Admit"},
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(next, w, r)
		})
	}, nil
}

type admitter struct {
	a     Admitter
	key   func(*http.Request) (string, error)
	start func(*http.Request) bool
	slog  sessionLog
}

func (m *admitter) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if m.start != nil && !m.start(r) {
		next.ServeHTTP(w, r)
		return
	}
	id, err := m.key(r)
	if err != nil || id == "" {
		m.slog.keyFailed(w, r, err)
		return
	}
	d, err := m.a.Admit(r.Context(), id, wire.ResumeToken(r.Header[HeaderResume]))
	switch {
	case errors.Is(err, limiter.ErrInvalidRequest):
		if n, ok := m.slog.keyLog.Allow(); ok {
			m.slog.log.LogAttrs(r.Context(), slog.LevelError, "httpmw: Admit: the admission rejected the client ID; answering 500",
				slog.Int("id_bytes", len(id)), slog.Any("error", err), slog.Uint64("suppressed", n))
		}
		writeText(w, http.StatusInternalServerError)
	case err != nil:
		m.failed(r, d, err)
		m.refuse(w, d.RetryAfter)
	case !d.Admitted:
		m.refuse(w, d.RetryAfter)
	default:
		if d.Ticket != "" {
			w.Header()[HeaderResume] = []string{d.Ticket}
		}
		next.ServeHTTP(w, r)
	}
}

// refuse answers 503 with Retry-After and, when the wait is known, its
// exact value in milliseconds.
func (m *admitter) refuse(w http.ResponseWriter, wait time.Duration) {
	h := w.Header()
	_, ra := retryAfter(wait) // at least 1 s
	h[headerRetryAfter] = ra
	if wait > 0 {
		h[HeaderRetryAfterMillis] = []string{strconv.FormatInt(ceilMillis(wait), 10)}
	}
	writeText(w, http.StatusServiceUnavailable)
}

// ceilMillis returns d (> 0) in whole milliseconds, rounded up.
func ceilMillis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms
}

// failed logs an admission error.
func (m *admitter) failed(r *http.Request, d admission.Decision, err error) {
	ctx := r.Context()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return // the client has gone
	}
	if n, ok := m.slog.failLog.Allow(); ok {
		m.slog.log.LogAttrs(ctx, slog.LevelError, "httpmw: Admit: admission failed; answering 503",
			slog.String("source", d.Via.String()),
			slog.Bool("unavailable", errors.Is(err, limiter.ErrUnavailable)),
			slog.Duration("retry_after", d.RetryAfter),
			slog.Any("error", err), slog.Uint64("suppressed", n))
	}
}
