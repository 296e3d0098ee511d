package invalidate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

// The conformance suite: the memory store, Redis and a 3-master Redis
// Cluster give the same answers to the same calls at the same (virtual)
// times.

func TestConformanceStartAndStatus(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk)
		st := mustStart(t, c, ro("a"))
		assert.Equal(t, uint64(t0.UnixMilli()), st.Rollout.Epoch, "the first assigned epoch is the time in ms")
		assert.Equal(t, Running, st.Phase)
		assert.Zero(t, st.Released)
		assert.False(t, st.Guarded)
		assert.Equal(t, 100.0, st.Rate)
		assert.Equal(t, 1000, st.Population)
		assert.Equal(t, time.Second, st.CohortInterval)
		assert.Equal(t, t0, st.StartedAt)
		assert.True(t, st.FinishedAt.IsZero())

		got := mustStatus(t, c, "a")
		assert.Equal(t, st, got)
		want := ro("a")
		want.Epoch = st.Rollout.Epoch
		assert.Equal(t, want, got.Rollout)

		_, err := c.Status(context.Background(), "nope")
		assert.ErrorIs(t, err, ErrUnknownRollout)
	})
}

func TestConformanceStartIsIdempotentOnID(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk)
		first := mustStart(t, c, ro("a"))
		clk.Add(time.Minute)
		again := mustStart(t, c, ro("a"))
		assert.Equal(t, first, again, "same ID, same content: a no-op")

		other := ro("a")
		other.By = "another-node"
		assert.Equal(t, first, mustStart(t, c, other), "By is not content: the first one is kept")
		assert.Equal(t, first, mustStart(t, c, first.Rollout), "the status's rollout, with its assigned epoch, is the same request")
		wrongEpoch := first.Rollout
		wrongEpoch.Epoch++
		_, err := c.Start(context.Background(), wrongEpoch)
		assert.ErrorIs(t, err, ErrConflict)

		changed := ro("a")
		changed.Scope = "tag:other"
		_, err = c.Start(context.Background(), changed)
		assert.ErrorIs(t, err, ErrConflict)
		assert.ErrorContains(t, err, `"a"`)
		changed = ro("a")
		changed.Rate = 101
		_, err = c.Start(context.Background(), changed)
		assert.ErrorIs(t, err, ErrConflict)

		list, err := c.Rollouts(context.Background())
		require.NoError(t, err)
		assert.Len(t, list, 1)
	})
}

func TestConformanceEpochs(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk)
		a := mustStart(t, c, ro("a")).Rollout.Epoch
		b := mustStart(t, c, ro("b")).Rollout.Epoch // same ms: the sequence moves on
		assert.Equal(t, a+1, b)

		explicit := ro("c")
		explicit.Epoch = b
		_, err := c.Start(context.Background(), explicit)
		assert.ErrorIs(t, err, ErrEpochBackwards)
		assert.ErrorContains(t, err, "Rollout.Epoch")
		explicit.Epoch = b + 1000
		assert.Equal(t, b+1000, mustStart(t, c, explicit).Rollout.Epoch)
		assert.Equal(t, b+1001, mustStart(t, c, ro("d")).Rollout.Epoch, "assigned epochs stay above explicit ones")

		clk.Add(time.Hour)
		e := mustStart(t, c, ro("e")).Rollout.Epoch
		assert.Equal(t, uint64(t0.Add(time.Hour).UnixMilli()), e, "the sequence follows the clock when it is ahead")
		head, err := c.Head(context.Background())
		require.NoError(t, err)
		assert.Equal(t, e, head)

		// An explicit epoch may lie at most WithMaxEpochJump above the
		// store's clock in ms: one start cannot exhaust the epoch space.
		huge := ro("f")
		huge.Epoch = MaxEpoch
		_, err = c.Start(context.Background(), huge)
		assert.ErrorIs(t, err, ErrEpochTooFar)
		ceil := e + defaultMaxEpochJump
		assert.ErrorContains(t, err, fmt.Sprintf("Rollout.Epoch %d is above %d, the highest allowed now", uint64(MaxEpoch), ceil))
		_, err = c.Status(context.Background(), "f")
		assert.ErrorIs(t, err, ErrUnknownRollout, "a refused start leaves nothing behind")
		assert.Equal(t, e+1, mustStart(t, c, ro("g")).Rollout.Epoch, "the namespace goes on")

		far := ro("h")
		far.Epoch = ceil
		assert.Equal(t, ceil, mustStart(t, c, far).Rollout.Epoch, "the full jump is allowed")
		further := ro("i")
		further.Epoch = ceil + defaultMaxEpochJump
		_, err = c.Start(context.Background(), further)
		assert.ErrorIs(t, err, ErrEpochTooFar, "the bound follows the clock: jumps do not ratchet it up")
		further.Epoch = ceil + 1
		assert.Equal(t, ceil+1, mustStart(t, c, further).Rollout.Epoch, "past the bound, the next epoch is still allowed")
		assert.Equal(t, ceil+2, mustStart(t, c, ro("j")).Rollout.Epoch)

		clk.Add(2 * 24 * time.Hour) // the clock catches up: the sequence follows it again
		assert.Equal(t, uint64(clk.Now().UnixMilli()), mustStart(t, c, ro("k")).Rollout.Epoch)

		// A tighter bound, on a fleet of its own.
		c2 := newNode(t, sc.fleet(t, 1)[0], clk, Config{MaxEpochJump: 10})
		now := uint64(clk.Now().UnixMilli())
		r := ro("a")
		r.Epoch = now + 11
		_, err = c2.Start(context.Background(), r)
		assert.ErrorIs(t, err, ErrEpochTooFar)
		r.Epoch = now + 10
		assert.Equal(t, now+10, mustStart(t, c2, r).Rollout.Epoch)
	})
}

