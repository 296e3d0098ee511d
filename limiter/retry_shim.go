package limiter

import "errors"

// ErrInvalidOption is the configuration error of NewBackoff and
// NewRetryBudget, which keep their options until they move to a package of
// their own.
//
// Deprecated: temporary, for backoff.go and retrybudget.go only; it goes
// with them. Budgets report ErrInvalidConfig.
var ErrInvalidOption = errors.New("limiter: invalid option")
