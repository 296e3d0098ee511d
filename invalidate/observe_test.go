package invalidate

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/observe"
)

// TestCoordinatorReportsRolloutEvents: two nodes on one store; node a
// observes. It reports the start it makes, the releases its advances
// show, a pause made by node b (learnt at its next advance, without a
// reason), a resume and an abort of its own (with their reasons), and a
// second rollout's (started by b) completion; each change once. Its hook calls back into
// the coordinator (it is called with no lock held).
func TestCoordinatorReportsRolloutEvents(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		var (
			mu  sync.Mutex
			got []string
			a   *Coordinator
		)
		hook := func(e observe.Rollout) {
			_, _ = a.Status(context.Background(), e.ID)
			mu.Lock()
			got = append(got, fmt.Sprintf("%s %s %d/%d %s", e.ID, e.Kind, e.Released, e.Cohorts, e.Reason))
			mu.Unlock()
		}
		clk := newVClock(t0)
		sts := sc.fleet(t, 2)
		a = newNode(t, sts[0], clk, Config{Observe: &observe.Hooks{Rollout: hook}})
		b := newNode(t, sts[1], clk)
		ctx := context.Background()
		mustStart(t, a, ro("r1"))
		advance(t, a, t0.Add(1500*time.Millisecond))
		require.NoError(t, b.Pause(ctx, "r1", By{Who: "ops", Reason: "orders dipped"}))
		advance(t, a, t0.Add(2500*time.Millisecond))
		advance(t, a, t0.Add(3500*time.Millisecond)) // nothing new
		require.NoError(t, a.Resume(ctx, "r1", By{Who: "ops", Reason: "false alarm"}))
		require.NoError(t, a.Abort(ctx, "r1", By{Who: "ops", Reason: "bad data"}))
		mustStart(t, b, ro("r2"))
		for i := range 12 {
			advance(t, a, t0.Add(time.Duration(4+i)*time.Second))
		}
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, got)
		assert.Equal(t, "r1 started 0/10 ", got[0])
		var r1 []string
		for _, g := range got {
			if g[:2] == "r1" && g != got[0] {
				r1 = append(r1, g[3:])
			}
		}
		// Released counts depend on the pace; the order of kinds does not.
		require.GreaterOrEqual(t, len(r1), 4)
		assert.Contains(t, r1[0], "cohort-released")
		assert.Equal(t, []string{"paused", "resumed", "aborted"}, kinds(r1[len(r1)-3:]))
		assert.Contains(t, r1[len(r1)-3], " ", "b's pause: no reason known here")
		assert.Equal(t, "false alarm", reasonOf(r1[len(r1)-2]))
		assert.Equal(t, "bad data", reasonOf(r1[len(r1)-1]))
		var r2 []string
		for _, g := range got {
			if g[:2] == "r2" {
				r2 = append(r2, kinds([]string{g[3:]})[0])
			}
		}
		require.NotEmpty(t, r2)
		assert.Equal(t, "started", r2[0])
		assert.Equal(t, "completed", r2[len(r2)-1])
		assert.Equal(t, "cohort-released", r2[len(r2)-2])
	})
}

// kinds returns the kind of each "kind n/m reason" event.
func kinds(evs []string) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		fmt.Sscan(e, &out[i])
	}
	return out
}

// reasonOf returns the reason of a "kind n/m reason" event.
func reasonOf(e string) string {
	var k, n string
	fmt.Sscan(e, &k, &n)
	return e[len(k)+len(n)+2:]
}
