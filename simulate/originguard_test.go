package simulate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCapacityChanges: capacity changes run in the simulation, and one
// change's end at the next one's start leaves the next in force whichever
// boundary event runs first.
func TestCapacityChanges(t *testing.T) {
	sc := builtin(t, "rogue-invalidate", 5000)
	sc.Trigger.At = Duration(20 * time.Minute) // the storm comes after the changes
	// Two back-to-back minutes at 4% of capacity, below the steady load
	// (about 11% of it): the bounded queue fills and rejects in both.
	sc.Origin.Changes = []CapacityChange{
		{At: Duration(3 * time.Minute), Factor: 0.04, For: Duration(time.Minute)},
		{At: Duration(4 * time.Minute), Factor: 0.04, For: Duration(time.Minute)},
	}
	require.NoError(t, sc.Validate())
	assert.Contains(t, sc.Warnings(), "scenario.origin.changes[1].factor: 0.04 takes the origin's capacity to 0.5 per second, below protection.origin_budget 10: the protected run's fixed budget will overload the origin while it lasts")
	r, err := Run(context.Background(), sc, Unprotected, Config{})
	require.NoError(t, err)
	errs := r.Series.OriginErrors
	assert.Zero(t, s0(errs[10:180]), "full capacity before")
	assert.Positive(t, s0(errs[185:240]), "the first change")
	assert.Positive(t, s0(errs[245:300]), "the second change, started at the first one's end")
	assert.Zero(t, s0(errs[400:1200]), "full capacity again after")

	// The boundary events, in either order at the shared instant.
	s := newSim(context.Background(), sc, Unprotected)
	s.advance(int64(4 * time.Minute))
	for range 2 {
		s.system(event{kind: evSystem, arg: sysCapacity})
		assert.Equal(t, 0.04, s.org.factor)
	}
	s.advance(int64(5 * time.Minute))
	s.system(event{kind: evSystem, arg: sysCapacity})
	assert.Equal(t, 1.0, s.org.factor)
}

// TestHoldWithinTheCallersDeadline: with a caller's timeout shorter than
// the guard's longest hold, the protected nodes hold a call only as long
// as leaves it time to be served, so no origin call times out; held for
// the guard's full second, every held call would.
func TestHoldWithinTheCallersDeadline(t *testing.T) {
	// At 10,000 clients one call takes 40 ms of service (fixed here, so
	// that no tail of the origin's own makes a timeout) and 20 ms of
	// latency: the guard keeps those 60 ms of the caller's 300.
	sc := builtin(t, "incident", 10_000)
	sc.Origin.Timeout = Duration(300 * time.Millisecond)
	sc.Origin.ServiceCV = new(float64)
	// A budget below the rollout's calls, so that the budget stays
	// saturated and calls queue for their tokens up to the longest hold.
	sc.Protection.OriginBudget = 0.4 * sc.Protection.OriginBudget
	pr, err := Run(context.Background(), sc, Protected, Config{})
	require.NoError(t, err)
	assert.Zero(t, s0(pr.Series.OriginErrors), "no call held past its caller's deadline")
	assert.Positive(t, pr.StormRefusedShare, "the budget was saturated: calls beyond the hold were refused")
}