// TestConformancePacing checks the pace formula exactly: a cohort per
// CohortInterval of running time, a steady cadence of advances losing no
// time, and never more than one wave (one cohort plus one advance interval
// of running time) per advance, however long the gap.
func TestConformancePacing(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk) // advance interval 1 s, cohort interval 1 s
		mustStart(t, c, ro("a"))
		steps := []struct {
			at       time.Duration
			released int
		}{
			{500 * time.Millisecond, 0},
			{time.Second, 1},
			{2500 * time.Millisecond, 2}, // 1.5 s banked: one cohort, 0.5 s left
			{10 * time.Second, 4},        // a 7.5 s gap: capped at 2 s banked, one wave
			{11 * time.Second, 5},
			{12 * time.Second, 6},
			{12 * time.Second, 6}, // the same time twice adds nothing
			{11 * time.Second, 6}, // nor does an earlier one
			{13 * time.Second, 7},
			{14 * time.Second, 8},
			{15 * time.Second, 9},
			{15900 * time.Millisecond, 9},
			{16 * time.Second, 10},
		}
		for _, s := range steps {
			advance(t, c, t0.Add(s.at))
			st := mustStatus(t, c, "a")
			require.Equal(t, s.released, st.Released, "at %v", s.at)
		}
		st := mustStatus(t, c, "a")
		assert.Equal(t, Done, st.Phase)
		assert.Equal(t, t0.Add(16*time.Second), st.FinishedAt)

		// A longer advance interval makes a bigger wave.
		c3 := newNode(t, sc.fleet(t, 1)[0], clk, Config{AdvanceInterval: 3 * time.Second})
		base := clk.Now()
		mustStart(t, c3, ro("b"))
		advance(t, c3, base.Add(10*time.Second))
		assert.Equal(t, 4, mustStatus(t, c3, "b").Released, "a 10 s gap releases one wave: a cohort plus 3 s")
	})
}

// TestConformanceCadenceKeepsSchedule: a cohort interval that is not a
// multiple of the advance interval loses no time to the wave cap.
func TestConformanceCadenceKeepsSchedule(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk) // advance interval 1 s
		r := ro("a")
		r.Clients, r.Rate = 1300, 100 // 130 clients a cohort at 100/s: 1.3 s
		st := mustStart(t, c, r)
		require.Equal(t, 1300*time.Millisecond, st.CohortInterval)
		at := time.Duration(0)
		for mustStatus(t, c, "a").Phase == Running && at < time.Minute {
			at += time.Second
			advance(t, c, t0.Add(at))
		}
		assert.Equal(t, 13*time.Second, at, "10 cohorts of 1.3 s with an advance every second")
	})
}

func TestConformanceMinDuration(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk, Config{AdvanceInterval: 100 * time.Millisecond})
		r := ro("a")
		r.Cohorts, r.Rate, r.MinDuration = 5, 1e6, 10*time.Second
		st := mustStart(t, c, r)
		assert.Equal(t, 2*time.Second, st.CohortInterval, "MinDuration/Cohorts beats the rate's 200 µs")
		for at := 100 * time.Millisecond; at < 10*time.Second; at += 100 * time.Millisecond {
			advance(t, c, t0.Add(at))
			st := mustStatus(t, c, "a")
			require.Equal(t, int(at/(2*time.Second)), st.Released, "at %v", at)
			require.NotEqual(t, Done, st.Phase, "at %v: faster than MinDuration", at)
		}
		advance(t, c, t0.Add(10*time.Second))
		assert.Equal(t, Done, mustStatus(t, c, "a").Phase)
	})
}

