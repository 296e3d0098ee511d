package httpmw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// Defaults of the Transport options.
const (
	// DefaultBackoffBase and DefaultBackoffCap shape the Transport's
	// default limiter.Backoff: full jitter in a window starting at the
	// base and doubling up to the cap, used when a refusal names no wait.
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffCap  = 10 * time.Second
	// DefaultMaxAttempts is how many times a Transport sends one request
	// at most, the first try included.
	DefaultMaxAttempts = 4
	// DefaultMaxWait bounds the total time a Transport waits between the
	// attempts of one request.
	DefaultMaxWait = 30 * time.Second
	// DefaultRetryTokens and DefaultRetryRatio configure the Transport's
	// default limiter.RetryBudget (gRPC's retryThrottling values).
	DefaultRetryTokens = 10
	DefaultRetryRatio  = 0.1
)

// ErrInvalidTransportOption is wrapped by the error NewTransport returns for
// a bad option; the message names it.
var ErrInvalidTransportOption = errors.New("httpmw: invalid transport option")

// Transport is the client side of herdcap over HTTP: an http.RoundTripper
// that identifies one client to Invalidate and Admit middleware, applies
// the invalidations they send, and backs off when turned away.
//
// On every request it sends
//
//   - HeaderClient, the client ID (WithClientID), if set; without one the
//     server identifies the client by its IP address;
//   - HeaderEpoch, the highest invalidation epoch applied, if the
//     Transport applies invalidations (WithOnInvalidate);
//   - HeaderResume, the resume token of the client's session, once a
//     server has issued one.
//
// It overwrites those fields if the request has them, and never modifies
// the caller's request (it sends a clone).
//
// On every response it keeps a HeaderResume token, and hands the notices
// of HeaderInvalidate, in epoch order, to the WithOnInvalidate callback,
// then records each notice's epoch as applied. The callback is called once
// per notice (notices at or below the applied epoch are skipped), never
// for two notices at once, and never while the Transport holds a lock:
// when responses to concurrent requests carry notices, one of the
// goroutines applies them all, in order, and the others return without
// waiting for it. A malformed HeaderInvalidate is applied up to its first
// bad notice and logged (WithTransportLogger).
//
// A 429 or 503 response is a refusal. The Transport sends the request again
// when all of these hold, and otherwise returns the refusal as it came:
//
//   - the request can be sent again safely: its method is idempotent (GET,
//     HEAD, OPTIONS, TRACE, PUT, DELETE) or it carries an Idempotency-Key
//     or X-Idempotency-Key header, and its body can be replayed (none, or
//     Request.GetBody set, as http.NewRequest does for in-memory bodies);
//   - the retry budget allows it (WithRetryBudget: every refusal and
//     connection failure takes a token, every other response gives a
//     fraction back);
//   - fewer than WithMaxAttempts attempts were made;
//   - the wait fits in what is left of WithMaxWait.
//
// The wait is the server's hint when it sent one, and never less than the
// hint:
//
//   - HeaderRetryAfterMillis, Admit's exact wait (a booked slot, or a
//     deferral the admission has already spread): the wait plus at most a
//     few milliseconds of jitter (limiter.Backoff.DelaySlot, default at
//     most limiter.DefaultSlotJitter), so that a herd comes back as flat
//     as the slots were booked;
//   - else Retry-After (delay-seconds or an HTTP date), which many clients
//     may be told alike: the hint plus a wider jitter
//     (limiter.Backoff.DelayHint, by default up to 10% of the hint and at
//     most a second);
//   - no hint: exponential backoff with full jitter
//     (limiter.Backoff.Delay).
//
// A connection failure is retried like a refusal without a hint (full
// jitter, the same budget, attempts and wait bounds): the dial failed
// (refused, unreachable, timed out) or the connection broke before a
// response came (reset, or closed: EOF). A failed dial sent nothing, so
// any request whose body can be replayed is sent again; a broken
// connection may have delivered the request, so only requests that can be
// sent again safely are (as above). Other errors (the request's context,
// TLS, a name that does not resolve) are returned at once. When the
// Transport gives up on a connection failure, it returns the last
// attempt's error as the base transport gave it.
//
// A wait ends early if the request's context is done, and RoundTrip then
// returns the context's error.
//
// A Transport serves one client identity; give each client its own,
// sharing one base transport (and its connection pool). It is safe for
// concurrent use.
type Transport struct {
	base         http.RoundTripper
	clientID     []string // nil: no HeaderClient
	onInvalidate func(invalidate.Notice)
	backoff      *limiter.Backoff
	budget       *limiter.RetryBudget
	maxAttempts  int
	maxWait      time.Duration
	log          *slog.Logger
	now          func() time.Time
	// sleep waits d or until ctx is done (tests run it in virtual time).
	sleep func(ctx context.Context, d time.Duration) error

	token   atomic.Pointer[string] // nil or "": none
	applied atomic.Uint64
	queue   wire.NoticeQueue
	badLog  logThrottle
}

