package serverside

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/herdcap/herdcap/warmup/slowstart"
)

// SlowStartConfig configures NewSlowStart.
type SlowStartConfig[R any] struct {
	Common[R]
	// Gate decides; required.
	Gate *slowstart.Gate
	// Key returns a request's client key; required (the transport's
	// default: its client field, else the client's address).
	Key func(R) (string, error)
}

// SlowStart decides whether a cold node serves a request, through a
// slowstart.Gate. Both transports answer it the same way:
//
//   - a request that Skip exempts passes, and the gate is not asked;
//   - the key is the Key function's; when it fails through the client's
//     fault (no address, a malformed client field: Keys), the request is
//     decided without a key (the gate's key-less sequence) rather than
//     refused, since slow start only sheds a share; a failure that ended
//     with the request's context is Gone; any other is Internal;
//   - admitted: Pass;
//   - shed by the share or the fleet budget: Refuse, told the gate's
//     RetryAfter (Exact: spread by the gate or the budget);
//   - the budget failed: Unavailable, told the gate's RetryAfter, not
//     Exact (a wait many callers are told alike); Gone if the request's
//     context ended.
//
// A SlowStart is safe for concurrent use.
type SlowStart[R any] struct {
	gate *slowstart.Gate
	key  func(R) (string, error)
	skip func(R) bool
	keys Keys
	log  *logger[R]
}

// SlowStartOutcome is a SlowStart's answer.
type SlowStartOutcome struct {
	Verdict Verdict // Pass, Refuse, Unavailable, Internal or Gone
	// RetryAfter is the wait for Refuse, Unavailable and Gone.
	RetryAfter time.Duration
	// Exact reports that RetryAfter was spread for this request: the
	// transport sends it to the millisecond.
	Exact bool
	// Err is the cause of Internal, Unavailable and Gone.
	Err error
	// KeyErr reports that Err came from the Key function.
	KeyErr bool
	// Decision is the gate's, when it was asked.
	Decision slowstart.Decision
}

// NewSlowStart returns the SlowStart of cfg (a nil Gate or Key is the
// transport's bug, and says so).
func NewSlowStart[R any](cfg SlowStartConfig[R]) (*SlowStart[R], error) {
	if cfg.Gate == nil || cfg.Key == nil {
		return nil, errors.New("serverside: SlowStartConfig.Gate and Key are required")
	}
	return &SlowStart[R]{gate: cfg.Gate, key: cfg.Key, skip: cfg.Skip, keys: cfg.Keys, log: newLogger(cfg.Common)}, nil
}

// Decide decides r.
func (s *SlowStart[R]) Decide(ctx context.Context, r R) SlowStartOutcome {
	if skip, err := s.log.skipped(ctx, r, s.skip); err != nil {
		return SlowStartOutcome{Verdict: Internal, Err: err}
	} else if skip {
		return SlowStartOutcome{}
	}
	key, err := callKey(s.key, r)
	switch {
	case err == nil:
		// an empty key is decided without one
	case s.keys.gone(ctx, err):
		return SlowStartOutcome{Verdict: Gone, RetryAfter: DefaultUnavailableRetryAfter, Err: err, KeyErr: true}
	case s.keys.clientFault(err):
		s.log.at(ctx, r, &s.log.input, slog.LevelDebug, "no usable client key; deciding without one", slog.Any("error", err))
		key = ""
	default:
		v, err := s.log.keyFailure(ctx, r, s.keys, err, "client key", false)
		return SlowStartOutcome{Verdict: v, Err: err, KeyErr: true}
	}
	d, err := s.gate.Admit(ctx, key)
	switch {
	case d.Admitted:
		return SlowStartOutcome{Decision: d}
	case err != nil && gone(ctx, err):
		return SlowStartOutcome{Verdict: Gone, RetryAfter: d.RetryAfter, Err: err, Decision: d}
	case err != nil:
		s.log.at(ctx, r, &s.log.failed, slog.LevelError, "slow-start budget failed; answering "+s.log.names.Unavailable,
			slog.Duration("retry_after", d.RetryAfter), slog.Any("error", err))
		return SlowStartOutcome{Verdict: Unavailable, RetryAfter: d.RetryAfter, Err: err, Decision: d}
	}
	if s.log.enabled(ctx, slog.LevelDebug) {
		s.log.at(ctx, r, &s.log.denied, slog.LevelDebug, "shed by slow start",
			slog.String("reason", d.Reason.String()), slog.Float64("share", d.Share), slog.Duration("retry_after", d.RetryAfter))
	}
	return SlowStartOutcome{Verdict: Refuse, RetryAfter: d.RetryAfter, Exact: true, Decision: d}
}
