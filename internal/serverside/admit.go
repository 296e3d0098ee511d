package serverside

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
)

// AdmitConfig configures NewAdmitter.
type AdmitConfig[R any] struct {
	Common[R]
	// Gate decides; required.
	Gate *admission.Gate
	// Key returns a request's client ID; required (the transport's
	// default: its client field, else the client's address).
	Key func(R) (string, error)
	// Start, if set, says which requests start a session; the others
	// pass without asking the gate. nil: every request.
	Start func(R) bool
	// UnavailableRetryAfter is the wait told when the gate fails without
	// one; 0: DefaultUnavailableRetryAfter.
	UnavailableRetryAfter time.Duration
	// Path names the transport's config struct in errors about its fields
	// ("AdmitConfig").
	Path string
}

// Admitter decides whether a request may start a session, through an
// admission.Gate. Both transports answer it the same way:
//
//   - a request that Skip exempts, or that Start says starts no session,
//     passes without a ticket;
//   - the client ID is the Key function's; a failure is Gone (it ended
//     with the request's context), BadRequest (the client's fault: a
//     malformed client field, no address) or Internal (Keys);
//   - the ticket is the one value of the transport's ticket field when it
//     is shaped like a ticket, else none: a missing, malformed, repeated,
//     forged, expired or foreign ticket only makes the request a new
//     session, never an error;
//   - admitted: Pass, with the fresh ticket (if the gate issues them);
//   - refused: Refuse, told the slot or deferral (RetryAfter, at least
//     1 ms, Exact: a turn the gate spread);
//   - the gate rejected the client ID (limiter.ErrInvalidRequest): Internal;
//   - the request's context ended: Gone, whichever error the gate
//     returned for it;
//   - the gate failed otherwise: Unavailable, told the decision's wait,
//     Exact, since a gate spreads the waits of its failures too (under
//     FailClosed, over one to two breaker periods: admission.SharedConfig);
//     else UnavailableRetryAfter, not Exact: a wait every caller is told
//     alike, which clients must jitter.
//
// An Admitter is safe for concurrent use.
type Admitter[R any] struct {
	gate    *admission.Gate
	key     func(R) (string, error)
	start   func(R) bool
	skip    func(R) bool
	keys    Keys
	unavail time.Duration
	log     *logger[R]
}

// AdmitOutcome is an Admitter's answer.
type AdmitOutcome struct {
	Verdict Verdict // Pass, Refuse, Unavailable, BadRequest, Internal or Gone
	// RetryAfter is the wait for Refuse and Unavailable.
	RetryAfter time.Duration
	// Exact reports that RetryAfter is the gate's own, spread (a slot, a
	// deferral, the failure policy's wait), not UnavailableRetryAfter:
	// the transport sends it to the millisecond.
	Exact bool
	// Ticket is the ticket to hand an admitted client ("" for none).
	Ticket string
	// Err is the cause of BadRequest, Internal, Unavailable and Gone.
	Err error
	// KeyErr reports that Err came from the Key function.
	KeyErr bool
	// Decision is the gate's, when it was asked.
	Decision admission.Decision
}

// NewAdmitter returns the Admitter of cfg; an error names the bad field
// (a nil Gate or Key is the transport's bug, and says so).
func NewAdmitter[R any](cfg AdmitConfig[R]) (*Admitter[R], error) {
	if cfg.Gate == nil || cfg.Key == nil {
		return nil, errors.New("serverside: AdmitConfig.Gate and Key are required")
	}
	unavail, err := UnavailableWait(cfg.Path, cfg.UnavailableRetryAfter)
	if err != nil {
		return nil, err
	}
	return &Admitter[R]{gate: cfg.Gate, key: cfg.Key, start: cfg.Start, skip: cfg.Skip, keys: cfg.Keys,
		unavail: unavail, log: newLogger(cfg.Common)}, nil
}

// Decide decides r, which presented tickets, the values of the
// transport's ticket field.
func (a *Admitter[R]) Decide(ctx context.Context, r R, tickets []string) AdmitOutcome {
	if skip, err := a.log.skipped(ctx, r, a.skip); err != nil {
		return AdmitOutcome{Verdict: Internal, Err: err}
	} else if skip {
		return AdmitOutcome{}
	}
	if a.start != nil {
		start, err := callPredicate("session start", a.start, r)
		if err != nil {
			a.log.at(ctx, r, &a.log.misconfig, slog.LevelError, "session start function failed; answering "+a.log.names.Internal,
				panicAttrs(err)...)
			return AdmitOutcome{Verdict: Internal, Err: err}
		}
		if !start {
			return AdmitOutcome{}
		}
	}
	id, err := callKey(a.key, r)
	if err != nil || id == "" {
		v, err := a.log.keyFailure(ctx, r, a.keys, err, "client ID", false)
		o := AdmitOutcome{Verdict: v, Err: err, KeyErr: true}
		if v == Gone {
			o.RetryAfter = a.unavail
		}
		return o
	}
	d, err := a.gate.Admit(ctx, id, wire.Ticket(tickets))
	switch {
	case errors.Is(err, limiter.ErrInvalidRequest):
		a.log.at(ctx, r, &a.log.misconfig, slog.LevelError, "the admission rejected the client ID; answering "+a.log.names.Internal,
			slog.Int("id_bytes", len(id)), slog.Any("error", err))
		return AdmitOutcome{Verdict: Internal, Err: err, Decision: d}
	case err != nil && gone(ctx, err):
		return AdmitOutcome{Verdict: Gone, RetryAfter: a.unavail, Err: err, Decision: d}
	case err != nil:
		o := AdmitOutcome{Verdict: Unavailable, RetryAfter: d.RetryAfter, Exact: d.RetryAfter > 0, Err: err, Decision: d}
		if !o.Exact {
			o.RetryAfter = a.unavail
		}
		a.log.at(ctx, r, &a.log.failed, slog.LevelError, "admission failed; answering "+a.log.names.Unavailable,
			slog.String("via", d.Via.String()), slog.Bool("unavailable", errors.Is(err, limiter.ErrUnavailable)),
			slog.Duration("retry_after", o.RetryAfter), slog.Any("error", err))
		return o
	case !d.Admitted:
		if a.log.enabled(ctx, slog.LevelDebug) { // the refusal path builds no record when off
			a.log.at(ctx, r, &a.log.denied, slog.LevelDebug, "new session refused",
				slog.Bool("booked", d.Booked), slog.Duration("retry_after", d.RetryAfter))
		}
		return AdmitOutcome{Verdict: Refuse, RetryAfter: max(d.RetryAfter, time.Millisecond), Exact: true, Decision: d}
	}
	return AdmitOutcome{Ticket: d.Ticket, Decision: d}
}