// TransportOption configures NewTransport. The zero TransportOption is
// invalid.
type TransportOption struct {
	name  string
	apply func(*Transport) error
}

// WithClientID sets the client ID the Transport sends in HeaderClient: 1 to
// MaxClientHeaderLen bytes of visible ASCII other than the comma. By
// default none is sent, and servers identify the client by its IP address.
func WithClientID(id string) TransportOption {
	return TransportOption{"WithClientID", func(t *Transport) error {
		v, err := wire.ParseClientID([]string{id})
		if err != nil || v != id {
			return fmt.Errorf("client ID %q: must be 1 to %d bytes of visible ASCII other than the comma", truncateID(id), MaxClientHeaderLen)
		}
		t.clientID = []string{id}
		return nil
	}}
}

func truncateID(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// WithOnInvalidate makes the Transport take part in invalidation: it sends
// its applied epoch and calls f with each notice it is given, in epoch
// order, once, before recording the notice's epoch as applied. f drops what
// the notice's Scope names from the client's caches; it must not block for
// long (the response that carried the notice waits for it), and it may
// send requests through the Transport. By default the Transport sends no
// epoch, so servers send it no notices.
func WithOnInvalidate(f func(invalidate.Notice)) TransportOption {
	return TransportOption{"WithOnInvalidate", func(t *Transport) error {
		if f == nil {
			return errors.New("callback is nil")
		}
		t.onInvalidate = f
		return nil
	}}
}

// WithAppliedEpoch sets the epoch the Transport starts from (default 0),
// for a client that persisted it; at most invalidate.MaxEpoch.
func WithAppliedEpoch(epoch uint64) TransportOption {
	return TransportOption{"WithAppliedEpoch", func(t *Transport) error {
		if epoch > invalidate.MaxEpoch {
			return fmt.Errorf("epoch %d is above invalidate.MaxEpoch", epoch)
		}
		t.applied.Store(epoch)
		return nil
	}}
}

// WithBackoff sets the backoff between attempts (default: full jitter from
// DefaultBackoffBase to DefaultBackoffCap, with limiter's default hint and
// slot jitter). A Backoff holds no per-client state and may be shared.
func WithBackoff(b *limiter.Backoff) TransportOption {
	return TransportOption{"WithBackoff", func(t *Transport) error {
		if b == nil {
			return errors.New("backoff is nil")
		}
		t.backoff = b
		return nil
	}}
}

// WithRetryBudget sets the retry budget the Transport spends from (default:
// a budget of its own, DefaultRetryTokens tokens, DefaultRetryRatio back
// per success). Share one budget between the Transports of a process to
// bound its retries as a whole.
func WithRetryBudget(b *limiter.RetryBudget) TransportOption {
	return TransportOption{"WithRetryBudget", func(t *Transport) error {
		if b == nil {
			return errors.New("retry budget is nil")
		}
		t.budget = b
		return nil
	}}
}

// WithMaxAttempts sets how many times one request is sent at most, the
// first try included (default DefaultMaxAttempts; 1 never retries).
func WithMaxAttempts(n int) TransportOption {
	return TransportOption{"WithMaxAttempts", func(t *Transport) error {
		if n < 1 {
			return fmt.Errorf("attempts must be >= 1, got %d", n)
		}
		t.maxAttempts = n
		return nil
	}}
}

// WithMaxWait bounds the total wait between the attempts of one request
// (default DefaultMaxWait): a retry whose wait would go past it is not
// made, and the refusal is returned, so that a caller is never held longer
// than it can see. It must be >= 0.
func WithMaxWait(d time.Duration) TransportOption {
	return TransportOption{"WithMaxWait", func(t *Transport) error {
		if d < 0 {
			return fmt.Errorf("max wait must be >= 0, got %v", d)
		}
		t.maxWait = d
		return nil
	}}
}

// WithTransportLogger sets the logger for malformed herdcap fields in
// responses (Warn, throttled). By default nothing is logged.
func WithTransportLogger(l *slog.Logger) TransportOption {
	return TransportOption{"WithTransportLogger", func(t *Transport) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		t.log = l
		return nil
	}}
}