func TestConformancePauseResumeAbort(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk)
		mustStart(t, c, ro("a"))
		for s := 1; s <= 3; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		require.Equal(t, 3, mustStatus(t, c, "a").Released)

		clk.Set(t0.Add(3500 * time.Millisecond)) // t0+3.5s: 0.5 s banked
		advance(t, c, clk.Now())
		require.NoError(t, c.Pause(ctx, "a", By{}))
		require.NoError(t, c.Pause(ctx, "a", By{}), "pausing a paused rollout does nothing")
		assert.Equal(t, Paused, mustStatus(t, c, "a").Phase)
		for s := 4; s <= 60; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		assert.Equal(t, 3, mustStatus(t, c, "a").Released, "nothing is released while paused")

		clk.Set(t0.Add(60 * time.Second))
		require.NoError(t, c.Resume(ctx, "a", By{}))
		require.NoError(t, c.Resume(ctx, "a", By{}), "resuming a running rollout does nothing")
		advance(t, c, t0.Add(60400*time.Millisecond))
		assert.Equal(t, 3, mustStatus(t, c, "a").Released, "the paused time did not count")
		advance(t, c, t0.Add(60500*time.Millisecond))
		assert.Equal(t, 4, mustStatus(t, c, "a").Released, "the 0.5 s banked before the pause did")

		clk.Set(t0.Add(61 * time.Second))
		require.NoError(t, c.Abort(ctx, "a", By{}))
		require.NoError(t, c.Abort(ctx, "a", By{}), "aborting an aborted rollout does nothing")
		st := mustStatus(t, c, "a")
		assert.Equal(t, Aborted, st.Phase)
		assert.Equal(t, t0.Add(61*time.Second), st.FinishedAt)
		for s := 62; s <= 80; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		assert.Equal(t, 4, mustStatus(t, c, "a").Released, "nothing after an abort")
		assert.ErrorIs(t, c.Resume(ctx, "a", By{}), ErrFinished)
		assert.ErrorIs(t, c.Pause(ctx, "a", By{}), ErrFinished)

		mustStart(t, c, ro("b"))
		for s := 81; s <= 91; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		require.Equal(t, Done, mustStatus(t, c, "b").Phase)
		assert.ErrorIs(t, c.Abort(ctx, "b", By{}), ErrFinished)
		assert.ErrorIs(t, c.Pause(ctx, "b", By{}), ErrFinished)

		for _, id := range []string{"nope", "", string(make([]byte, maxIDLen+1))} {
			assert.ErrorIs(t, c.Pause(ctx, id, By{}), ErrUnknownRollout)
			assert.ErrorIs(t, c.Resume(ctx, id, By{}), ErrUnknownRollout)
			assert.ErrorIs(t, c.Abort(ctx, id, By{}), ErrUnknownRollout)
			_, err := c.Status(ctx, id)
			assert.ErrorIs(t, err, ErrUnknownRollout)
		}
	})
}

func TestConformanceHealthHold(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		var sick atomicBool
		stores := sc.fleet(t, 2)
		c := newNode(t, stores[0], clk, Config{Health: HealthFunc(func(context.Context) bool { return !sick.Load() })})
		healthy := newNode(t, stores[1], clk)
		mustStart(t, c, ro("a"))
		advance(t, c, t0.Add(time.Second))
		advance(t, c, t0.Add(2*time.Second))
		require.Equal(t, 2, mustStatus(t, c, "a").Released)

		sick.Store(true)
		advance(t, c, t0.Add(2500*time.Millisecond)) // holds until 3.5 s
		advance(t, healthy, t0.Add(3400*time.Millisecond))
		assert.Equal(t, 2, mustStatus(t, c, "a").Released, "a hold stops every node")
		advance(t, c, t0.Add(3*time.Second)) // renewed: until 4 s
		sick.Store(false)
		advance(t, healthy, t0.Add(4900*time.Millisecond))
		assert.Equal(t, 2, mustStatus(t, c, "a").Released, "only 0.9 s counted since the hold ended")
		advance(t, healthy, t0.Add(5*time.Second))
		assert.Equal(t, 3, mustStatus(t, c, "a").Released)
	})
}

func TestConformanceDueOrderAndGating(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk)
		a, b := ro("a"), ro("b")
		b.Rate = 200 // a cohort every 0.5 s; a wave of 2
		ea := mustStart(t, c, a).Rollout.Epoch
		eb := mustStart(t, c, b).Rollout.Epoch
		require.Less(t, ea, eb)
		for s := 1; s <= 3; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		require.Equal(t, 3, mustStatus(t, c, "a").Released)
		require.Equal(t, 6, mustStatus(t, c, "b").Released)
		rs := []Rollout{a, b}
		both := clientWith(t, rs, func(k []int) bool { return k[0] < 3 && k[1] < 6 })
		onlyA := clientWith(t, rs, func(k []int) bool { return k[0] < 3 && k[1] >= 6 })
		onlyB := clientWith(t, rs, func(k []int) bool { return k[0] >= 3 && k[1] < 6 })
		none := clientWith(t, rs, func(k []int) bool { return k[0] >= 3 && k[1] >= 6 })

		assert.Equal(t, []Notice{{RolloutID: "a", Scope: "tag:a", Epoch: ea}, {RolloutID: "b", Scope: "tag:b", Epoch: eb}}, due(t, c, both, 0))
		assert.Equal(t, []string{"a"}, ids(due(t, c, onlyA, 0)))
		assert.Equal(t, []string{}, ids(due(t, c, onlyB, 0)), "b waits behind a, which is pending for this client")
		assert.Equal(t, []string{"b"}, ids(due(t, c, onlyB, ea)), "once a is applied, b is due")
		assert.Equal(t, []string{}, ids(due(t, c, both, eb)), "everything applied")
		assert.Equal(t, []string{}, ids(due(t, c, none, 0)))

		require.NoError(t, c.Abort(ctx, "a", By{}))
		assert.Equal(t, []string{"b"}, ids(due(t, c, onlyB, 0)), "an aborted rollout no longer holds later ones back")
		assert.Equal(t, []string{"a", "b"}, ids(due(t, c, both, 0)), "clients of cohorts released before the abort are still told")
		assert.Equal(t, []string{"a"}, ids(due(t, c, onlyA, 0)))

		// AppendDue reuses dst.
		buf := make([]Notice, 0, 4)
		out, err := c.AppendDue(ctx, buf, both, 0)
		require.NoError(t, err)
		assert.Len(t, out, 2)
		assert.Equal(t, &buf[:1][0], &out[0], "appended in place")

		_, err = c.AppendDue(ctx, nil, "", 0)
		assert.ErrorIs(t, err, ErrInvalidArgument)
	})
}

