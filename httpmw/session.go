package httpmw

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/herdcap/herdcap/internal/wire"
)

// sessionKeyFunc returns the client-ID function of Invalidate and Admit:
// WithKeyFunc's, or by default the HeaderClient header when the request
// carries one, else the client IP address (trusted-proxy rules as for
// RateLimit).
func sessionKeyFunc(c *config) func(*http.Request) (string, error) {
	if c.keyFunc != nil {
		return c.keyFunc
	}
	ip := &clientIP{trusted: c.trusted, useXFF: c.useXFF, useFwd: c.useFwd}
	return func(r *http.Request) (string, error) {
		if lines, ok := r.Header[HeaderClient]; ok {
			id, err := wire.ParseClientID(lines)
			if err != nil {
				return "", fmt.Errorf("%w: %s: %w", ErrNoKey, HeaderClient, err)
			}
			return id, nil
		}
		return ip.key(r)
	}
}

// sessionLog is the throttled logging shared by Invalidate and Admit.
type sessionLog struct {
	log                       *slog.Logger
	name                      string // "httpmw: Invalidate" or "httpmw: Admit"
	keyLog, failLog, inputLog logThrottle
}

// keyFailed answers 400 (ErrNoKey, e.g. a malformed HeaderClient) or 500
// (any other key-function error, or an empty key).
func (s *sessionLog) keyFailed(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoKey):
		status = http.StatusBadRequest
	case err == nil:
		err = errors.New("key function returned an empty key")
	}
	if status == http.StatusBadRequest {
		s.badInput(r, "no usable client ID", err)
	} else if n, ok := s.keyLog.Allow(); ok {
		s.log.LogAttrs(r.Context(), slog.LevelError, s.name+": key function failed; answering 500",
			slog.Any("error", err), slog.Uint64("suppressed", n))
	}
	writeText(w, status)
}

// badInput logs, at Debug level and throttled, a request turned away for
// malformed input.
func (s *sessionLog) badInput(r *http.Request, what string, err error) {
	if !s.log.Enabled(r.Context(), slog.LevelDebug) {
		return
	}
	if n, ok := s.inputLog.Allow(); ok {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, s.name+": "+what+"; answering 400",
			slog.Any("error", err), slog.Uint64("suppressed", n))
	}
}