// NewTransport returns a Transport sending requests through base
// (http.DefaultTransport when nil). A bad option is an error wrapping
// ErrInvalidTransportOption that names it.
func NewTransport(base http.RoundTripper, opts ...TransportOption) (*Transport, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{
		base:        base,
		maxAttempts: DefaultMaxAttempts,
		maxWait:     DefaultMaxWait,
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		sleep:       sleep,
	}
	for i, o := range opts {
		if o.apply == nil {
			return nil, fmt.Errorf("%w: option %d is the zero TransportOption", ErrInvalidTransportOption, i)
		}
		if err := o.apply(t); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidTransportOption, o.name, err)
		}
	}
	var err error
	if t.backoff == nil {
		if t.backoff, err = limiter.NewBackoff(DefaultBackoffBase, DefaultBackoffCap); err != nil {
			return nil, err
		}
	}
	if t.budget == nil {
		if t.budget, err = limiter.NewRetryBudget(DefaultRetryTokens, DefaultRetryRatio); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Applied returns the highest epoch the Transport has applied.
func (t *Transport) Applied() uint64 { return t.applied.Load() }

// ResumeToken returns the resume token of the client's session, or "".
func (t *Transport) ResumeToken() string {
	if p := t.token.Load(); p != nil {
		return *p
	}
	return ""
}

// ResetSession forgets the resume token, so that the next request starts a
// new session (after "invalidate everything", say).
func (t *Transport) ResetSession() { t.token.Store(nil) }

// CloseIdleConnections closes the idle connections of the base transport,
// if it has that method (http.Client.CloseIdleConnections calls it).
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, as described on Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resend := canResend(req)
	replayable := canReplay(req)
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		out, err := t.prepare(req, attempt)
		if err != nil {
			return nil, err
		}
		res, err := t.base.RoundTrip(out)
		var d time.Duration
		if err != nil {
			fault := connFault(err)
			if fault == faultNone || req.Context().Err() != nil {
				return nil, err
			}
			retry := fault == faultDial && replayable || fault == faultBroken && resend
			if !t.budget.RecordFailure() || !retry || attempt+1 >= t.maxAttempts {
				return nil, err
			}
			if d = t.backoff.Delay(attempt); d > t.maxWait-waited {
				return nil, err
			}
		} else {
			t.observe(req.Context(), res)
			if res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable {
				t.budget.RecordSuccess()
				return res, nil
			}
			if !t.budget.RecordFailure() || !resend || attempt+1 >= t.maxAttempts {
				return res, nil
			}
			if hint, exact := retryHint(res.Header, t.now()); exact {
				d = t.backoff.DelaySlot(attempt, hint)
			} else {
				d = t.backoff.DelayHint(attempt, hint)
			}
			if d > t.maxWait-waited {
				return res, nil
			}
			discard(res.Body)
		}
		if err := t.sleep(req.Context(), d); err != nil {
			return nil, err
		}
		waited += d
	}
}

