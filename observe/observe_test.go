package observe

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestJoinCallsEachInOrder(t *testing.T) {
	var got []string
	a := &Hooks{Decision: func(Decision) { got = append(got, "a") }, Lease: func(Lease) { got = append(got, "a-lease") }}
	b := &Hooks{Decision: func(Decision) { got = append(got, "b") }}
	h := Join(nil, a, b)
	h.Decision(Decision{})
	h.Lease(Lease{})
	assert.Equal(t, []string{"a", "b", "a-lease"}, got)
	assert.Nil(t, h.Warmup)
	assert.Same(t, a, Join(a, nil), "one observer: itself")
	assert.Nil(t, Join(nil).Decision)
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "shadow", Shadow.String())
	assert.Equal(t, "fallback", SourceFallback.String())
	assert.Equal(t, "half-open", BreakerHalfOpen.String())
	assert.Equal(t, "cohort-released", RolloutCohortReleased.String())
	assert.Equal(t, "key-failed", WarmupKeyFailed.String())
	for _, s := range []interface{ String() string }{Outcome(0), Source(0), BreakerState(0), RolloutKind(0), WarmupKind(0)} {
		assert.Equal(t, "unknown", s.String())
	}
}
