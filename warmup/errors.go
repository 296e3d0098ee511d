package warmup

import "errors"

var (
	// ErrInvalidWarm: a Warm failed validation (an empty ID, no Fetch or
	// Store, no Source) or its source yielded an item that cannot be
	// warmed (an empty key, a weight that is NaN, negative or larger than
	// the one before it); the wrapped message names the field or the
	// item's position.
	ErrInvalidWarm = errors.New("warmup: invalid warm")
	// ErrUnknownWarm: no warm with that ID is in the store.
	ErrUnknownWarm = errors.New("warmup: unknown warm")
	// ErrConflict: a warm with the same ID but a different key count or
	// chunk size is in the store.
	ErrConflict = errors.New("warmup: warm ID already used with different content")
	// ErrFinished: the warm is done or aborted and can no longer be
	// paused, resumed or aborted.
	ErrFinished = errors.New("warmup: warm finished")
	// ErrUnavailable: the store could not be reached (or its breaker is
	// open).
	ErrUnavailable = errors.New("warmup: store unavailable")
	// ErrInvalidArgument: an argument other than a Warm is out of range
	// (a By field too long); the message names it.
	ErrInvalidArgument = errors.New("warmup: invalid argument")
)
