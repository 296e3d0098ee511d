package httpmw

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/retry"
)

// ErrInvalidConfig is wrapped by the error a constructor (RateLimit, Admit,
// Invalidate, NewTransport) returns for an invalid config; the message
// names the field with its struct path, e.g. "httpmw: invalid config:
// Policy[1].Budget is nil" or "httpmw: invalid config:
// TransportConfig.Retry.MaxAttempts must be >= 0, got -1".
var ErrInvalidConfig = errors.New("httpmw: invalid config")

// TransportConfig configures NewTransport. The zero value is a Transport
// over http.DefaultTransport that sends no client ID, takes no part in
// invalidation and retries with the default retry.Policy.
type TransportConfig struct {
	// Base sends the requests. If Base is nil, http.DefaultTransport.
	// Give each client its own Transport over one shared Base (and its
	// connection pool).
	Base http.RoundTripper
	// ClientID is sent in Herdcap-Client: 1 to admission.MaxClientIDLen
	// (256) bytes of visible ASCII other than the comma. If ClientID is
	// "", none is sent, and servers identify the client by its IP address.
	ClientID string
	// OnInvalidate makes the Transport take part in invalidation: it
	// sends its applied epoch (Herdcap-Epoch), and OnInvalidate is called
	// with each notice it is given, in epoch order, once, before the
	// notice's epoch is recorded as applied. It drops what the notice's
	// Scope names from the client's caches; it must not block for long
	// (the response that carried the notice waits for it), and it may
	// send requests through the Transport. If OnInvalidate is nil, the
	// Transport sends no epoch, so servers send it no notices.
	OnInvalidate func(invalidate.Notice)
	// Applied is the epoch the Transport starts from, for a client that
	// persisted it; at most invalidate.MaxEpoch. Default 0.
	Applied uint64
	// Retry bounds the retries of each request (attempts, total wait,
	// backoff, retry budget); zero fields take retry.Policy's defaults,
	// and a nil Retry.Budget is a budget of the Transport's own.
	Retry retry.Policy
	// Clock is where the Transport reads the time (an HTTP-date
	// Retry-After) and sleeps between attempts (limiter.Clock's AfterFunc,
	// whose Timer is stopped when the request's context ends first). If
	// Clock is nil, the system clock.
	Clock limiter.Clock
	// Logger receives a Warn record, at most one a second, for a
	// malformed Herdcap-Invalidate in a response. If Logger is nil, nothing
	// is logged.
	Logger *slog.Logger
}

// Transport is the client side of herdcap over HTTP, an http.RoundTripper
// for one client: it identifies the client to Invalidate and Admit, applies
// the invalidations they send, and backs off when turned away.
//
// On every request it sends Herdcap-Client (TransportConfig.ClientID, if
// set), Herdcap-Epoch (the highest epoch applied, if OnInvalidate is set) and
// Herdcap-Ticket (the session's ticket, once a server has issued one),
// replacing any the request has; it never modifies the caller's request
// (it sends a clone). From every response it keeps a ticket, and applies
// the notices of Herdcap-Invalidate through OnInvalidate: each once, in
// epoch order, never two at once, never under a lock.
//
// A 429 or 503, or a connection that failed, is sent again after a wait
// when the request is safe to send again, the retry budget allows it, and
// the attempt and wait bounds of TransportConfig.Retry hold; otherwise the
// last response, or error, is returned as it came. The wait honours the
// server's hint: the package doc ("Client side") states the rules. A wait
// ends early when the request's context is done, and RoundTrip returns the
// context's error.
//
// A Transport is safe for concurrent use.
type Transport struct {
	base http.RoundTripper
	core *clientcore.Client
}

// NewTransport returns a Transport configured by cfg. An invalid field is
// an error wrapping ErrInvalidConfig that names it.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	core, err := clientcore.New(clientcore.Config{
		ClientID: cfg.ClientID, OnInvalidate: cfg.OnInvalidate, Applied: cfg.Applied, Retry: cfg.Retry,
		Clock: cfg.Clock, Logger: cfg.Logger, Name: "httpmw: Transport",
		Fields: clientcore.Fields{Client: headerClient, Epoch: headerEpoch, Ticket: headerTicket, Invalidate: headerInvalidate},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: TransportConfig.%w", ErrInvalidConfig, err)
	}
	t := &Transport{base: cfg.Base, core: core}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	return t, nil
}

// Applied returns the highest epoch the Transport has applied.
func (t *Transport) Applied() uint64 { return t.core.Applied() }

// ResetSession forgets the session's ticket, so that the next request
// starts a new session (after "invalidate everything", say).
func (t *Transport) ResetSession() { t.core.ResetSession() }

// CloseIdleConnections closes the idle connections of the base transport,
// if it has that method (http.Client.CloseIdleConnections calls it).
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, as described on Transport.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	resend := canResend(req)
	replayable := canReplay(req)
	var waited time.Duration
	for attempt := 0; ; attempt++ {
		out, err := t.prepare(req, attempt)
		if err != nil {
			return nil, err
		}
		res, err := t.base.RoundTrip(out)
		var (
			d  time.Duration
			ok bool
		)
		if err != nil {
			fault := connFault(err)
			if fault == faultNone || ctx.Err() != nil {
				return nil, err
			}
			retry := fault == faultDial && replayable || fault == faultBroken && resend
			if d, ok = t.core.Decide(attempt, waited, clientcore.Hint{Kind: clientcore.Fault}, retry); !ok {
				return nil, err
			}
		} else {
			t.core.Observe(ctx, res.Header)
			if res.StatusCode != http.StatusTooManyRequests && res.StatusCode != http.StatusServiceUnavailable {
				t.core.Succeeded()
				return res, nil
			}
			if d, ok = t.core.Decide(attempt, waited, hintOf(retryHint(res.Header, t.core.Now())), resend); !ok {
				return res, nil
			}
			discard(res.Body)
		}
		if err := t.core.Sleep(ctx, d); err != nil {
			return nil, err
		}
		waited += d
	}
}

// hintOf maps retryHint's answer onto the client core's hints.
func hintOf(d time.Duration, exact bool) clientcore.Hint {
	if exact {
		return clientcore.Hint{Kind: clientcore.Slot, Wait: d}
	}
	return clientcore.Hint{Kind: clientcore.Coarse, Wait: d}
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
	t.core.SetFields(out.Header)
	return out, nil
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

// retryHint returns the wait a refusal asks for: Herdcap-Retry-After-Ms
// (exact: a slot the server spread), else Retry-After (delay-seconds or an
// HTTP date; coarse); 0 when there is none or it does not parse.
func retryHint(h http.Header, now time.Time) (d time.Duration, exact bool) {
	if lines := h[headerRetryAfterMillis]; len(lines) == 1 {
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
