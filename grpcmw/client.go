package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/clientcore"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/retry"
)

// ErrInvalidConfig is wrapped by the error a constructor (RateLimit,
// NewLimiter, Admit, Invalidate, NewClient) returns for an invalid config;
// the message names the field with its struct path, e.g. "grpcmw: invalid
// config: Policy[1].Budget is nil" or "grpcmw: invalid config:
// ClientConfig.Retry.MaxAttempts must be >= 0, got -1".
var ErrInvalidConfig = errors.New("grpcmw: invalid config")

// ClientConfig configures NewClient. The zero value is a Client that sends
// no client ID, takes no part in invalidation and retries
// codes.Unavailable and codes.ResourceExhausted with the default
// retry.Policy.
type ClientConfig struct {
	// ClientID is sent in herdcap-client: 1 to admission.MaxClientIDLen
	// (256) bytes of visible ASCII other than the comma. If ClientID is
	// "", none is sent, and servers identify the client by PeerIP.
	ClientID string
	// OnInvalidate makes the Client take part in invalidation: it sends
	// its applied epoch (herdcap-epoch), and OnInvalidate is called with
	// each notice it is given, in epoch order, once, before the notice's
	// epoch is recorded as applied. It drops what the notice's Scope
	// names from the client's caches; it must not block for long (the
	// call that carried the notice waits for it), and it may make calls
	// through the same connection. If OnInvalidate is nil, the Client
	// sends no epoch, so servers send it no notices.
	OnInvalidate func(invalidate.Notice)
	// Applied is the epoch the Client starts from, for a client that
	// persisted it; at most invalidate.MaxEpoch. Default 0.
	Applied uint64
	// Retry bounds the retries of each call (attempts, total wait,
	// backoff, retry budget); zero fields take retry.Policy's defaults,
	// and a nil Retry.Budget is a budget of the Client's own. MaxAttempts
	// 1 never retries, for use with a grpc-go retryPolicy (see Client).
	Retry retry.Policy
	// RetryCodes are the status codes that are retried. If RetryCodes is
	// nil, codes.Unavailable and codes.ResourceExhausted; an empty,
	// non-nil slice retries nothing. codes.OK is not a failure and cannot
	// be listed.
	RetryCodes []codes.Code
	// Clock is where the Client sleeps between attempts (limiter.Clock's
	// AfterFunc, whose Timer is stopped when the call's context ends
	// first). If Clock is nil, the system clock.
	Clock limiter.Clock
	// Logger receives a Warn record, at most one a second, for malformed
	// herdcap-invalidate in a response. If Logger is nil, nothing is
	// logged.
	Logger *slog.Logger
}

// Client is the client side of herdcap over gRPC for one client: its
// unary and stream client interceptors (UnaryInterceptor,
// StreamInterceptor) identify the client to the invalidation and
// admission interceptors, apply the invalidations they send, and back off
// when turned away. Install both on the connection.
//
// On every call and stream it sends herdcap-client (ClientConfig.ClientID,
// if set), herdcap-epoch (the highest epoch applied, if OnInvalidate is
// set) and herdcap-ticket (the session's ticket, once a server has issued
// one), replacing any values of those keys in the outgoing metadata. From
// every response's header and trailer it keeps a ticket, and applies the
// notices of herdcap-invalidate through OnInvalidate: each once, in epoch
// order, never two at once, never under a lock.
//
// A call that fails with one of the RetryCodes is sent again after a wait
// when the retry budget allows it, the attempt and wait bounds of
// ClientConfig.Retry hold, and the server did not forbid it; the wait
// honours the server's pushback or RetryInfo, and ends early when the
// call's context is done. A stream is retried only while it opens. The
// package doc ("Client side") states the rules, and how to combine the
// Client with grpc-go's own retries without retrying twice.
//
// A Client is safe for concurrent use; give each client identity its own.
type Client struct {
	core       *clientcore.Client
	retryCodes []codes.Code
}