func TestConformanceGuard(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk, Config{Guard: Guard{MaxRate: 50, Starts: roomyStarts(t, clk)}, PopulationFloor: 100})

		all := Rollout{ID: "all", Scope: ScopeAll, Cohorts: 10, Rate: 1e9, Clients: 1000, Coverage: 0.01, By: "node-a"}
		st := mustStart(t, c, all)
		assert.True(t, st.Guarded, "ScopeAll is always guarded")
		assert.Equal(t, defaultGuardMinDuration, st.MinDuration)
		assert.Equal(t, 50.0, st.Rate, "the guard's MaxRate caps the rate asked")
		assert.Equal(t, time.Minute, st.CohortInterval, "10 min over 10 cohorts beats 1000 clients at 50/s")

		for _, tc := range []struct {
			coverage float64
			clients  int
			guarded  bool
		}{{0, 1000, true}, {0.6, 1000, true}, {0.5, 1000, false}, {0.01, 1000, false}, {0.01, 0, true}} {
			r := ro(fmt.Sprintf("cov-%v-%d", tc.coverage, tc.clients))
			r.Coverage, r.Clients, r.By = tc.coverage, tc.clients, "node-b"
			if tc.clients == 0 {
				r.Cohorts = 100
			}
			assert.Equal(t, tc.guarded, mustStart(t, c, r).Guarded, "coverage %v, %d clients", tc.coverage, tc.clients)
		}

		few := all
		few.ID, few.Cohorts = "few", 5
		_, err := c.Start(ctx, few)
		assert.ErrorIs(t, err, ErrInvalidRollout)
		assert.ErrorContains(t, err, "Rollout.Cohorts must be at least 10")
	})
}

// roomyStarts is a start budget that never refuses in a test's few starts.
func roomyStarts(t *testing.T, clk *vclock) limiter.Budget {
	t.Helper()
	b, err := limiter.NewLocal(limiter.Limit{Rate: 1000, Period: time.Second, Burst: 1000}, limiter.Config{Clock: clk})
	require.NoError(t, err)
	return b
}

// TestConformanceGuardStartBudget: the default budget of guarded starts is
// kept per node and per requester (By), and shared by the fleet (every
// coordinator of a MemoryStore; every node on one Redis namespace): varying
// By does not escape the node's budget, nor starting from another node the
// requester's. Refused and failing starts spend nothing.
func TestConformanceGuardStartBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		stores := sc.fleet(t, 3)
		a := newNode(t, stores[0], clk, Config{Node: "node-a"})
		b := newNode(t, stores[1], clk, Config{Node: "node-b"})
		c := newNode(t, stores[2], clk, Config{Node: "node-c"})
		seq := 0
		guarded := func(by string) Rollout {
			seq++
			return Rollout{ID: fmt.Sprintf("all-%d", seq), Scope: ScopeAll, Cohorts: 10, Rate: 100, Clients: 1000, By: by}
		}
		refused := func(c *Coordinator, r Rollout) *StartRefusedError {
			t.Helper()
			_, err := c.Start(ctx, r)
			require.ErrorIs(t, err, ErrStartRefused)
			var e *StartRefusedError
			require.ErrorAs(t, err, &e)
			_, err = c.Status(ctx, r.ID)
			require.ErrorIs(t, err, ErrUnknownRollout, "a refused start leaves nothing behind")
			return e
		}

		// A rogue node naming a new requester each time: the node's budget.
		for _, src := range []string{"s1", "s2", "s3"} {
			mustStart(t, a, guarded(src))
		}
		e := refused(a, guarded("s4"))
		assert.True(t, e.NodeSpent)
		assert.False(t, e.BySpent, "s4 has its whole budget")
		assert.Equal(t, "node-a", e.Node)
		assert.Equal(t, 200*time.Second, e.RetryAfter, "3 per 10 min: one every 200 s")
		assert.ErrorContains(t, e, `the budget of guarded starts on node "node-a" (asked by "s4") is used up`)
		assert.ErrorContains(t, e, "retry in 3m20s")

		// One requester from several nodes: its budget, fleet-wide.
		mustStart(t, b, guarded("s1"))
		mustStart(t, b, guarded("s1"))
		e = refused(c, guarded("s1")) // s1 started once on a, twice on b
		assert.True(t, e.BySpent)
		assert.False(t, e.NodeSpent, "node-c has started nothing")
		assert.ErrorContains(t, e, `the budget of guarded starts by "s1" is used up`)
		e = refused(a, guarded("s1"))
		assert.True(t, e.BySpent)
		assert.True(t, e.NodeSpent)
		assert.ErrorContains(t, e, `by "s1" and on node "node-a"`)

		// The refusals spent nothing: node-c still has its three, node-b
		// its last one.
		mustStart(t, b, guarded("s5"))
		assert.True(t, refused(b, guarded("s6")).NodeSpent)

		// Nor do starts the store refuses: a backwards epoch, a repeat.
		back := guarded("s7")
		back.Epoch = 1
		for range 5 {
			_, err := c.Start(ctx, back)
			require.ErrorIs(t, err, ErrEpochBackwards)
		}
		first := mustStart(t, c, guarded("s7"))
		for range 5 {
			again, err := c.Start(ctx, first.Rollout)
			require.NoError(t, err, "repeating a start spends no token")
			assert.Equal(t, first, again)
		}
		mustStart(t, c, guarded("s8"))
		mustStart(t, c, guarded("s9"))
		assert.True(t, refused(c, guarded("s10")).NodeSpent)

		// Unguarded starts are not budgeted.
		narrow := ro("narrow")
		narrow.By = "s1"
		mustStart(t, a, narrow)

		// A token comes back every 200 s.
		clk.Add(200 * time.Second)
		mustStart(t, a, guarded("s4"))
		assert.True(t, refused(a, guarded("s11")).NodeSpent)
	})
}

