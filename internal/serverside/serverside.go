// Package serverside is the one server-side decision of herdcap's
// transports: whether a request passes the rate-limit policies, whether a
// new session is admitted, and which invalidation notices a client is due.
// httpmw's middleware and grpcmw's interceptors read their header fields or
// metadata, ask a RateLimiter, an Admitter or a Notifier, and map the
// answer (a Verdict and a wait) onto status codes, header fields or
// trailers. Neither transport decides anything of its own, so the two
// cannot drift apart; a parity test runs the same cases through both.
//
// The types are generic in R, what a transport's functions are given to
// find a request's key, cost or limit: *http.Request for httpmw, the
// call's context and method for grpcmw.
//
// Every function a user supplies (key, limit, cost, skip) is called under
// recover: an error or a panic is an answer (bad request or internal
// error, logged with the policy it came from), never a crash. Every
// record is throttled to about one a second per kind, carrying the count
// of those it stands for.
package serverside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"time"

	"github.com/herdcap/herdcap/internal/logthrottle"
)

// Verdict is how a transport answers a request.
type Verdict uint8

const (
	// Pass: serve the request.
	Pass Verdict = iota
	// Deny: a rate-limit quota is spent; come back after RetryAfter. HTTP
	// 429, gRPC ResourceExhausted.
	Deny
	// Refuse: the admission gate turned a new session away; come back
	// after RetryAfter (its slot). HTTP 503, gRPC Unavailable.
	Refuse
	// Unavailable: a budget or the gate failed, so no decision could be
	// made from the limit; come back after RetryAfter. HTTP 503, gRPC
	// Unavailable.
	Unavailable
	// BadRequest: the request carries nothing to key it by (the key
	// function's error wraps the transport's ErrNoKey, or is otherwise the
	// client's fault), or a malformed herdcap field. HTTP 400, gRPC
	// InvalidArgument (or the key function's own status).
	BadRequest
	// Internal: a server bug no retry can fix: a key, limit or cost
	// function that failed or panicked, a cost or limit the budget
	// rejects, a client ID the gate rejects. HTTP 500, gRPC Internal.
	Internal
	// Gone: the request's context ended while it was decided; the caller
	// is no longer there to answer.
	Gone
)

// String returns the verdict's name, for logs and tests.
func (v Verdict) String() string {
	switch v {
	case Pass:
		return "pass"
	case Deny:
		return "deny"
	case Refuse:
		return "refuse"
	case Unavailable:
		return "unavailable"
	case BadRequest:
		return "bad request"
	case Internal:
		return "internal"
	case Gone:
		return "gone"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Names are the words a transport's log records use: who logs, and how
// the transport answers each verdict.
type Names struct {
	Component   string // e.g. "httpmw: RateLimit"
	BadRequest  string // e.g. "400" or "InvalidArgument"
	Unavailable string // e.g. "503" or "Unavailable"
	Internal    string // e.g. "500" or "Internal"
}

// Keys is how the cores tell a key function's errors apart: the caller
// left (Gone), the client's fault (BadRequest, logged at Debug) or the
// server's (Internal, logged at Error).
type Keys struct {
	// NoKey is the transport's sentinel (httpmw.ErrNoKey, grpcmw.ErrNoKey):
	// an error wrapping it is the client's fault.
	NoKey error
	// ClientFault, if set, reports other errors that are the client's
	// fault (gRPC: a status of a client-class code, such as
	// Unauthenticated). Every other error is the server's.
	ClientFault func(error) bool
	// Gone, if set, reports errors that stand for the end of a request's
	// context in the transport's own terms (gRPC: a status of Canceled or
	// DeadlineExceeded). Once the request's context has ended, such an
	// error, or one wrapping the context's own, means the caller left.
	Gone func(error) bool
	// Answer, if set, names for the log the answer the transport gives a
	// key error that carries its own (gRPC: its status's code); "" for the
	// verdict's usual answer (Names).
	Answer func(error) string
}

// clientFault reports whether a key error is the client's fault.
func (k Keys) clientFault(err error) bool {
	return k.NoKey != nil && errors.Is(err, k.NoKey) || k.ClientFault != nil && k.ClientFault(err)
}

// gone reports whether a key error means that the caller left.
func (k Keys) gone(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, ctx.Err()) || k.Gone != nil && k.Gone(err))
}

// answer names the answer to a key error: its own, or def.
func (k Keys) answer(err error, def string) string {
	if k.Answer != nil {
		if a := k.Answer(err); a != "" {
			return a
		}
	}
	return def
}

// DefaultUnavailableRetryAfter is the wait told to clients when a budget
// or the gate fails without saying when to come back.
const DefaultUnavailableRetryAfter = time.Second

// errEmptyKey is the error of a key function that returned "".
var errEmptyKey = errors.New("key function returned an empty key")

// PanicError is a user function's panic, recovered.
type PanicError struct {
	Func  string // "key", "limit", "cost", "skip", "session start"
	Value any
	Stack []byte
}

// Error returns "<func> function panicked: <value>".
func (e *PanicError) Error() string { return fmt.Sprintf("%s function panicked: %v", e.Func, e.Value) }

// recovered turns a recovered panic value into a PanicError.
func recovered(fn string, v any) error { return &PanicError{Func: fn, Value: v, Stack: debug.Stack()} }

