package retry

import (
	"fmt"
	"math"
	"sync/atomic"
)

// budgetScale is the fixed-point scale of Budget tokens: micro-tokens.
const budgetScale = 1_000_000

// maxBudgetTokens bounds maxTokens so that micro-tokens fit in an int64
// with room to spare.
const maxBudgetTokens = 1 << 32

// Budget keeps a client's retries a bounded fraction of its traffic, the
// token scheme of gRPC's retryThrottling: the budget starts full with
// maxTokens tokens, every failed attempt (first try or retry) takes one
// token (down to 0), every success gives back tokenRatio tokens (up to
// maxTokens), and a retry is allowed only while more than half the tokens
// are left.
//
// The bound: over any run, the retries allowed are at most
//
//	maxTokens/2 + tokenRatio × successes
//
// since each one needs the count above half, and only successes raise it.
// Under total failure, retries stop after maxTokens/2 failures and the
// client sends only its own first tries; as successes return, so do
// retries, one per 1/tokenRatio successes at most.
//
// Tokens are counted in fixed point (millionths), so tokenRatio is rounded
// to six decimals. A Budget is lock-free (atomics) and safe for concurrent
// use; share one per destination, not per request. Make one with
// NewBudget; the zero Budget is empty and never allows a retry.
type Budget struct {
	max    int64 // micro-tokens
	ratio  int64 // micro-tokens per success
	tokens atomic.Int64
}

// NewBudget returns a full budget of maxTokens tokens, tokenRatio of which
// come back per success. maxTokens must be in [1, 2^32] and tokenRatio in
// [0.000001, maxTokens] (gRPC's service configs use e.g. maxTokens 10,
// tokenRatio 0.1); the error wraps ErrInvalidConfig and names the
// argument.
func NewBudget(maxTokens int, tokenRatio float64) (*Budget, error) {
	if maxTokens < 1 || int64(maxTokens) > maxBudgetTokens {
		return nil, fmt.Errorf("%w: NewBudget maxTokens must be in [1, %d], got %d", ErrInvalidConfig, int64(maxBudgetTokens), maxTokens)
	}
	if math.IsNaN(tokenRatio) || tokenRatio < 1.0/budgetScale || tokenRatio > float64(maxTokens) {
		return nil, fmt.Errorf("%w: NewBudget tokenRatio must be in [0.000001, maxTokens], got %v", ErrInvalidConfig, tokenRatio)
	}
	b := &Budget{max: int64(maxTokens) * budgetScale, ratio: int64(math.Round(tokenRatio * budgetScale))}
	b.tokens.Store(b.max)
	return b, nil
}

// RecordSuccess records a successful attempt: tokenRatio tokens come back.
func (b *Budget) RecordSuccess() {
	for {
		old := b.tokens.Load()
		n := min(b.max, old+b.ratio)
		if n == old || b.tokens.CompareAndSwap(old, n) {
			return
		}
	}
}

// RecordFailure records a failed attempt, taking one token, and reports
// whether a retry may be made now (whether more than half the tokens are
// left after it). Call it once per failed attempt, and retry only on true.
func (b *Budget) RecordFailure() (retry bool) {
	for {
		old := b.tokens.Load()
		n := max(0, old-budgetScale)
		if n == old || b.tokens.CompareAndSwap(old, n) {
			return 2*n > b.max
		}
	}
}

// Allow reports whether a retry may be made now, without recording
// anything.
func (b *Budget) Allow() bool { return 2*b.tokens.Load() > b.max }

// Tokens returns the tokens left.
func (b *Budget) Tokens() float64 { return float64(b.tokens.Load()) / budgetScale }
