package serverside

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

// ctxBudget fails with the request's context error, as a Redis call cut
// short by it does.
type ctxBudget struct{}

func (ctxBudget) Take(ctx context.Context, _ limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, ctx.Err()
}

func TestSlowStartDecide(t *testing.T) {
	clk := fakeclock.New(t0)
	newCore := func(cfg slowstart.Config) *SlowStart[req] {
		t.Helper()
		cfg.Clock = clk
		g, err := slowstart.New(cfg)
		require.NoError(t, err)
		s, err := NewSlowStart(SlowStartConfig[req]{
			Common: Common[req]{Keys: Keys{NoKey: errNoKey}, Names: testNames,
				Skip: func(r req) bool { return r["skip"] != "" }},
			Gate: g,
			Key: func(r req) (string, error) {
				switch r["key"] {
				case "none":
					return "", fmt.Errorf("%w: header", errNoKey)
				case "bug":
					return "", errors.New("bug")
				case "panic":
					panic("boom")
				}
				return r["key"], nil
			},
		})
		require.NoError(t, err)
		return s
	}
	ctx := context.Background()
	s := newCore(slowstart.Config{MinShare: 0.5})
	assert.Equal(t, Pass, s.Decide(ctx, req{"skip": "y", "key": "panic"}).Verdict)
	o := s.Decide(ctx, req{"key": "bug"})
	assert.Equal(t, Internal, o.Verdict)
	assert.True(t, o.KeyErr)
	var p *PanicError
	assert.ErrorAs(t, s.Decide(ctx, req{"key": "panic"}).Err, &p)

	// no usable key: the key-less sequence, which admits about half
	verdicts := map[Verdict]int{}
	for range 100 {
		o := s.Decide(ctx, req{"key": "none"})
		verdicts[o.Verdict]++
		if o.Verdict == Refuse {
			assert.True(t, o.Exact)
			assert.Equal(t, slowstart.Share, o.Decision.Reason)
		}
	}
	assert.InDelta(t, 50, verdicts[Pass], 3)
	assert.Equal(t, 100, verdicts[Pass]+verdicts[Refuse])

	// a budget that fails: Unavailable, not exact; Gone once the context ended
	s = newCore(slowstart.Config{MinShare: 0.99, Budget: ctxBudget{}})
	dead, cancel := context.WithCancel(ctx)
	cancel()
	o = s.Decide(dead, req{"key": "none"}) // the first key-less place, 0.618, is within the share
	assert.Equal(t, Gone, o.Verdict)
	assert.ErrorIs(t, o.Err, context.Canceled)

	_, err := NewSlowStart(SlowStartConfig[req]{})
	assert.Error(t, err)
}

func TestSlowStartBudgetFails(t *testing.T) {
	g, err := slowstart.New(slowstart.Config{MinShare: 0.99, Budget: failTake{}, Clock: fakeclock.New(t0)})
	require.NoError(t, err)
	s, err := NewSlowStart(SlowStartConfig[req]{Common: Common[req]{Names: testNames}, Gate: g,
		Key: func(req) (string, error) { return "", nil }}) // "" is decided without a key
	require.NoError(t, err)
	o := s.Decide(context.Background(), req{})
	assert.Equal(t, Unavailable, o.Verdict)
	assert.False(t, o.Exact, "a wait every caller is told alike")
	assert.Equal(t, slowstart.DefaultMaxRetryAfter, o.RetryAfter)
	assert.ErrorIs(t, o.Err, limiter.ErrUnavailable)
}

type failTake struct{}

func (failTake) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, limiter.ErrUnavailable
}