// TestGuardStartKeys: a custom budget is asked under the node's and the
// requester's keys, and peeked at before any token is taken.
func TestGuardStartKeys(t *testing.T) {
	clk := newVClock(t0)
	rec := &recordingBudget{allow: map[string]bool{"node:n1": true, "by:ok": true}}
	c := newNode(t, NewMemoryStore(), clk, Config{Node: "n1", Guard: Guard{Starts: rec}})
	r := Rollout{ID: "a", Scope: ScopeAll, Cohorts: 10, Rate: 1, Clients: 10, By: "ok"}
	mustStart(t, c, r)
	assert.Equal(t, []string{"node:n1/0", "by:ok/0", "node:n1/1", "by:ok/1"}, rec.calls)

	rec.calls = nil
	r.ID, r.By = "b", "spent"
	_, err := c.Start(context.Background(), r)
	var e *StartRefusedError
	require.ErrorAs(t, err, &e)
	assert.True(t, e.BySpent)
	assert.False(t, e.NodeSpent)
	assert.Equal(t, []string{"node:n1/0", "by:spent/0", "by:spent/1"}, rec.calls, "no token taken from the node")
}

// recordingBudget records its calls ("key/n") and allows the keys in allow.
type recordingBudget struct {
	mu    sync.Mutex
	allow map[string]bool
	calls []string
}

func (b *recordingBudget) Take(_ context.Context, r limiter.Request) (limiter.Decision, error) {
	key, n := r.Key, r.N
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf("%s/%d", key, n))
	d := limiter.Decision{Limit: defaultGuardStarts}
	if b.allow[key] {
		d.Allowed, d.Remaining = true, 1
	} else if n == 0 {
		d.Allowed = true // a peek is allowed, and shows nothing left
	} else {
		d.RetryAfter = time.Minute
	}
	return d, nil
}

// TestConformanceGuardNeverInstant: a guarded rollout asking for everything
// at once takes the guard's minimum duration anyway.
func TestConformanceGuardNeverInstant(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk, Config{Guard: Guard{MinDuration: time.Minute}, AdvanceInterval: time.Second})
		mustStart(t, c, Rollout{ID: "rogue", Scope: ScopeAll, Cohorts: 10, Rate: maxRate, Clients: 10, By: "bad-node"})
		prev := 0
		for at := time.Millisecond; at <= 70*time.Second; at += 500 * time.Millisecond {
			advance(t, c, t0.Add(at))
			st := mustStatus(t, c, "rogue")
			require.LessOrEqual(t, st.Released, int(at/(6*time.Second)), "at %v", at)
			require.LessOrEqual(t, st.Released-prev, 1, "at %v: one cohort per wave at most", at)
			prev = st.Released
		}
		assert.Equal(t, Done, mustStatus(t, c, "rogue").Phase)
	})
}

func TestConformanceRetentionAndMaxRollouts(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk, Config{Retention: time.Hour, MaxRollouts: 2})
		mustStart(t, c, ro("a"))
		mustStart(t, c, ro("b"))
		_, err := c.Start(ctx, ro("c"))
		assert.ErrorIs(t, err, ErrTooManyRollouts)

		clk.Set(t0.Add(time.Minute))
		require.NoError(t, c.Abort(ctx, "a", By{}))
		advance(t, c, t0.Add(time.Minute+time.Hour-time.Second))
		_, err = c.Status(ctx, "a")
		assert.NoError(t, err, "kept for the retention")
		_, err = c.Start(ctx, ro("c"))
		assert.ErrorIs(t, err, ErrTooManyRollouts)

		clk.Set(t0.Add(time.Minute + time.Hour))
		mustStart(t, c, ro("c")) // a full namespace purges what expired
		_, err = c.Status(ctx, "a")
		assert.ErrorIs(t, err, ErrUnknownRollout)
	})
}

func TestConformancePurgeOnAdvance(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		c := newNode(t, sc.fleet(t, 1)[0], clk, Config{Retention: time.Hour})
		mustStart(t, c, ro("a"))
		for s := 1; s <= 10; s++ {
			advance(t, c, t0.Add(time.Duration(s)*time.Second))
		}
		require.Equal(t, Done, mustStatus(t, c, "a").Phase)
		assert.Len(t, due(t, c, "anyone", 0), 1, "a done rollout is due to everyone")
		advance(t, c, t0.Add(10*time.Second+time.Hour))
		_, err := c.Status(context.Background(), "a")
		assert.ErrorIs(t, err, ErrUnknownRollout)
		assert.Empty(t, due(t, c, "anyone", 0), "gone after the retention")
	})
}

