package grpcmw

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
)

// DefaultMaxNotices is the most notices the invalidation interceptors send
// with one call unless WithMaxNotices says otherwise.
const DefaultMaxNotices = 16

// ErrNilSource is returned by the invalidation constructors given a nil
// NoticeSource, and ErrNilAdmitter by the admission constructors given a
// nil Admitter.
var (
	ErrNilSource   = errors.New("grpcmw: notice source is nil")
	ErrNilAdmitter = errors.New("grpcmw: admitter is nil")
)

var errEmptyKey = errors.New("key function returned an empty key")

// NoticeSource is what the invalidation interceptors need of an
// *invalidate.Coordinator: the notices due to a client given the epoch it
// has applied, appended to dst (see invalidate.Coordinator.AppendDue). It
// is called concurrently.
type NoticeSource interface {
	AppendDue(ctx context.Context, dst []invalidate.Notice, clientID string, applied uint64) ([]invalidate.Notice, error)
}

// WithMaxNotices sets the most notices sent with one call (default
// DefaultMaxNotices, at least 1). Notices are also added only while the
// MetadataInvalidate value stays within 4 KiB, but always at least one.
// Holding notices back is safe: they come in epoch order, the client
// records the highest epoch it was given, and its next call gets the rest.
// Applies to the invalidation interceptors only.
func WithMaxNotices(n int) Option {
	return Option{name: "WithMaxNotices", scope: forInvalidate, apply: func(c *config) error {
		if n < 1 {
			return fmt.Errorf("max notices must be >= 1, got %d", n)
		}
		c.maxNotices = n
		return nil
	}}
}

// noticer computes the invalidation metadata of a call.
type noticer struct {
	config
	src  NoticeSource
	bufs sync.Pool // *[]invalidate.Notice
}

func newNoticer(src NoticeSource, opts []Option) (*noticer, error) {
	if isNil(src) {
		return nil, ErrNilSource
	}
	c, err := applyOptions(forInvalidate, opts)
	if err != nil {
		return nil, err
	}
	n := &noticer{config: c, src: src}
	n.bufs.New = func() any { return new([]invalidate.Notice) }
	return n, nil
}

// maxPooledNotices bounds the buffers kept for reuse.
const maxPooledNotices = 64

// notices returns the metadata to send with the call in ctx (nil when
// nothing is due, or the call takes no part), or a status error for
// malformed metadata or a failed key function.
func (n *noticer) notices(ctx context.Context, fullMethod string) (metadata.MD, error) {
	if n.skip != nil && n.skip(fullMethod) {
		return nil, nil
	}
	vals := metadata.ValueFromIncomingContext(ctx, MetadataEpoch)
	if vals == nil {
		return nil, nil // a client that takes no part
	}
	applied, err := wire.ParseEpoch(vals)
	if err != nil {
		n.badInput(ctx, fullMethod, MetadataEpoch, err)
		return nil, status.Error(codes.InvalidArgument, "malformed "+MetadataEpoch+" metadata")
	}
	id, err := n.sessionKey(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	buf := n.bufs.Get().(*[]invalidate.Notice)
	due, err := n.src.AppendDue(ctx, (*buf)[:0], id, applied)
	var md metadata.MD
	if err != nil {
		n.failed(ctx, fullMethod, err)
	} else if len(due) > 0 {
		v, epoch := wire.NoticeField(due, n.maxNotices)
		md = metadata.MD{MetadataInvalidate: {v}, MetadataEpoch: {strconv.FormatUint(epoch, 10)}}
	}
	if cap(due) <= maxPooledNotices {
		clear(due)
		*buf = due[:0]
		n.bufs.Put(buf)
	}
	return md, nil
}

// failed logs a coordinator error; the call goes on without notices.
func (n *noticer) failed(ctx context.Context, fullMethod string, err error) {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return
	}
	n.logThrottled(ctx, &n.logs.failed, slog.LevelError, "grpcmw: coordinator failed; serving without notices",
		slog.String("method", fullMethod), slog.Bool("unavailable", errors.Is(err, invalidate.ErrUnavailable)),
		slog.Any("error", err))
}

// UnaryServerInvalidate returns a unary server interceptor that tells
// clients which cached data to drop, as an invalidate.Coordinator releases
// it cohort by cohort.
//
// A call takes part when its metadata carries MetadataEpoch, the highest
// epoch the client has applied; calls without it pass through untouched.
// For one that does, the interceptor finds the client ID (MetadataClient,
// else PeerIP; or WithKeyFunc) and asks src which notices are due
// (AppendDue, from the coordinator's cache: no store round trip on most
// calls). When some are, it sends MetadataInvalidate and MetadataEpoch with
// the response: in the header metadata if the handler succeeds, else in
// the trailer, so that a refusal further in (a rate limit's pushback)
// still goes out Trailers-Only. At most WithMaxNotices notices go with one
// call; the client gets the rest on its next.
//
// A malformed MetadataEpoch (not 1 to 16 digits, above
// invalidate.MaxEpoch, or repeated) or MetadataClient ends the call with
// codes.InvalidArgument before the handler runs: reading a bad epoch as 0
// would tell a broken client to drop everything on every call. A
// coordinator error never fails the call: it is logged and the call is
// served without notices. Key-function errors end the call as described
// on KeyFunc. Methods WithSkip exempts are told nothing.
//
// The constructor fails on a nil source (ErrNilSource) or a bad option
// (ErrInvalidOption). The interceptor is safe for concurrent use.
func UnaryServerInvalidate(src NoticeSource, opts ...Option) (grpc.UnaryServerInterceptor, error) {
	n, err := newNoticer(src, opts)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, err := n.notices(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		if md != nil {
			setResponseMD(ctx, md, err != nil)
		}
		return resp, err
	}, nil
}

// StreamServerInvalidate returns a stream server interceptor that tells a
// client what to drop when its stream opens, as UnaryServerInvalidate does
// for unary calls: the notices go in the header metadata sent with the
// stream's first message (or its header), or in the trailer if the handler
// sends nothing. Notices released while a stream stays open are not sent
// on it; push them with an invalidate.Pusher.
//
// The constructor fails on a nil source or a bad option. The interceptor
// is safe for concurrent use.
func StreamServerInvalidate(src NoticeSource, opts ...Option) (grpc.StreamServerInterceptor, error) {
	n, err := newNoticer(src, opts)
	if err != nil {
		return nil, err
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, err := n.notices(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if md == nil {
			return handler(srv, ss)
		}
		ws := &mdStream{ServerStream: ss, md: md}
		err = handler(srv, ws)
		ws.finish()
		return err
	}, nil
}
