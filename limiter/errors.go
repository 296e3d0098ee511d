package limiter

import "errors"

var (
	// ErrInvalidLimit: a Limit failed validation (a constructor's, SetLimit's
	// or a Request's); the wrapped message names the field.
	ErrInvalidLimit = errors.New("limiter: invalid limit")
	// ErrInvalidRequest: a Request that no budget could grant: an empty
	// Key, a negative N or Wait, N beyond the burst without UpTo, or UpTo
	// with Wait. The wrapped message names the field.
	ErrInvalidRequest = errors.New("limiter: invalid request")
	// ErrInvalidConfig: a constructor's configuration is out of range; the
	// wrapped message names the field with its struct path, e.g.
	// "limiter: invalid config: Config.MaxKeys must be >= 0, got -1".
	// limiter's subpackages (fleet, admission) wrap it too.
	ErrInvalidConfig = errors.New("limiter: invalid config")
	// ErrUnavailable: the store could not be reached (or its breaker is
	// open) and the failure policy is to fail closed. Transports map it to
	// "service unavailable"; the Decision's RetryAfter says when to retry.
	ErrUnavailable = errors.New("limiter: store unavailable")
	// ErrClosed: the budget was closed.
	ErrClosed = errors.New("limiter: closed")
)