// TestConformancePopulation: with Clients unknown, the pace comes from the
// distinct clients the fleet's Due calls saw; both stores count them with
// the same estimator, so they agree exactly.
func TestConformancePopulation(t *testing.T) {
	const clients = 5000
	counts := map[string]int{}
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		stores := sc.fleet(t, 3)
		var nodes []*Coordinator
		for _, s := range stores {
			nodes = append(nodes, newNode(t, s, clk, Config{PopulationWindow: time.Minute}))
		}
		r := ro("a")
		r.Clients = 0
		mustStart(t, nodes[0], r)
		for i := range clients {
			due(t, nodes[i%3], fmt.Sprintf("client-%d", i), 0)
			due(t, nodes[(i+1)%3], fmt.Sprintf("client-%d", i), 0) // seen twice, counted once
		}
		for _, n := range nodes {
			advance(t, n, t0.Add(100*time.Millisecond))
		}
		advance(t, nodes[0], t0.Add(200*time.Millisecond))
		st := mustStatus(t, nodes[0], "a")
		assert.InEpsilon(t, clients, st.Population, 0.03, "HyperLogLog: 0.81%% standard error")
		counts[sc.name] = st.Population

		// The next window still counts the previous one.
		advance(t, nodes[1], t0.Add(70*time.Second))
		assert.Equal(t, st.Population, mustStatus(t, nodes[0], "a").Population)
	})
	if len(counts) == 3 {
		assert.Equal(t, counts["memory"], counts["redis"], "the memory store counts like PFCOUNT")
		assert.Equal(t, counts["memory"], counts["cluster"])
	}
}

// TestConformanceUnknownPopulation: a rollout whose caller gives no
// population (Clients 0) on a fleet whose estimate is cold. Before the
// warm-up, the estimate had seen no client and the pace assumed one: 100
// cohorts at 100 clients/s all went out in the first one-second advance.
// Now such a rollout is guarded and waits out the warm-up, so the pace is
// computed from the clients that polled meanwhile; a coordinator with no
// estimate refuses it unless it has a population floor.
func TestConformanceUnknownPopulation(t *testing.T) {
	const warmup = 5 * time.Second
	pops := map[string]int{}
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		cold := Rollout{ID: "cold", Scope: "tag:x", Cohorts: 100, Rate: 100, Coverage: 0.1, By: "deployer"}
		fleet := func(g Guard) []*Coordinator {
			clk := newVClock(t0)
			var nodes []*Coordinator
			for i, s := range sc.fleet(t, 3) {
				nodes = append(nodes, newNode(t, s, clk, Config{Node: fmt.Sprintf("n%d", i), PopulationWindow: time.Minute,
					PopulationWarmup: warmup, Guard: g}))
			}
			return nodes
		}
		advanceAll := func(nodes []*Coordinator, at time.Time) Status {
			t.Helper()
			for _, n := range nodes {
				advance(t, n, at)
			}
			return mustStatus(t, nodes[0], "cold")
		}

		t.Run("nobody polls", func(t *testing.T) {
			nodes := fleet(Guard{})
			st := mustStart(t, nodes[0], cold)
			assert.True(t, st.Guarded, "an unknown population is guarded")
			assert.Equal(t, t0.Add(warmup), st.HoldUntil)
			assert.Equal(t, defaultGuardMinDuration, st.MinDuration)
			for at := time.Second; at <= warmup; at += time.Second {
				require.Zero(t, advanceAll(nodes, t0.Add(at)).Released, "at %v: released during the warm-up", at)
			}
			// No client seen: the guard's 10 minutes pace it, 6 s a cohort.
			for at := warmup + time.Second; at <= time.Minute; at += time.Second {
				st = advanceAll(nodes, t0.Add(at))
				require.Equal(t, int((at-warmup)/(6*time.Second)), st.Released, "at %v", at)
			}
			assert.Equal(t, 1, st.Population)
		})

		t.Run("clients poll during the warm-up", func(t *testing.T) {
			const clients = 5000
			nodes := fleet(Guard{MinDuration: time.Second})
			st := mustStart(t, nodes[0], cold)
			require.Zero(t, st.Population, "cold: nothing seen yet")
			for i := range clients {
				due(t, nodes[i%3], fmt.Sprintf("client-%d", i), 0)
			}
			for at := time.Second; at <= warmup; at += time.Second {
				require.Zero(t, advanceAll(nodes, t0.Add(at)).Released, "at %v: released during the warm-up", at)
			}
			st = mustStatus(t, nodes[0], "cold")
			assert.InEpsilon(t, clients, st.Population, 0.03, "warm: every polling client counted (HyperLogLog, 0.81%% standard error)")
			iv := st.CohortInterval // about 50 clients a cohort at 100/s: 0.5 s
			for at := warmup + time.Second; st.Phase == Running; at += time.Second {
				st = advanceAll(nodes, t0.Add(at))
				want := min(cold.Cohorts, int((at-warmup)/iv))
				require.Equal(t, want, st.Released, "at %v: the pace of the estimated population", at)
				// In clients: never more than the budget over the running
				// time, plus one cohort (the estimate counts the clients).
				perCohort := float64(st.Population) / float64(cold.Cohorts)
				require.LessOrEqual(t, float64(st.Released)*perCohort, cold.Rate*(at-warmup).Seconds()+perCohort, "at %v", at)
			}
			took := st.FinishedAt.Sub(st.StartedAt)
			assert.GreaterOrEqual(t, took, warmup+time.Duration(float64(st.Population)/cold.Rate*float64(time.Second))-time.Millisecond)
			pops[sc.name] = st.Population
		})

		t.Run("no estimate", func(t *testing.T) {
			clk := newVClock(t0)
			c := newNode(t, sc.fleet(t, 1)[0], clk) // no population counting
			_, err := c.Start(ctx, cold)
			assert.ErrorIs(t, err, ErrInvalidRollout)
			assert.ErrorContains(t, err, "Rollout.Clients is 0 (unknown)")
			assert.ErrorContains(t, err, "Config.PopulationFloor")

			f := newNode(t, sc.fleet(t, 1)[0], clk, Config{PopulationFloor: 2000})
			st := mustStart(t, f, cold)
			assert.Equal(t, 2000, st.Population, "the floor is what is known")
			assert.True(t, st.Guarded)
			assert.True(t, st.HoldUntil.IsZero(), "no estimate to wait for")
			assert.Equal(t, 6*time.Second, st.CohortInterval, "the guard's 10 min over 100 cohorts beats 2000 clients at 100/s")
			known := ro("known")
			known.Clients = 500
			assert.Equal(t, 2000, mustStart(t, f, known).Population, "the floor applies to every rollout")
		})
	})
	if len(pops) == 3 {
		assert.Equal(t, pops["memory"], pops["redis"], "the memory store counts like PFCOUNT")
		assert.Equal(t, pops["memory"], pops["cluster"])
	}
}

