package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/logthrottle"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// Defaults of the Client options.
const (
	// DefaultBackoffBase and DefaultBackoffCap shape the Client's default
	// limiter.Backoff: full jitter in a window starting at the base and
	// doubling up to the cap, used when a refusal names no wait.
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffCap  = 10 * time.Second
	// DefaultMaxAttempts is how many times a Client sends one call at
	// most, the first try included.
	DefaultMaxAttempts = 4
	// DefaultMaxWait bounds the total time a Client waits between the
	// attempts of one call.
	DefaultMaxWait = 30 * time.Second
	// DefaultRetryTokens and DefaultRetryRatio configure the Client's
	// default limiter.RetryBudget (gRPC's retryThrottling values).
	DefaultRetryTokens = 10
	DefaultRetryRatio  = 0.1
)

// ErrInvalidClientOption is wrapped by the error NewClient returns for a bad
// option; the message names it.
var ErrInvalidClientOption = errors.New("grpcmw: invalid client option")

// Client is the client side of herdcap over gRPC for one client: it
// provides the unary and stream client interceptors (UnaryInterceptor,
// StreamInterceptor) that identify the client to the invalidation and
// admission interceptors, apply the invalidations they send, and back off
// when turned away. Install both on the connection:
//
//	hc, err := grpcmw.NewClient(grpcmw.WithClientID(id), grpcmw.WithOnInvalidate(drop))
//	conn, err := grpc.NewClient(target,
//		grpc.WithChainUnaryInterceptor(hc.UnaryInterceptor()),
//		grpc.WithChainStreamInterceptor(hc.StreamInterceptor()),
//		grpc.WithDisableRetry()) // the Client retries; see below
//
// On every call and stream it sends MetadataClient (WithClientID, if set;
// else servers use the peer address), MetadataEpoch (the highest epoch
// applied, if the Client applies invalidations: WithOnInvalidate) and
// MetadataResume (once a server has issued a token), replacing any values
// of those keys in the context's outgoing metadata. From every response's
// header and trailer it keeps the resume token and applies the notices of
// MetadataInvalidate as httpmw.Transport does: each once, in epoch order,
// never two at once, never under a lock.
//
// # Retries
//
// A call that fails with one of the retry codes (WithRetryCodes, default
// codes.Unavailable and codes.ResourceExhausted) is sent again when the
// retry budget allows it (WithRetryBudget), fewer than WithMaxAttempts
// attempts were made, the wait fits in what is left of WithMaxWait, and
// the server did not forbid it (a grpc-retry-pushback-ms trailer that is
// not a non-negative integer means "do not retry", as in gRPC's retry
// design). The wait is the server's hint, and never less than it:
//
//   - the pushback trailer, the exact millisecond the server computed (for
//     the admission interceptors, a slot already spread at the
//     admission's rate): the hint plus at most a few milliseconds of
//     jitter (limiter.Backoff.DelaySlot, default at most
//     limiter.DefaultSlotJitter), so that a herd comes back as flat as the
//     slots were booked;
//   - else an errdetails.RetryInfo detail, which any server may send alike
//     to many clients: the hint plus a wider jitter
//     (limiter.Backoff.DelayHint, by default up to 10% and at most a
//     second);
//   - no hint (a pushback of 0, or a connection failure grpc-go reports
//     as codes.Unavailable): exponential backoff with full jitter.
//
// A wait ends early when the call's context is done.
//
// Like a service config's retryPolicy, this treats the retry codes as
// meaning the call was not processed; list only codes your handlers do
// not return after side effects. A stream is retried only while it opens:
// a server-streaming call (one request message) whose first receive fails
// with a retry code before any response arrived is opened again and its
// request sent again. Client-streaming and bidirectional streams are never
// retried: their refusal is returned, after the notices and token are
// applied.
//
// # With grpc-go's own retries
//
// grpc-go retries by itself when the service config has a retryPolicy (or
// transparently, for attempts that never reached a server), and it honours
// the pushback too. The interceptors sit outside those retries: they see
// only the outcome after grpc-go's last attempt, so retrying then would
// multiply the attempts (maxAttempts × maxAttempts). Use one or the other:
//
//   - let the Client retry: no retryPolicy for the methods it calls (or
//     grpc.WithDisableRetry(), which does not disable transparent retries,
//     as they are safe), and the budget, backoff and bounds above apply;
//   - let grpc-go retry: keep the retryPolicy (with retryThrottling for a
//     budget) and build the Client with WithMaxAttempts(1), so that it only
//     carries metadata and applies notices.
//
// A Client is safe for concurrent use; give each client identity its own.
type Client struct {
	clientID     string // "" for none
	onInvalidate func(invalidate.Notice)
	backoff      *limiter.Backoff
	budget       *limiter.RetryBudget
	maxAttempts  int
	maxWait      time.Duration
	retryCodes   []codes.Code
	log          *slog.Logger
	// sleep waits d or until ctx is done, then returns ctx's error as a
	// status error (tests run it in virtual time).
	sleep func(ctx context.Context, d time.Duration) error

	token   atomic.Pointer[string]
	applied atomic.Uint64
	queue   wire.NoticeQueue
	badLog  logthrottle.Throttle // malformed-notice records
}