// A connection fault is a base transport error worth another attempt.
const (
	faultNone   = iota
	faultDial   // no connection was made: nothing was sent
	faultBroken // the connection failed before a response: maybe sent
)

// connFault classifies an error of the base transport.
func connFault(err error) int {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		var dns *net.DNSError
		if errors.As(err, &dns) && dns.IsNotFound {
			return faultNone // no retry makes a name resolve
		}
		return faultDial
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return faultDial
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), serverClosedIdle(err):
		return faultBroken
	}
	return faultNone
}

// serverClosedIdle reports whether err is net/http's unexported
// errServerClosedIdle: the server closed the connection (EOF) before the
// response, noticed before the request went out. net/http matches it by
// identity; outside the package its text is all there is.
func serverClosedIdle(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "http: server closed idle connection" {
			return true
		}
	}
	return false
}

// prepare returns the request to send for attempt: a clone of req with the
// herdcap fields set and, on a retry, a fresh body.
func (t *Transport) prepare(req *http.Request, attempt int) (*http.Request, error) {
	out := req.Clone(req.Context())
	if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("httpmw: Transport: replaying the request body: %w", err)
		}
		out.Body = body
	}
	if out.Header == nil {
		out.Header = make(http.Header, 3)
	}
	h := out.Header
	if t.clientID != nil {
		h[HeaderClient] = t.clientID
	} else {
		delete(h, HeaderClient)
	}
	if t.onInvalidate != nil {
		h[HeaderEpoch] = []string{strconv.FormatUint(t.applied.Load(), 10)}
	} else {
		delete(h, HeaderEpoch)
	}
	if tok := t.ResumeToken(); tok != "" {
		h[HeaderResume] = []string{tok}
	} else {
		delete(h, HeaderResume)
	}
	return out, nil
}

// observe keeps a resume token and applies the notices of res.
func (t *Transport) observe(ctx context.Context, res *http.Response) {
	if lines := res.Header[HeaderResume]; len(lines) == 1 && wire.TokenShaped(lines[0]) {
		tok := lines[0]
		t.token.Store(&tok)
	}
	if t.onInvalidate == nil {
		return
	}
	lines := res.Header[HeaderInvalidate]
	if len(lines) == 0 {
		return
	}
	notices, err := wire.ParseNotices(nil, lines)
	if err != nil {
		if n, ok := t.badLog.Allow(); ok {
			t.log.LogAttrs(ctx, slog.LevelWarn, "httpmw: Transport: malformed "+HeaderInvalidate+"; applying the notices before the fault",
				slog.Int("applied", len(notices)), slog.Any("error", err), slog.Uint64("suppressed", n))
		}
	}
	t.queue.Deliver(notices, &t.applied, t.onInvalidate)
}

// canReplay reports whether req's body can be sent again: none, or
// Request.GetBody set.
func canReplay(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// canResend reports whether req may be sent again: an idempotent method (or
// an idempotency key) and a body that can be replayed.
func canResend(req *http.Request) bool {
	if !canReplay(req) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// retryHint returns the wait a refusal asks for: HeaderRetryAfterMillis
// (exact: a slot the server spread), else Retry-After (delay-seconds or an
// HTTP date; coarse); 0 when there is none or it does not parse.
func retryHint(h http.Header, now time.Time) (d time.Duration, exact bool) {
	if lines := h[HeaderRetryAfterMillis]; len(lines) == 1 {
		if ms, err := wire.ParseDecimal(wire.TrimOWS(lines[0]), wire.MaxMillisDigits, math.MaxUint64); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	lines := h[headerRetryAfter]
	if len(lines) != 1 {
		return 0, false
	}
	v := wire.TrimOWS(lines[0])
	if s, err := wire.ParseDecimal(v, wire.MaxMillisDigits, math.MaxUint64); err == nil {
		return time.Duration(min(s, uint64(math.MaxInt64/time.Second))) * time.Second, false
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), false
	}
	return 0, false
}

// discard reads a little of a refusal's body, so the connection can be
// reused, and closes it.
func discard(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	_ = body.Close()
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
