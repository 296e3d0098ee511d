package grpcmw

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// setResponseMD sends md with a unary response: in the header when the
// call succeeded, else in the trailer, so that an error (a refusal by an
// interceptor further in, say) still goes out Trailers-Only. If the handler
// has already sent the header, md goes in the trailer.
func setResponseMD(ctx context.Context, md metadata.MD, failed bool) {
	if !failed && grpc.SetHeader(ctx, md) == nil {
		return
	}
	_ = grpc.SetTrailer(ctx, md) // outside a grpc-go server there is nowhere to send it
}

// mdStream sends md with a stream's response: in the header, set just
// before the handler sends its first message or header; or, if the handler
// sends neither, in the trailer, which keeps a failed stream Trailers-Only.
type mdStream struct {
	grpc.ServerStream
	md   metadata.MD
	sent atomic.Bool
}

// attach puts md in the header, once, before anything is sent.
func (s *mdStream) attach() {
	if s.sent.CompareAndSwap(false, true) {
		if s.ServerStream.SetHeader(s.md) != nil {
			s.ServerStream.SetTrailer(s.md)
		}
	}
}

// SendHeader sends md along with the handler's header.
func (s *mdStream) SendHeader(md metadata.MD) error {
	s.attach()
	return s.ServerStream.SendHeader(md)
}

// SendMsg sends md in the header that goes out with the first message.
func (s *mdStream) SendMsg(m any) error {
	s.attach()
	return s.ServerStream.SendMsg(m)
}

// finish puts md in the trailer if nothing was sent.
func (s *mdStream) finish() {
	if s.sent.CompareAndSwap(false, true) {
		s.ServerStream.SetTrailer(s.md)
	}
}
