package grpcmw

import (
	"errors"
	"math"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

var (
	// ErrRateLimited is wrapped by an *Error whose Code is
	// codes.ResourceExhausted: the caller's quota is spent.
	ErrRateLimited = errors.New("grpcmw: rate limit exceeded")
	// ErrLimiterFailed is wrapped by an *Error whose Code is
	// codes.Unavailable: the budget returned an error (a store outage under
	// the fail-closed policy, or any other failure), so no decision was
	// made from the limit. The *Error also wraps the budget's error.
	ErrLimiterFailed = errors.New("grpcmw: rate limiter unavailable")
	// ErrAdmissionRefused is wrapped by an *Error whose Code is
	// codes.Unavailable from Admit: the budget of new sessions is spent,
	// and RetryAfter is the client's slot.
	ErrAdmissionRefused = errors.New("grpcmw: new session refused")
)

// Error is a call turned away by RateLimit's or Admit's interceptors. The
// interceptors turn it into its gRPC status (see GRPCStatus) and send
// RetryAfter as the pushback trailer; Limiter.Limit returns it as is.
//
// Its message and status never include the budget's own error, which may
// describe internals (addresses, keys); errors.Is and errors.As reach it
// through Unwrap on the server side.
type Error struct {
	// Code is codes.ResourceExhausted when a quota is spent, and
	// codes.Unavailable when a budget failed, when Admit refused a new
	// session or the gate failed, or when a handler's call to its origin
	// was refused by an origin.Guard (see RateLimit).
	Code codes.Code
	// RetryAfter is how long the client is told to wait before retrying:
	// the decision's exact wait (a refusal's turn, spread by the budget;
	// an admission slot or deferral; a failed gate's spread wait), sent
	// in RetryInfo and as the pushback; or a failed budget's wait (or, for
	// a failed budget or gate without one, the config's
	// UnavailableRetryAfter), which many callers are told alike, sent in
	// RetryInfo only, for clients to jitter.
	RetryAfter time.Duration
	// cause is the budget's error (Unavailable only).
	cause error
	// admission marks a refusal by the admission interceptors.
	admission bool
	// slowStart marks a call shed by the SlowStart interceptors.
	slowStart bool
	// origin marks a handler's error that wraps an *origin.RefusedError
	// (cause): the origin guard refused the handler's call.
	origin bool
	// exact marks RetryAfter as a turn spread for this caller: it is sent
	// as the pushback trailer too.
	exact bool
}

// Error returns "grpcmw: " followed by the status message.
func (e *Error) Error() string { return "grpcmw: " + e.message() }

func (e *Error) message() string {
	d := time.Duration(pushbackMillis(e.RetryAfter)) * time.Millisecond
	switch {
	case e.Code == codes.ResourceExhausted:
		return "rate limit exceeded; retry after " + d.String()
	case e.origin:
		return "origin busy; retry after " + d.String()
	case e.slowStart && e.cause == nil:
		return "node warming up; retry after " + d.String()
	case e.slowStart:
		return "slow start unavailable; retry after " + d.String()
	case e.admission && e.cause == nil:
		return "new session refused; retry after " + d.String()
	case e.admission:
		return "admission unavailable; retry after " + d.String()
	}
	return "rate limiter unavailable; retry after " + d.String()
}

// Unwrap returns ErrRateLimited, ErrAdmissionRefused, ErrLimiterFailed
// and the budget's (or admission's) error, or a handler's error that wraps
// an *origin.RefusedError.
func (e *Error) Unwrap() []error {
	if e.Code == codes.ResourceExhausted {
		return []error{ErrRateLimited}
	}
	if e.origin {
		return []error{e.cause}
	}
	if e.admission && e.cause == nil {
		return []error{ErrAdmissionRefused}
	}
	if e.slowStart && e.cause == nil {
		return []error{ErrSlowStartShed}
	}
	if e.cause == nil {
		return []error{ErrLimiterFailed}
	}
	return []error{ErrLimiterFailed, e.cause}
}

// GRPCStatus returns the status sent to the client: Code, a message stating
// the delay, and an errdetails.RetryInfo detail whose RetryDelay is
// RetryAfter. It lets status.FromError and status.Code see through an
// *Error.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.message())
	if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
		return withInfo
	}
	return st // only if the detail cannot be marshalled, which RetryInfo always can
}

// trailer returns the pushback trailer for e.
func (e *Error) trailer() metadata.MD {
	return metadata.MD{pushbackTrailer: []string{strconv.FormatInt(pushbackMillis(e.RetryAfter), 10)}}
}

// pushbackMillis rounds d up to whole milliseconds, at least 1 (a 0 would
// invite an immediate retry) and at most math.MaxInt32 (about 24.8 days, so
// that 32-bit clients can parse it).
func pushbackMillis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond > 0 {
		ms++
	}
	return min(max(ms, 1), math.MaxInt32)
}