// NewClient returns a Client configured by cfg. An invalid field is an
// error wrapping ErrInvalidConfig that names it.
func NewClient(cfg ClientConfig) (*Client, error) {
	core, err := clientcore.New(clientcore.Config{
		ClientID: cfg.ClientID, OnInvalidate: cfg.OnInvalidate, Applied: cfg.Applied, Retry: cfg.Retry,
		Clock: cfg.Clock, Logger: cfg.Logger, Name: "grpcmw: Client",
		Fields: clientcore.Fields{Client: metadataClient, Epoch: metadataEpoch, Ticket: metadataTicket, Invalidate: metadataInvalidate},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: ClientConfig.%w", ErrInvalidConfig, err)
	}
	c := &Client{core: core, retryCodes: []codes.Code{codes.Unavailable, codes.ResourceExhausted}}
	if cfg.RetryCodes != nil {
		for i, code := range cfg.RetryCodes {
			if code == codes.OK || code > codes.Unauthenticated {
				return nil, fmt.Errorf("%w: ClientConfig.RetryCodes[%d]: code %v cannot be retried", ErrInvalidConfig, i, code)
			}
		}
		c.retryCodes = slices.Clone(cfg.RetryCodes)
	}
	return c, nil
}

// Applied returns the highest epoch the Client has applied.
func (c *Client) Applied() uint64 { return c.core.Applied() }

// ResetSession forgets the session's ticket, so that the next call starts
// a new session.
func (c *Client) ResetSession() { c.core.ResetSession() }

// outgoing returns ctx with the herdcap metadata of the next attempt.
func (c *Client) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx) // a copy
	if md == nil {
		md = metadata.MD{}
	}
	c.core.SetFields(md)
	return metadata.NewOutgoingContext(ctx, md)
}

// retryable reports whether err has a retry code.
func (c *Client) retryable(err error) bool {
	return slices.Contains(c.retryCodes, status.Code(err))
}

// nextWait decides whether to retry after the failed attempt number attempt
// (err, with the attempt's trailer), having waited waited so far; it
// records the failure in the retry budget when err has a retry code.
func (c *Client) nextWait(attempt int, waited time.Duration, trailer metadata.MD, err error) (time.Duration, bool) {
	if !c.retryable(err) {
		return 0, false
	}
	h := clientcore.Hint{Kind: clientcore.Forbidden}
	if d, exact, ok := retryHint(trailer, err); exact {
		h = clientcore.Hint{Kind: clientcore.Slot, Wait: d}
	} else if ok {
		h = clientcore.Hint{Kind: clientcore.Coarse, Wait: d}
	}
	return c.core.Decide(attempt, waited, h, true)
}

// retryHint returns the wait a failure asks for: the pushback trailer
// (exact: the millisecond a server computed, an admission slot already
// spread at its rate), else a RetryInfo detail (coarse: any server's
// suggestion); 0 for none. ok is false when the server forbade a retry (a
// pushback that is not a non-negative integer).
func retryHint(trailer metadata.MD, err error) (d time.Duration, exact, ok bool) {
	if vals := trailer.Get(pushbackTrailer); len(vals) > 0 {
		if len(vals) != 1 {
			return 0, false, false
		}
		ms, perr := wire.ParseDecimal(wire.TrimOWS(vals[0]), wire.MaxMillisDigits, math.MaxInt32)
		if perr != nil {
			return 0, false, false
		}
		return time.Duration(ms) * time.Millisecond, ms > 0, true
	}
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			if delay := ri.GetRetryDelay().AsDuration(); delay > 0 {
				return delay, false, true
			}
		}
	}
	return 0, false, true
}

// sleep waits d, or until ctx is done, and then returns its error as a
// status error.
func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if err := c.core.Sleep(ctx, d); err != nil {
		return status.FromContextError(err).Err()
	}
	return nil
}

// UnaryInterceptor returns the Client's unary client interceptor.
func (c *Client) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var waited time.Duration
		for attempt := 0; ; attempt++ {
			var header, trailer metadata.MD
			callOpts := make([]grpc.CallOption, 0, len(opts)+2)
			callOpts = append(append(callOpts, opts...), grpc.Header(&header), grpc.Trailer(&trailer))
			err := invoker(c.outgoing(ctx), method, req, reply, cc, callOpts...)
			c.core.Observe(ctx, header)
			c.core.Observe(ctx, trailer)
			if err == nil {
				c.core.Succeeded()
				return nil
			}
			d, ok := c.nextWait(attempt, waited, trailer, err)
			if !ok {
				return err
			}
			if serr := c.sleep(ctx, d); serr != nil {
				return serr
			}
			waited += d
		}
	}
}