// TestConformanceSameNumbers replays one seeded random schedule of starts,
// advances, holds, pauses, aborts and headroom changes (none, 0, below and
// above the rates) on every store and compares every status along the way;
// it also checks the budget invariants at each step.
func TestConformanceSameNumbers(t *testing.T) {
	runs := map[string][]string{}
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(42, 7))
		clk := newVClock(t0)
		var sick atomicBool
		room := newSpare(math.Inf(1))
		stores := sc.fleet(t, 3)
		var nodes []*Coordinator
		for i, s := range stores {
			nodes = append(nodes, newNode(t, s, clk, Config{Node: fmt.Sprintf("n%d", i), AdvanceInterval: time.Duration(1+i) * time.Second,
				Health: HealthFunc(func(context.Context) bool { return !sick.Load() }), Headroom: room, CallsPerClient: 1.5}))
		}
		var trace []string
		prev := map[string]int{}
		started := map[string]time.Time{}
		for step := range 400 {
			now := clk.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
			n := nodes[rng.IntN(len(nodes))]
			switch k := rng.IntN(20); {
			case k == 0 && len(started) < 6:
				r := Rollout{ID: fmt.Sprintf("r%d", step), Scope: "s", Cohorts: 1 + rng.IntN(40),
					Rate: float64(1 + rng.IntN(300)), Clients: 1 + rng.IntN(5000), Coverage: 0.2,
					MinDuration: time.Duration(rng.IntN(60)) * time.Second, By: "x"}
				mustStart(t, n, r)
				started[r.ID] = now
			case k == 1:
				sick.Store(!sick.Load())
			case k == 3:
				room.Set([]float64{math.Inf(1), 0, 3, 0.1 + rng.Float64()*450, 1e9}[rng.IntN(5)])
			case k == 2 && len(started) > 0:
				id := fmt.Sprintf("r%d", rng.IntN(step))
				if _, ok := started[id]; ok {
					err := []func(context.Context, string, By) error{n.Pause, n.Resume, n.Abort}[rng.IntN(3)](ctx, id, By{})
					if err != nil {
						require.ErrorIs(t, err, ErrFinished)
					}
				}
			default:
				advance(t, n, now)
			}
			list, err := n.Rollouts(ctx)
			require.NoError(t, err)
			for _, st := range list {
				id := st.Rollout.ID
				iv := st.CohortInterval
				wave := max(1, int((3*time.Second+iv-1)/iv)) // the longest advance interval banks 3 s
				require.GreaterOrEqual(t, st.Released, prev[id], "%s: released never shrinks", id)
				require.LessOrEqual(t, st.Released-prev[id], wave, "%s at step %d: more than one wave at once", id, step)
				require.LessOrEqual(t, time.Duration(st.Released)*iv, now.Sub(started[id])+time.Microsecond,
					"%s at step %d: faster than the budget", id, step)
				if st.Phase == Done {
					require.GreaterOrEqual(t, now.Sub(started[id]), st.MinDuration, "%s: faster than MinDuration", id)
				}
				prev[id] = st.Released
				trace = append(trace, fmt.Sprintf("%d %s %v %d %d %v", step, id, st.Phase, st.Released, st.Population, st.UpdatedAt.Sub(t0)))
			}
		}
		runs[sc.name] = trace
		require.NotEmpty(t, trace)
	})
	if len(runs) == 3 {
		for _, name := range []string{"redis", "cluster"} {
			require.Len(t, runs[name], len(runs["memory"]), name)
			for i := range runs["memory"] {
				require.Equal(t, runs["memory"][i], runs[name][i], "%s differs from memory at line %d", name, i)
			}
		}
	}
}

