package grpcmw

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// Admitter is what the admission interceptors need of an *admission.Gate:
// a decision on whether clientID's session may start now, given the resume
// token it presented ("" for none). It is called concurrently.
type Admitter interface {
	Admit(ctx context.Context, clientID, ticket string) (admission.Decision, error)
}

// doorman is the decision shared by the admission interceptors.
type doorman struct {
	config
	a Admitter
}

func newDoorman(a Admitter, opts []Option) (*doorman, error) {
	if isNil(a) {
		return nil, ErrNilAdmitter
	}
	c, err := applyOptions(forAdmission, opts)
	if err != nil {
		return nil, err
	}
	return &doorman{config: c, a: a}, nil
}

// admit decides on the call in ctx. It returns the metadata to send with
// the response (the resume token; nil for none) or an error: an *Error,
// whose pushback trailer the caller must set, or a status error.
func (d *doorman) admit(ctx context.Context, fullMethod string) (metadata.MD, error) {
	if d.skip != nil && d.skip(fullMethod) {
		return nil, nil
	}
	id, err := d.sessionKey(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	tok := ""
	if vals := metadata.ValueFromIncomingContext(ctx, MetadataResume); len(vals) == 1 && wire.TokenShaped(vals[0]) {
		tok = vals[0]
	}
	dec, err := d.a.Admit(ctx, id, tok)
	switch {
	case errors.Is(err, limiter.ErrInvalidRequest):
		d.logThrottled(ctx, &d.logs.misconfig, slog.LevelError, "grpcmw: the admission rejected the client ID; answering Internal",
			slog.String("method", fullMethod), slog.Int("id_bytes", len(id)), slog.Any("error", err))
		return nil, status.Error(codes.Internal, "admission misconfigured")
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return nil, status.FromContextError(err).Err()
	case err != nil:
		e := &Error{Code: codes.Unavailable, RetryAfter: dec.RetryAfter, cause: err, admission: true}
		if e.RetryAfter <= 0 {
			e.RetryAfter = d.unavailableRetry
		}
		d.logThrottled(ctx, &d.logs.failed, slog.LevelError, "grpcmw: admission failed; answering Unavailable",
			slog.String("method", fullMethod), slog.String("source", dec.Via.String()),
			slog.Bool("unavailable", errors.Is(err, limiter.ErrUnavailable)),
			slog.Duration("retry_after", e.RetryAfter), slog.Any("error", err))
		return nil, e
	case !dec.Admitted:
		if d.logger.Enabled(ctx, slog.LevelDebug) { // the refusal path builds no record when off
			d.logThrottled(ctx, &d.logs.denied, slog.LevelDebug, "grpcmw: new session refused",
				slog.String("method", fullMethod), slog.Bool("booked", dec.Booked),
				slog.Duration("retry_after", dec.RetryAfter))
		}
		return nil, &Error{Code: codes.Unavailable, RetryAfter: max(dec.RetryAfter, time.Millisecond), admission: true}
	case dec.Ticket != "":
		return metadata.MD{MetadataResume: {dec.Ticket}}, nil
	}
	return nil, nil
}

// UnaryServerAdmission returns a unary server interceptor that admits the
// calls that start sessions through a, so that a herd of clients coming
// back at once is let in as a flat stream. Calls of methods WithSkip
// exempts pass straight through; every other call passes the gate, and the
// resume token tells new sessions from resumed ones: a call presenting a
// valid MetadataResume token resumes (a lets it in without spending the
// budget), one without is a new session. Exempt every method but the one
// that opens a session (a login, a connect) if the others should not be
// gated.
//
// The call's client ID is MetadataClient, else PeerIP (or WithKeyFunc).
// Then:
//
//   - admitted: the handler runs; when the Admission issues resume tokens
//     (admission.Config.TicketKeys), MetadataResume carries the client's fresh token
//     with the response (header on success, trailer otherwise);
//   - refused: codes.Unavailable, with an errdetails.RetryInfo detail and
//     the grpc-retry-pushback-ms trailer both holding the slot (RetryAfter
//     rounded up to a millisecond), sent Trailers-Only so that grpc-go
//     retry policies honour it; the error wraps ErrAdmissionRefused on the
//     server side. A booked client that comes back after the wait (within
//     the Admission's slot grace) is let in;
//   - the admission failed (limiter.ErrUnavailable under FailClosed, or any
//     other error): codes.Unavailable with the decision's wait (or
//     WithUnavailableRetryAfter's), the same details and trailer, and a
//     generic message; the error is logged, never sent;
//   - limiter.ErrInvalidRequest (a WithKeyFunc ID longer than
//     admission.MaxClientIDLen): codes.Internal without pushback;
//   - a malformed MetadataClient: codes.InvalidArgument; key-function
//     errors as described on KeyFunc.
//
// Install admission before anything that sets response headers, as for
// the rate limit (see the package documentation on pushback). The
// constructor fails on a nil admitter (ErrNilAdmitter) or a bad option
// (ErrInvalidOption). The interceptor is safe for concurrent use.
func UnaryServerAdmission(a Admitter, opts ...Option) (grpc.UnaryServerInterceptor, error) {
	d, err := newDoorman(a, opts)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, err := d.admit(ctx, info.FullMethod)
		if err != nil {
			if e, ok := err.(*Error); ok {
				_ = grpc.SetTrailer(ctx, e.trailer()) // no stream outside a grpc-go server
			}
			return nil, err
		}
		resp, err := handler(ctx, req)
		if md != nil {
			setResponseMD(ctx, md, err != nil)
		}
		return resp, err
	}, nil
}

// StreamServerAdmission returns a stream server interceptor that admits a
// stream when it opens, before the handler runs: a stream is a session.
// Decisions, status codes, details and the pushback trailer are as for
// UnaryServerAdmission; an admitted stream's resume token goes in the
// header metadata sent with its first message (or in the trailer if the
// handler sends nothing).
//
// The constructor fails on a nil admitter or a bad option. The interceptor
// is safe for concurrent use.
func StreamServerAdmission(a Admitter, opts ...Option) (grpc.StreamServerInterceptor, error) {
	d, err := newDoorman(a, opts)
	if err != nil {
		return nil, err
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		md, err := d.admit(ss.Context(), info.FullMethod)
		if err != nil {
			if e, ok := err.(*Error); ok {
				ss.SetTrailer(e.trailer())
			}
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