// StreamInterceptor returns the Client's stream client interceptor.
func (c *Client) StreamInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(c.outgoing(ctx), desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		s := &clientStream{c: c, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
			replay: !desc.ClientStreams}
		s.cur.Store(&streamBox{cs})
		return s, nil
	}
}

// streamBox holds the current attempt's stream.
type streamBox struct{ grpc.ClientStream }

// clientStream applies the Client to a stream, and retries a
// server-streaming call that is refused as it opens.
type clientStream struct {
	c        *Client
	ctx      context.Context // the caller's
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	replay   bool // a server-streaming call: its request can be sent again

	cur atomic.Pointer[streamBox]

	mu       sync.Mutex
	sent     []any // the request, kept for a retry (replay only)
	closed   bool  // CloseSend was called
	received bool  // a response message arrived: no more retries
	sawHdr   bool  // the current attempt's header was observed
	settled  bool  // the budget heard of this stream's success
	attempt  int
	waited   time.Duration
}

func (s *clientStream) current() grpc.ClientStream { return s.cur.Load().ClientStream }

// Context returns the current attempt's context.
func (s *clientStream) Context() context.Context { return s.current().Context() }

// Header returns the current attempt's header metadata, after applying it.
func (s *clientStream) Header() (metadata.MD, error) {
	md, err := s.current().Header()
	s.c.core.Observe(s.ctx, md)
	return md, err
}

// Trailer returns the current attempt's trailer metadata.
func (s *clientStream) Trailer() metadata.MD { return s.current().Trailer() }

// CloseSend closes the sending side, and remembers it for a retry.
func (s *clientStream) CloseSend() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.current().CloseSend()
}

// SendMsg sends m, and keeps it for a retry of a server-streaming call.
func (s *clientStream) SendMsg(m any) error {
	if s.replay {
		s.mu.Lock()
		if !s.received {
			s.sent = append(s.sent, m)
		}
		s.mu.Unlock()
	}
	return s.current().SendMsg(m)
}

// RecvMsg receives a message; on a retryable refusal before any response,
// it waits, opens the call again and replays the request.
func (s *clientStream) RecvMsg(m any) error {
	for {
		cs := s.current()
		err := cs.RecvMsg(m)
		s.mu.Lock()
		first := !s.sawHdr
		s.sawHdr = true
		s.mu.Unlock()
		if first {
			if md, herr := cs.Header(); herr == nil { // does not block: RecvMsg returned
				s.c.core.Observe(s.ctx, md)
			}
		}
		switch {
		case err == nil:
			s.mu.Lock()
			s.received = true
			s.sent = nil
			s.mu.Unlock()
			s.success()
			return nil
		case errors.Is(err, io.EOF):
			s.c.core.Observe(s.ctx, cs.Trailer())
			s.success()
			return err
		}
		trailer := cs.Trailer()
		s.c.core.Observe(s.ctx, trailer)
		if rerr := s.retry(trailer, err); rerr != nil {
			return rerr
		}
	}
}

// success tells the retry budget, once, that the stream worked.
func (s *clientStream) success() {
	s.mu.Lock()
	done := s.settled
	s.settled = true
	s.mu.Unlock()
	if !done {
		s.c.core.Succeeded()
	}
}

// retry reopens a refused server-streaming call, after the wait. It
// returns nil when the call was reopened, else the error that stands: err,
// the context's, or the reopening's.
func (s *clientStream) retry(trailer metadata.MD, err error) error {
	s.mu.Lock()
	eligible := s.replay && !s.received && !s.settled
	attempt, waited := s.attempt, s.waited
	s.mu.Unlock()
	if !eligible {
		return err
	}
	d, ok := s.c.nextWait(attempt, waited, trailer, err)
	if !ok {
		return err
	}
	if serr := s.c.sleep(s.ctx, d); serr != nil {
		return serr
	}
	cs, oerr := s.streamer(s.c.outgoing(s.ctx), s.desc, s.cc, s.method, s.opts...)
	if oerr != nil {
		return oerr
	}
	s.mu.Lock()
	sent, closed := s.sent, s.closed
	s.attempt++
	s.waited += d
	s.sawHdr = false
	s.mu.Unlock()
	for _, m := range sent {
		if err := cs.SendMsg(m); err != nil {
			break // the status comes with RecvMsg
		}
	}
	if closed {
		_ = cs.CloseSend()
	}
	s.cur.Store(&streamBox{cs})
	return nil
}
