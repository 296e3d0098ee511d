package retry

import (
	"fmt"
	"time"
)

// Policy bounds the retries of one call: how many attempts, how long to
// wait between them in all, how long each wait is (Backoff), and the
// client's retry budget. The herdcap transports (httpmw.TransportConfig,
// grpcmw.ClientConfig) take one, and so do the simulator's clients.
//
// The zero value is the default policy; every zero field takes its
// default. A Policy is a value; the Budget it points to is shared by every
// copy.
type Policy struct {
	// MaxAttempts is how many times one call is sent at most, the first
	// try included: 1 never retries. If MaxAttempts is 0, 4. Must be >= 0.
	MaxAttempts int
	// MaxWait bounds the total wait between the attempts of one call: a
	// retry whose wait would go past it is not made, and the failure is
	// returned, so that a caller is never held longer than it can see. If
	// MaxWait is 0, 30 s. Must be >= 0.
	MaxWait time.Duration
	// Backoff is how long each wait is.
	Backoff Backoff
	// Budget is the retry budget every failed attempt spends from. Share
	// one between the clients of a process to bound its retries as a
	// whole. If Budget is nil, each client makes its own: 10 tokens, 0.1
	// back per success (gRPC's retryThrottling values).
	Budget *Budget
}

// Validate reports the first field of p out of range, in an error wrapping
// ErrInvalidConfig that names it (e.g. "Policy.MaxAttempts must be >= 0,
// got -1", "Policy.Backoff.Base must be >= 0, got -1s").
func (p Policy) Validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%w: Policy.MaxAttempts must be >= 0, got %d", ErrInvalidConfig, p.MaxAttempts)
	case p.MaxWait < 0:
		return fmt.Errorf("%w: Policy.MaxWait must be >= 0, got %v", ErrInvalidConfig, p.MaxWait)
	}
	return p.Backoff.check("Policy.Backoff")
}
