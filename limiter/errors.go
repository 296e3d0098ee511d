package limiter

import "errors"

var (
	// ErrInvalidLimit: a Limit failed validation; the wrapped message names
	// the field.
	ErrInvalidLimit = errors.New("limiter: invalid limit")
	// ErrInvalidOption: an option was out of range or does not apply to the
	// backend it was given to; the wrapped message names it.
	ErrInvalidOption = errors.New("limiter: invalid option")
	// ErrInvalidKey: the key is empty.
	ErrInvalidKey = errors.New("limiter: invalid key")
	// ErrInvalidN: n is negative, or larger than the limit's burst (such a
	// request could never be granted).
	ErrInvalidN = errors.New("limiter: invalid token count")
	// ErrUnavailable: the store could not be reached (or its breaker is
	// open) and the failure policy is FailClosed. Transports map it to
	// "service unavailable"; the Decision's RetryAfter says when to retry.
	ErrUnavailable = errors.New("limiter: store unavailable")
	// ErrUnexpectedReply: Redis answered something the script cannot
	// produce (a foreign value under the key, a proxy in the way, ...).
	ErrUnexpectedReply = errors.New("limiter: unexpected reply from redis")
	// ErrClosed: the backend was closed.
	ErrClosed = errors.New("limiter: closed")
)
