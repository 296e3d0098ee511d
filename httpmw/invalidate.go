package httpmw

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/invalidate"
)

// InvalidateConfig configures Invalidate. The zero value identifies a
// client by its Herdcap-Client ID, else its address, and sends at most 16
// notices a response.
type InvalidateConfig struct {
	// ClientIP finds and keys the client's address, for clients that send
	// no Herdcap-Client. It must be zero when Key is set.
	ClientIP ClientIP
	// Key, if set, returns a request's client ID, in place of
	// Herdcap-Client and the address, as AdmitConfig.Key.
	Key func(*http.Request) (string, error)
	// MaxNotices is the most notices one response carries; the client
	// gets the rest on its next request. Notices are also added only while
	// the Herdcap-Invalidate value stays within 4 KiB, but always at least
	// one. If MaxNotices is 0, 16; it must not be negative.
	MaxNotices int
	// Skip, if set, exempts the requests for which it returns true: they
	// are told nothing. It is called concurrently.
	Skip func(*http.Request) bool
	// Logger receives coordinator failures and server bugs (Error,
	// throttled), and malformed herdcap fields (Debug). If Logger is nil,
	// nothing is logged.
	Logger *slog.Logger
}

// Invalidate returns middleware that tells clients, on their ordinary
// responses, which cached data to drop, as c releases it cohort by cohort;
// or an error wrapping ErrInvalidConfig that names the bad field.
//
// A request takes part when it carries Herdcap-Epoch, the highest epoch
// the client has applied; requests without it pass untouched (they come
// from clients that do not speak herdcap, such as browsers). For one that
// does, the middleware finds the client ID (Herdcap-Client, else the
// client's address; or InvalidateConfig.Key), asks c which notices are
// due (from its cache: no store round trip on most requests, no
// allocation when none is due), and when some are, sets
// Herdcap-Invalidate and Herdcap-Epoch on the response before calling the
// next handler, whatever status it then writes: a notice is valid on any
// response, and delivering it twice is harmless.
//
// Bad input is answered, never guessed at: a malformed Herdcap-Epoch or
// Herdcap-Client gets 400 Bad Request and the handler does not run (read
// as 0, a broken epoch would tell the client to drop everything on every
// request: the storm herdcap exists to prevent). Key's errors are
// answered as for RateLimit. A coordinator error never fails the
// request: it is logged and the request is served without notices, which
// come on a later one. Delivery only ever lags.
//
// Install Invalidate inside Admit and RateLimit, so that refused requests
// are refused before any notice is computed. The middleware is safe for
// concurrent use.
func Invalidate(c *invalidate.Coordinator, cfg InvalidateConfig) (func(http.Handler) http.Handler, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: Invalidate's coordinator is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("InvalidateConfig", cfg.Key, cfg.ClientIP)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	core, err := serverside.NewNotifier(serverside.NoticeConfig[*http.Request]{
		Common:      sessionCommon("httpmw: Invalidate", cfg.Skip, cfg.Logger),
		Coordinator: c, Key: key, MaxNotices: cfg.MaxNotices, EpochField: headerEpoch,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: InvalidateConfig.%w", ErrInvalidConfig, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			epoch, present := r.Header[headerEpoch]
			o := core.Decide(r.Context(), r, epoch, present)
			switch o.Verdict {
			case serverside.Pass:
				if o.Value != "" {
					vals := []string{o.Value, o.Epoch}
					h := w.Header()
					h[headerInvalidate] = vals[0:1:1]
					h[headerEpoch] = vals[1:2:2]
				}
				next.ServeHTTP(w, r)
			case serverside.BadRequest:
				writeText(w, http.StatusBadRequest)
			case serverside.Gone: // the key function ended with the request's context
				writeText(w, http.StatusServiceUnavailable)
			default:
				writeText(w, http.StatusInternalServerError)
			}
		})
	}, nil
}
