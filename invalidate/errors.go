package invalidate

import "errors"

var (
	// ErrInvalidConfig: a Config, PushConfig or fleet.Redis given to a
	// constructor has a field out of range, or a required argument is nil;
	// the wrapped message names the field (Config.CacheTTL, Redis.Name, ...).
	ErrInvalidConfig = errors.New("invalidate: invalid config")
	// ErrInvalidRollout: a Rollout failed validation; the wrapped message
	// names the field.
	ErrInvalidRollout = errors.New("invalidate: invalid rollout")
	// ErrInvalidArgument: an argument of a call other than a Rollout is out
	// of range (an empty client ID given to AppendDue, a By field too
	// long); the wrapped message names it. A transport answers it as a bad
	// request.
	ErrInvalidArgument = errors.New("invalidate: invalid argument")
	// ErrUnknownRollout: no rollout with that ID is in the store (it was
	// never started, it finished longer ago than the retention, or the ID
	// is not 1 to 256 bytes).
	ErrUnknownRollout = errors.New("invalidate: unknown rollout")
	// ErrConflict: a rollout with the same ID but different content was
	// started before. Start is idempotent on the ID only for identical
	// content.
	ErrConflict = errors.New("invalidate: rollout ID already used with different content")
	// ErrEpochBackwards: an explicit Rollout.Epoch is not above every epoch
	// the namespace has already assigned.
	ErrEpochBackwards = errors.New("invalidate: epoch going backwards")
	// ErrEpochTooFar: an explicit Rollout.Epoch lies further ahead than
	// Config.MaxEpochJump allows; the message says the highest epoch
	// allowed now.
	ErrEpochTooFar = errors.New("invalidate: epoch too far ahead")
	// ErrStartRefused: the guard's start budget (per node and per By)
	// refused a start. The error is a *StartRefusedError, which says whose
	// budget is spent and when to retry.
	ErrStartRefused = errors.New("invalidate: start refused by the guard")
	// ErrFinished: the rollout is finished (done or aborted) and can no
	// longer be paused, resumed or aborted.
	ErrFinished = errors.New("invalidate: rollout finished")
	// ErrTooManyRollouts: the namespace already holds the most rollouts it
	// may (Config.MaxRollouts); finished ones leave after the retention.
	ErrTooManyRollouts = errors.New("invalidate: too many rollouts")
	// ErrUnavailable: the store could not be reached (or its breaker is
	// open) and there was no earlier state to answer from.
	ErrUnavailable = errors.New("invalidate: store unavailable")
	// ErrCorrupt: a stored rollout could not be decoded (the store holds
	// something herdcap did not write, or it was damaged).
	ErrCorrupt = errors.New("invalidate: corrupt rollout record")
)