// ClientOption configures NewClient. The zero ClientOption is invalid.
type ClientOption struct {
	name  string
	apply func(*Client) error
}

// WithClientID sets the client ID sent in MetadataClient: 1 to
// MaxClientMetadataLen bytes of visible ASCII other than the comma. By
// default none is sent, and servers identify the client by PeerIP.
func WithClientID(id string) ClientOption {
	return ClientOption{"WithClientID", func(c *Client) error {
		v, err := wire.ParseClientID([]string{id})
		if err != nil || v != id {
			return fmt.Errorf("client ID must be 1 to %d bytes of visible ASCII other than the comma", MaxClientMetadataLen)
		}
		c.clientID = id
		return nil
	}}
}

// WithOnInvalidate makes the Client take part in invalidation: it sends its
// applied epoch and calls f with each notice it is given, in epoch order,
// once, before recording the notice's epoch as applied. f drops what the
// notice's Scope names from the client's caches; it must not block for
// long (the call that carried the notice waits for it), and it may make
// calls through the same connection. By default the Client sends no
// epoch, so servers send it no notices.
func WithOnInvalidate(f func(invalidate.Notice)) ClientOption {
	return ClientOption{"WithOnInvalidate", func(c *Client) error {
		if f == nil {
			return errors.New("callback is nil")
		}
		c.onInvalidate = f
		return nil
	}}
}

// WithAppliedEpoch sets the epoch the Client starts from (default 0), for a
// client that persisted it; at most invalidate.MaxEpoch.
func WithAppliedEpoch(epoch uint64) ClientOption {
	return ClientOption{"WithAppliedEpoch", func(c *Client) error {
		if epoch > invalidate.MaxEpoch {
			return fmt.Errorf("epoch %d is above invalidate.MaxEpoch", epoch)
		}
		c.applied.Store(epoch)
		return nil
	}}
}

// WithBackoff sets the backoff between attempts (default: full jitter from
// DefaultBackoffBase to DefaultBackoffCap). A Backoff may be shared.
func WithBackoff(b *limiter.Backoff) ClientOption {
	return ClientOption{"WithBackoff", func(c *Client) error {
		if b == nil {
			return errors.New("backoff is nil")
		}
		c.backoff = b
		return nil
	}}
}

// WithRetryBudget sets the retry budget the Client spends from (default: a
// budget of its own, DefaultRetryTokens tokens, DefaultRetryRatio back per
// success). Every failure with a retry code takes a token, every success
// gives a fraction back. Share one budget between the Clients of a process
// to bound its retries as a whole.
func WithRetryBudget(b *limiter.RetryBudget) ClientOption {
	return ClientOption{"WithRetryBudget", func(c *Client) error {
		if b == nil {
			return errors.New("retry budget is nil")
		}
		c.budget = b
		return nil
	}}
}

// WithMaxAttempts sets how many times one call is sent at most, the first
// try included (default DefaultMaxAttempts; 1 never retries, for use with
// a grpc-go retryPolicy).
func WithMaxAttempts(n int) ClientOption {
	return ClientOption{"WithMaxAttempts", func(c *Client) error {
		if n < 1 {
			return fmt.Errorf("attempts must be >= 1, got %d", n)
		}
		c.maxAttempts = n
		return nil
	}}
}

// WithMaxWait bounds the total wait between the attempts of one call
// (default DefaultMaxWait): a retry whose wait would go past it is not
// made, and the failure is returned. It must be >= 0.
func WithMaxWait(d time.Duration) ClientOption {
	return ClientOption{"WithMaxWait", func(c *Client) error {
		if d < 0 {
			return fmt.Errorf("max wait must be >= 0, got %v", d)
		}
		c.maxWait = d
		return nil
	}}
}

// WithRetryCodes sets the status codes that are retried (default
// codes.Unavailable and codes.ResourceExhausted). codes.OK is not a
// failure and cannot be listed; no codes at all means no retries.
func WithRetryCodes(cs ...codes.Code) ClientOption {
	return ClientOption{"WithRetryCodes", func(c *Client) error {
		for _, code := range cs {
			if code == codes.OK || code > codes.Unauthenticated {
				return fmt.Errorf("code %v cannot be retried", code)
			}
		}
		c.retryCodes = slices.Clone(cs)
		return nil
	}}
}

// WithClientLogger sets the logger for malformed herdcap metadata in
// responses (Warn, at most one record a second). By default nothing is
// logged.
func WithClientLogger(l *slog.Logger) ClientOption {
	return ClientOption{"WithClientLogger", func(c *Client) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.log = l
		return nil
	}}
}

