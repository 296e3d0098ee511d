package httpmw

import (
	"errors"
	"net/http"

	"github.com/herdcap/herdcap/limiter/origin"
)

// WriteRefusal answers a request whose call to the origin was refused by
// an origin.Guard. If err wraps an *origin.RefusedError (errors.Is
// origin.ErrRefused), it writes 503 Service Unavailable with Retry-After
// (the guard's wait in whole seconds, rounded up, at least 1) and
// Herdcap-Retry-After-Ms (the wait in milliseconds, rounded up: a turn the
// guard spread for this caller, which Transport honours to the
// millisecond), and a plain-text body, and reports true. Otherwise it
// writes nothing and reports false. Call it before anything else is
// written to w. grpcmw's server interceptors give a handler's such error
// the same meaning (codes.Unavailable with the same wait as pushback).
func WriteRefusal(w http.ResponseWriter, err error) bool {
	var re *origin.RefusedError
	if !errors.As(err, &re) {
		return false
	}
	setRetryAfter(w.Header(), re.RetryAfter, true)
	writeText(w, http.StatusServiceUnavailable)
	return true
}
