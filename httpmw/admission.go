package httpmw

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/limiter/admission"
)

// AdmitConfig configures Admit. The zero value gates every request, and
// identifies a client by its Herdcap-Client ID, else its address.
type AdmitConfig struct {
	// ClientIP finds and keys the client's address, for clients that send
	// no Herdcap-Client. It must be zero when Key is set.
	ClientIP ClientIP
	// Key, if set, returns a request's client ID (at most
	// admission.MaxClientIDLen, 256 bytes, as Herdcap-Client), in
	// place of Herdcap-Client and the address: to key by an authenticated
	// identity, since Herdcap-Client is the client's own claim. Its errors
	// are answered as for a Policy's Key. It is called concurrently.
	Key func(*http.Request) (string, error)
	// SessionStart, if set, says which requests start a session (a login,
	// a connect endpoint): only those pass the gate. If SessionStart is
	// nil, every request does, and the ticket tells a new session from a
	// rejoining one. It is called concurrently.
	SessionStart func(*http.Request) bool
	// Skip, if set, exempts the requests for which it returns true: they
	// pass untouched. It is called concurrently.
	Skip func(*http.Request) bool
	// UnavailableRetryAfter is the wait told with a 503 when the gate
	// fails without one (Retry-After, rounded up to whole seconds). If
	// UnavailableRetryAfter is 0, 1 s; it must not be negative.
	UnavailableRetryAfter time.Duration
	// Logger receives gate failures and server bugs (Error, throttled),
	// and refusals and malformed herdcap fields (Debug). If Logger is nil,
	// nothing is logged.
	Logger *slog.Logger
}

// Admit returns middleware that admits new sessions through g, so that a
// herd of clients reconnecting at once comes back as a flat stream; or an
// error wrapping ErrInvalidConfig that names the bad field.
//
// For each request that starts a session (AdmitConfig.SessionStart), the
// middleware finds the client ID (Herdcap-Client, else the client's
// address; or AdmitConfig.Key) and the ticket the request presents
// (Herdcap-Ticket; a missing, malformed, expired or foreign ticket only
// makes it a new session), and asks g. Then:
//
//   - admitted: the next handler runs; when g issues tickets
//     (admission.Config.TicketKeys), Herdcap-Ticket carries the client's
//     fresh ticket on the response;
//   - refused: 503 Service Unavailable with Retry-After (the wait in
//     whole seconds, rounded up, at least 1) and Herdcap-Retry-After-Ms
//     (the exact wait). A booked client that comes back after the wait
//     (within the gate's slot grace) is let in: the slot is a promise;
//   - g failed (limiter.ErrUnavailable under FailClosed, limiter.ErrClosed,
//     ...): 503 with the same two fields when the decision says when to
//     come back (a gate spreads those waits too), else Retry-After alone,
//     AdmitConfig.UnavailableRetryAfter in whole seconds, which clients
//     jitter; the error is logged, never sent. A request whose context
//     ended meanwhile gets a 503 too, unlogged;
//   - g rejected the client ID (a Key returning more than
//     admission.MaxClientIDLen bytes): 500 without Retry-After, since no
//     retry helps;
//   - a malformed Herdcap-Client gets 400 Bad Request; Key's errors are
//     answered as for RateLimit.
//
// Refusals are 503 rather than 429: the client is over no quota of its
// own; the server turns new sessions away to protect itself. Bodies are a
// short plain-text message. The middleware is safe for concurrent use.
func Admit(g *admission.Gate, cfg AdmitConfig) (func(http.Handler) http.Handler, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: Admit's gate is nil", ErrInvalidConfig)
	}
	key, err := sessionKey("AdmitConfig", cfg.Key, cfg.ClientIP)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	core, err := serverside.NewAdmitter(serverside.AdmitConfig[*http.Request]{
		Common: sessionCommon("httpmw: Admit", cfg.Skip, cfg.Logger),
		Gate:   g, Key: key, Start: cfg.SessionStart,
		UnavailableRetryAfter: cfg.UnavailableRetryAfter, Path: "AdmitConfig",
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o := core.Decide(r.Context(), r, r.Header[headerTicket])
			switch o.Verdict {
			case serverside.Pass:
				if o.Ticket != "" {
					w.Header()[headerTicket] = []string{o.Ticket}
				}
				next.ServeHTTP(w, r)
			case serverside.BadRequest:
				writeText(w, http.StatusBadRequest)
			case serverside.Internal:
				writeText(w, http.StatusInternalServerError)
			default: // Refuse, Unavailable, Gone
				setRetryAfter(w.Header(), o.RetryAfter, o.Exact)
				writeText(w, http.StatusServiceUnavailable)
			}
		})
	}, nil
}