// Common is the configuration every core shares.
type Common[R any] struct {
	// Skip, if set, exempts requests: they pass, and nothing is asked.
	Skip func(R) bool
	// Keys tells the key functions' errors apart.
	Keys Keys
	// Logger receives the records; nil: none.
	Logger *slog.Logger
	// Names are the words of the records.
	Names Names
	// Attr, if set, describes a request in every record (gRPC: its
	// method).
	Attr func(R) slog.Attr
}

// logger logs through throttles, one per kind of record.
type logger[R any] struct {
	log   *slog.Logger
	names Names
	attr  func(R) slog.Attr

	failed    logthrottle.Throttle // a budget, the gate or the coordinator failed
	misconfig logthrottle.Throttle // a server bug: Internal
	input     logthrottle.Throttle // the client's fault (Debug)
	denied    logthrottle.Throttle // refusals (Debug)
	shadow    logthrottle.Throttle // shadow policies' refusals (Info)
}

func newLogger[R any](c Common[R]) *logger[R] {
	l := &logger[R]{log: c.Logger, names: c.Names, attr: c.Attr}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l
}

// enabled reports whether records at level are logged.
func (l *logger[R]) enabled(ctx context.Context, level slog.Level) bool {
	return l.log.Enabled(ctx, level)
}

// at logs msg (after the component's name) about r at level through th,
// adding the count of records suppressed before it. A disabled level
// costs nothing but the check.
func (l *logger[R]) at(ctx context.Context, r R, th *logthrottle.Throttle, level slog.Level, msg string, attrs ...slog.Attr) {
	if !l.log.Enabled(ctx, level) {
		return
	}
	if n, ok := th.Allow(); ok {
		all := make([]slog.Attr, 0, len(attrs)+2)
		if l.attr != nil {
			all = append(all, l.attr(r))
		}
		all = append(append(all, attrs...), slog.Uint64("suppressed", n))
		l.log.LogAttrs(ctx, level, l.names.Component+": "+msg, all...)
	}
}

// gone reports whether err is ctx's own error: the caller went away.
func gone(ctx context.Context, err error) bool {
	return ctx.Err() != nil && errors.Is(err, ctx.Err())
}

// keyFailure answers a key function's failure (err, nil for an empty
// key): Gone when the request's context ended and err says so (logged at
// Debug); BadRequest when it is the client's fault (Debug); else Internal,
// the server's fault (Error). what names the key ("rate-limit key",
// "client ID"); attrs name the policy. A shadow policy's failure is logged
// as the shadow policy's, and its verdict only reported.
func (l *logger[R]) keyFailure(ctx context.Context, r R, k Keys, err error, what string, shadow bool, attrs ...slog.Attr) (Verdict, error) {
	v, level, th := Internal, slog.LevelError, &l.misconfig
	switch {
	case err == nil:
		err = errEmptyKey
	case k.gone(ctx, err):
		v, level, th = Gone, slog.LevelDebug, &l.input
	case k.clientFault(err):
		v, level, th = BadRequest, slog.LevelDebug, &l.input
	}
	if !l.enabled(ctx, level) {
		return v, err
	}
	var msg string
	switch {
	case v == Gone:
		msg = "request canceled while finding its " + what
	case shadow && v == BadRequest:
		msg = "shadow policy found no usable " + what
	case shadow:
		msg = "shadow policy's key function failed"
	case v == BadRequest:
		msg = "no usable " + what + "; answering " + k.answer(err, l.names.BadRequest)
	default:
		msg = "key function failed; answering " + k.answer(err, l.names.Internal)
	}
	l.at(ctx, r, th, level, msg, append(attrs, panicAttrs(err)...)...)
	return v, err
}

// skipped reports whether c.Skip exempts r; a panicking Skip is Internal.
func (l *logger[R]) skipped(ctx context.Context, r R, skip func(R) bool) (bool, error) {
	if skip == nil {
		return false, nil
	}
	ok, err := callPredicate("skip", skip, r)
	if err != nil {
		l.at(ctx, r, &l.misconfig, slog.LevelError, "skip function failed; answering "+l.names.Internal, panicAttrs(err)...)
	}
	return ok, err
}

// panicAttrs returns the error attribute of err, and its stack when it is
// a recovered panic.
func panicAttrs(err error) []slog.Attr {
	attrs := []slog.Attr{slog.Any("error", err)}
	var p *PanicError
	if errors.As(err, &p) {
		attrs = append(attrs, slog.String("stack", string(p.Stack)))
	}
	return attrs
}

// callKey calls a key function under recover.
func callKey[R any](f func(R) (string, error), r R) (key string, err error) {
	defer func() {
		if v := recover(); v != nil {
			key, err = "", recovered("key", v)
		}
	}()
	return f(r)
}

// callPredicate calls a predicate (skip, session start) under recover;
// a panic is reported as err.
func callPredicate[R any](name string, f func(R) bool, r R) (ok bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			ok, err = false, recovered(name, v)
		}
	}()
	return f(r), nil
}

// IsNil reports whether v is nil or an interface holding a nil pointer,
// map, slice, func or channel: a typed nil given where a value is
// required.
func IsNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}