// NewClient returns a Client. A bad option is an error wrapping
// ErrInvalidClientOption that names it.
func NewClient(opts ...ClientOption) (*Client, error) {
	c := &Client{
		maxAttempts: DefaultMaxAttempts,
		maxWait:     DefaultMaxWait,
		retryCodes:  []codes.Code{codes.Unavailable, codes.ResourceExhausted},
		log:         slog.New(slog.DiscardHandler),
		sleep:       sleep,
	}
	for i, o := range opts {
		if o.apply == nil {
			return nil, fmt.Errorf("%w: option %d is the zero ClientOption", ErrInvalidClientOption, i)
		}
		if err := o.apply(c); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidClientOption, o.name, err)
		}
	}
	var err error
	if c.backoff == nil {
		if c.backoff, err = limiter.NewBackoff(DefaultBackoffBase, DefaultBackoffCap); err != nil {
			return nil, err
		}
	}
	if c.budget == nil {
		if c.budget, err = limiter.NewRetryBudget(DefaultRetryTokens, DefaultRetryRatio); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Applied returns the highest epoch the Client has applied.
func (c *Client) Applied() uint64 { return c.applied.Load() }

// ResumeToken returns the resume token of the client's session, or "".
func (c *Client) ResumeToken() string {
	if p := c.token.Load(); p != nil {
		return *p
	}
	return ""
}

// ResetSession forgets the resume token, so that the next call starts a new
// session.
func (c *Client) ResetSession() { c.token.Store(nil) }

// outgoing returns ctx with the herdcap metadata of the next attempt.
func (c *Client) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx) // a copy
	if md == nil {
		md = metadata.MD{}
	}
	set := func(k, v string) {
		if v == "" {
			delete(md, k)
		} else {
			md[k] = []string{v}
		}
	}
	set(MetadataClient, c.clientID)
	if c.onInvalidate != nil {
		set(MetadataEpoch, strconv.FormatUint(c.applied.Load(), 10))
	} else {
		set(MetadataEpoch, "")
	}
	set(MetadataResume, c.ResumeToken())
	return metadata.NewOutgoingContext(ctx, md)
}

// observe keeps a resume token and applies the notices of md (a response
// header or trailer).
func (c *Client) observe(ctx context.Context, md metadata.MD) {
	if len(md) == 0 {
		return
	}
	if vals := md.Get(MetadataResume); len(vals) == 1 && wire.TokenShaped(vals[0]) {
		tok := vals[0]
		c.token.Store(&tok)
	}
	if c.onInvalidate == nil {
		return
	}
	vals := md.Get(MetadataInvalidate)
	if len(vals) == 0 {
		return
	}
	notices, err := wire.ParseNotices(nil, vals)
	if err != nil {
		if n, ok := c.badLog.Allow(); ok {
			c.log.LogAttrs(ctx, slog.LevelWarn, "grpcmw: Client: malformed "+MetadataInvalidate+" metadata; applying the notices before the fault",
				slog.Int("applied", len(notices)), slog.Any("error", err), slog.Uint64("suppressed", n))
		}
	}
	c.queue.Deliver(notices, &c.applied, c.onInvalidate)
}

// retryable reports whether err has a retry code.
func (c *Client) retryable(err error) bool {
	return slices.Contains(c.retryCodes, status.Code(err))
}

// nextWait decides whether to retry after the failed attempt number attempt
// (err, with the attempt's trailer), having waited waited so far; it
// records the failure in the retry budget.
func (c *Client) nextWait(attempt int, waited time.Duration, trailer metadata.MD, err error) (time.Duration, bool) {
	if !c.retryable(err) {
		return 0, false
	}
	if !c.budget.RecordFailure() || attempt+1 >= c.maxAttempts {
		return 0, false
	}
	hint, exact, ok := retryHint(trailer, err)
	if !ok {
		return 0, false
	}
	var d time.Duration
	if exact {
		d = c.backoff.DelaySlot(attempt, hint)
	} else {
		d = c.backoff.DelayHint(attempt, hint)
	}
	if d > c.maxWait-waited {
		return 0, false
	}
	return d, true
}

// retryHint returns the wait a failure asks for: the pushback trailer
// (exact: the millisecond a server computed, an admission slot already
// spread at its rate), else a RetryInfo detail (coarse: any server's
// suggestion); 0 for none. ok is false when the server forbade a retry (a
// pushback that is not a non-negative integer).
func retryHint(trailer metadata.MD, err error) (d time.Duration, exact, ok bool) {
	if vals := trailer.Get(PushbackTrailer); len(vals) > 0 {
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
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
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
			c.observe(ctx, header)
			c.observe(ctx, trailer)
			if err == nil {
				c.budget.RecordSuccess()
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
	s.c.observe(s.ctx, md)
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
				s.c.observe(s.ctx, md)
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
			s.c.observe(s.ctx, cs.Trailer())
			s.success()
			return err
		}
		trailer := cs.Trailer()
		s.c.observe(s.ctx, trailer)
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
		s.c.budget.RecordSuccess()
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
