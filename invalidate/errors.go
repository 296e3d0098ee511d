package invalidate

import "errors"

var (
	// ErrInvalidRollout: a Rollout failed validation; the wrapped message
	// names the field.
	ErrInvalidRollout = errors.New("invalidate: invalid rollout")
	// ErrInvalidOption: an option was out of range or does not apply to the
	// constructor it was given to; the wrapped message names it.
	ErrInvalidOption = errors.New("invalidate: invalid option")
	// ErrInvalidClient: the client ID given to Due is empty.
	ErrInvalidClient = errors.New("invalidate: invalid client ID")
	// ErrUnknownRollout: no rollout with that ID is in the store (it was
	// never started, or it finished longer ago than the retention).
	ErrUnknownRollout = errors.New("invalidate: unknown rollout")
	// ErrConflict: a rollout with the same ID but different content was
	// started before. Start is idempotent on the ID only for identical
	// content.
	ErrConflict = errors.New("invalidate: rollout ID already used with different content")
	// ErrEpochBackwards: an explicit Rollout.Epoch is not above every epoch
	// the namespace has already assigned.
	ErrEpochBackwards = errors.New("invalidate: epoch going backwards")
	// ErrEpochTooFar: an explicit Rollout.Epoch lies further ahead than
	// WithMaxEpochJump allows; the message says the highest epoch allowed
	// now.
	ErrEpochTooFar = errors.New("invalidate: epoch too far ahead")
	// ErrInvalidControl: the By given to PauseBy, ResumeBy or AbortBy is out
	// of range; the wrapped message names the field.
	ErrInvalidControl = errors.New("invalidate: invalid control request")
	// ErrStartRefused: the guard's start budget (per node and per source)
	// refused a start.
	// The error is a *StartRefusedError, which says when to retry.
	ErrStartRefused = errors.New("invalidate: start refused by the guard")
	// ErrFinished: the rollout is finished (done or aborted) and can no
	// longer be paused, resumed or aborted.
	ErrFinished = errors.New("invalidate: rollout finished")
	// ErrTooManyRollouts: the namespace already holds the most rollouts it
	// may (WithMaxRollouts); finished ones leave after the retention.
	ErrTooManyRollouts = errors.New("invalidate: too many rollouts")
	// ErrUnavailable: the store could not be reached (or its breaker is
	// open) and there was no earlier state to answer from.
	ErrUnavailable = errors.New("invalidate: store unavailable")
	// ErrCorrupt: a stored rollout could not be decoded (the store holds
	// something herdcap did not write, or it was damaged).
	ErrCorrupt = errors.New("invalidate: corrupt rollout record")
)
