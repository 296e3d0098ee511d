package httpmw

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// SlowStartConfig configures SlowStart. The zero value decides every
// request, and identifies a client by its Herdcap-Client ID, else its
// address.
type SlowStartConfig struct {
	// ClientIP keys clients that send no Herdcap-Client by their address,
	// as AdmitConfig.ClientIP; zero when Key is set.
	ClientIP ClientIP
	// Key, if set, returns a request's client key in place of
	// Herdcap-Client and the address. Its errors wrapping ErrNoKey make
	// the request key-less (see SlowStart); others are answered 500. It
	// is called concurrently.
	Key func(*http.Request) (string, error)
	// Skip, if set, exempts the requests for which it returns true (health
	// checks): they pass untouched. It is called concurrently.
	Skip func(*http.Request) bool
	// Logger receives budget failures and server bugs (Error, throttled),
	// and sheds (Debug). If Logger is nil, nothing is logged.
	Logger *slog.Logger
}

// SlowStart returns middleware that lets a cold node take a growing share
// of its traffic through g (see package slowstart), or an error wrapping
// ErrInvalidConfig that names the bad field.
//
// Each request is keyed by its Herdcap-Client ID, else the client's
// address (or SlowStartConfig.Key), so that a client is admitted or shed
// as a whole rather than request by request; a request with no usable key
// (a malformed Herdcap-Client, no address) is decided without one. Then:
//
//   - admitted: the next handler runs;
//   - shed by the share or the fleet budget: 503 Service Unavailable with
//     Retry-After (the wait in whole seconds, rounded up, at least 1) and
//     Herdcap-Retry-After-Ms (the exact wait: when the client's place
//     will be admitted at the ramp's pace, spread);
//   - the fleet budget failed: 503 with Retry-After alone, which clients
//     jitter; the error is logged, never sent. A request whose context
//     ended meanwhile gets a 503 too, unlogged;
//   - a Key function that fails otherwise, or panics: 500.
//
// The middleware is safe for concurrent use.
func SlowStart(g *slowstart.Gate, cfg SlowStartConfig) (func(http.Handler) http.Handler, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: SlowStart's gate is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("SlowStartConfig", cfg.Key, cfg.ClientIP)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	core, err := serverside.NewSlowStart(serverside.SlowStartConfig[*http.Request]{
		Common: sessionCommon("httpmw: SlowStart", cfg.Skip, cfg.Logger), Gate: g, Key: key,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o := core.Decide(r.Context(), r)
			switch o.Verdict {
			case serverside.Pass:
				next.ServeHTTP(w, r)
			case serverside.Internal:
				writeText(w, http.StatusInternalServerError)
			default: // Refuse, Unavailable, Gone
				setRetryAfter(w.Header(), o.RetryAfter, o.Exact)
				writeText(w, http.StatusServiceUnavailable)
			}
		})
	}, nil
}
