package clientcore

import (
	"errors"
	"strings"
	"time"

	"github.com/herdcap/herdcap/limiter/retry"
)

// The defaults of a retry.Policy's fields, as its doc states them.
const (
	defaultMaxAttempts = 4
	defaultMaxWait     = 30 * time.Second
	defaultTokens      = 10
	defaultTokenRatio  = 0.1
)

// Kind says what a failed attempt told the client about when to come back.
type Kind uint8

const (
	// None: a refusal that names no wait (or a wait of zero): full
	// jitter, retry.Backoff.Delay.
	None Kind = iota
	// Coarse: a wait that many clients may be told alike, such as HTTP's
	// Retry-After (seconds or a date) or a gRPC RetryInfo: the wait plus
	// retry.Backoff.DelayHint's jitter (by default up to 10%, at most 1 s).
	Coarse
	// Slot: an exact wait the server already spread (an admission slot:
	// Herdcap-Retry-After-Ms, the gRPC pushback trailer): the wait plus
	// retry.Backoff.DelaySlot's jitter (by default under 5 ms).
	Slot
	// Fault: no answer at all, the connection failed (refused, reset,
	// closed): full jitter, as None.
	Fault
	// Forbidden: the server said not to retry (a gRPC pushback that is
	// not a non-negative integer).
	Forbidden
)

// Hint is what a failed attempt said about the next one: its Kind, and
// for Coarse and Slot the server's Wait.
type Hint struct {
	Kind Kind
	Wait time.Duration
}

// Retrier is the retry decision of a retry.Policy with its defaults
// applied: wait or give up after a failed attempt. It holds no per-call
// state (the caller counts attempts and the time waited) and no budget
// (Decide is given one), so that one Retrier serves many clients, as in
// the simulator. It is a value, safe for concurrent use when its
// Backoff's Rand is.
type Retrier struct {
	maxAttempts int
	maxWait     time.Duration
	backoff     retry.Backoff
}

// NewRetrier returns the Retrier of p; p.Budget is not used (see Decide).
// An invalid p is an error wrapping retry.ErrInvalidConfig that names the
// field as "Retry.<field>" (the field of the transports' configs that
// holds the Policy).
func NewRetrier(p retry.Policy) (Retrier, error) {
	if err := p.Validate(); err != nil {
		return Retrier{}, retryFieldError(err)
	}
	r := Retrier{maxAttempts: p.MaxAttempts, maxWait: p.MaxWait, backoff: p.Backoff}
	if r.maxAttempts == 0 {
		r.maxAttempts = defaultMaxAttempts
	}
	if r.maxWait == 0 {
		r.maxWait = defaultMaxWait
	}
	return r, nil
}

// Delay returns the wait before retry number attempt (0 for the first
// retry) after a failure with hint h, as Kind describes.
func (r Retrier) Delay(attempt int, h Hint) time.Duration {
	switch h.Kind {
	case Slot:
		return r.backoff.DelaySlot(attempt, h.Wait)
	case Coarse:
		return r.backoff.DelayHint(attempt, h.Wait)
	}
	return r.backoff.Delay(attempt)
}

// Decide is called after the failed attempt number attempt (the first try
// is 0) of a call that has waited waited so far between its attempts. It
// records the failure in b and returns the wait before the next attempt,
// or false to give up: when b allows no retry, the call may not be sent
// again (resend is false), the Policy's MaxAttempts attempts were made,
// the server forbade a retry, or the wait would take the call past
// MaxWait.
func (r Retrier) Decide(b *retry.Budget, attempt int, waited time.Duration, h Hint, resend bool) (time.Duration, bool) {
	if !b.RecordFailure() || !resend || attempt+1 >= r.maxAttempts || h.Kind == Forbidden {
		return 0, false
	}
	d := r.Delay(attempt, h)
	if d > r.maxWait-waited {
		return 0, false
	}
	return d, true
}

// fieldError is a configuration error whose message names the field as
// the transports' configs do, and which still wraps the original.
type fieldError struct {
	msg string
	err error
}

func (e *fieldError) Error() string { return e.msg }
func (e *fieldError) Unwrap() error { return e.err }

// retryFieldError renames the retry.Policy fields of err ("retry: invalid
// config: Policy.MaxWait ...") as the Retry field of a transport's config
// ("Retry.MaxWait ...").
func retryFieldError(err error) error {
	prefix := retry.ErrInvalidConfig.Error() + ": "
	msg := err.Error()
	if !errors.Is(err, retry.ErrInvalidConfig) || !strings.HasPrefix(msg, prefix+"Policy.") {
		return &fieldError{msg: "Retry: " + msg, err: err}
	}
	return &fieldError{msg: strings.ReplaceAll(strings.TrimPrefix(msg, prefix), "Policy.", "Retry."), err: err}
}