func TestConformanceRestoreMerges(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		ctx := context.Background()
		clk := newVClock(t0)
		s := sc.fleet(t, 1)[0]
		c := newNode(t, s, clk)
		mustStart(t, c, ro("a"))
		mustStart(t, c, ro("b"))
		for sec := 1; sec <= 3; sec++ {
			advance(t, c, t0.Add(time.Duration(sec)*time.Second))
		}
		known := map[string]record{}
		for _, id := range []string{"a", "b"} {
			rec, err := s.get(ctx, id)
			require.NoError(t, err)
			known[id] = rec
		}
		now := stamp{us: t0.Add(time.Minute).UnixMicro()}

		ahead := known["a"]
		ahead.st.released = 7
		behind := known["b"]
		behind.st.released = 1
		behind.st.phase = Aborted
		ghost := known["a"]
		ghost.r.ID, ghost.r.Scope = "ghost", "tag:ghost"
		ghost.st.released = 4
		other := known["b"]
		other.r.Scope = "different" // same ID, different rollout: left alone
		other.st.released = 9
		grace := 2 * time.Second
		n, err := s.restore(ctx, []record{ahead, behind, ghost, other}, now, grace.Microseconds(), "gen")
		require.NoError(t, err)
		assert.Equal(t, 3, n)

		a := mustStatus(t, c, "a")
		assert.Equal(t, 7, a.Released, "the released count only grows")
		assert.Equal(t, Running, a.Phase)
		b := mustStatus(t, c, "b")
		assert.Equal(t, 3, b.Released, "a lower known count does not shrink it")
		assert.Equal(t, Aborted, b.Phase, "a known abort is kept")
		g := mustStatus(t, c, "ghost")
		assert.Equal(t, 4, g.Released, "a lost rollout is written as known")
		assert.Equal(t, known["a"].st.epoch, g.Rollout.Epoch)
		assert.Equal(t, "tag:b", b.Rollout.Scope)

		full := known["a"]
		full.st.released, full.st.phase = 10, Done
		bad := known["b"] // inconsistent: all released but running
		bad.st.released = 10
		n, err = s.restore(ctx, []record{full, bad}, now, 0, "gen")
		require.NoError(t, err)
		assert.Equal(t, 1, n, "a record that does not hold together is not restored")
		assert.Equal(t, Done, mustStatus(t, c, "a").Phase, "all released is done")
		assert.Equal(t, 3, mustStatus(t, c, "b").Released)

		// The ghost's pace restarts at the restore, after the grace (the
		// time for the nodes that know more, an abort, to re-register it
		// too): no credit for the gap, nor for the grace.
		assert.Equal(t, t0.Add(time.Minute+grace), g.HoldUntil, "a rollout written anew is held for the grace")
		assert.True(t, a.HoldUntil.IsZero(), "a merged one is not")
		advance(t, c, t0.Add(time.Minute+500*time.Millisecond))
		assert.Equal(t, 4, mustStatus(t, c, "ghost").Released)
		advance(t, c, t0.Add(time.Minute+grace+500*time.Millisecond))
		assert.Equal(t, 4, mustStatus(t, c, "ghost").Released, "0.5 s of progress since the grace ended")
		advance(t, c, t0.Add(time.Minute+grace+time.Second))
		assert.Equal(t, 5, mustStatus(t, c, "ghost").Released)
	})
}

func TestConformanceRunLoopsInVirtualTime(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		clk := newVClock(t0)
		stores := sc.fleet(t, 2)
		a := newNode(t, stores[0], clk)
		b := newNode(t, stores[1], clk, Config{AdvanceInterval: 500 * time.Millisecond})
		mustStart(t, a, ro("r"))
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, 2)
		for _, n := range []*Coordinator{a, b} {
			go func() { errs <- n.Run(ctx) }()
		}
		// Each Run advances, then waits on the virtual clock: drive it a
		// tick at a time once both are waiting.
		for i := 0; i < 200 && mustStatus(t, a, "r").Phase != Done; i++ {
			require.Eventually(t, func() bool { return clk.Pending() == 2 }, 10*time.Second, time.Millisecond)
			clk.Add(100 * time.Millisecond)
		}
		st := mustStatus(t, a, "r")
		assert.Equal(t, Done, st.Phase)
		took := st.FinishedAt.Sub(st.StartedAt)
		assert.GreaterOrEqual(t, took, 10*time.Second, "10 cohorts at one per second")
		assert.LessOrEqual(t, took, 11*time.Second)
		cancel()
		for range 2 {
			assert.ErrorIs(t, <-errs, context.Canceled)
		}
		assert.Zero(t, clk.Pending(), "a Run that returns stops its timer")
	})
}

func TestConformanceBadCohortCounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		c := newNode(t, sc.fleet(t, 1)[0], newVClock(t0))
		for _, n := range []int{0, -1, limiter.MaxCohorts + 1, 1 << 30} {
			r := ro("a")
			r.Cohorts = n
			_, err := c.Start(context.Background(), r)
			assert.ErrorIs(t, err, ErrInvalidRollout, "%d cohorts", n)
			assert.ErrorContains(t, err, "Rollout.Cohorts")
		}
		r := ro("max")
		r.Cohorts, r.Rate, r.Clients = limiter.MaxCohorts, 1e9, 1e9
		st := mustStart(t, c, r)
		advance(t, c, t0.Add(time.Second))
		st = mustStatus(t, c, "max")
		iv := float64(st.Population) * 1e6 / (float64(r.Cohorts) * st.Rate) // µs per cohort
		assert.LessOrEqual(t, float64(st.Released), 1e6/iv+1e-9, "never more than the budget")
		assert.Positive(t, st.Released)
		_, err := c.Status(context.Background(), "a")
		assert.True(t, errors.Is(err, ErrUnknownRollout))
	})
}
