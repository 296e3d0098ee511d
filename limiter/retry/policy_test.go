package retry

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPolicyValidate(t *testing.T) {
	for _, c := range []struct {
		p   Policy
		msg string
	}{
		{Policy{MaxAttempts: -1}, "retry: invalid config: Policy.MaxAttempts must be >= 0, got -1"},
		{Policy{MaxWait: -time.Second}, "retry: invalid config: Policy.MaxWait must be >= 0, got -1s"},
		{Policy{Backoff: Backoff{Base: -1}}, "retry: invalid config: Policy.Backoff.Base must be >= 0, got -1ns"},
		{Policy{Backoff: Backoff{Base: time.Second, Cap: time.Millisecond}}, "Policy.Backoff.Cap (1ms) must be >= Policy.Backoff.Base (1s)"},
		{Policy{Backoff: Backoff{SlotJitter: -2}}, "Policy.Backoff.SlotJitter must be >= 0 or NoJitter, got -2ns"},
	} {
		err := c.p.Validate()
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, c.msg)
	}
	b, _ := NewBudget(1, 1)
	for _, p := range []Policy{{}, {MaxAttempts: 1, MaxWait: time.Hour, Budget: b}, {Backoff: Backoff{SlotJitter: NoJitter}}} {
		assert.NoError(t, p.Validate())
	}
}
