package invalidate

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// TestDurabilityStarterDies: the node that started a rollout stops; the
// others finish it, and every client still gets its notice.
func TestDurabilityStarterDies(t *testing.T) {
	for _, sc := range storeCases()[:2] {
		t.Run(sc.name, func(t *testing.T) {
			f := newFleet(t, sc.fleet(t, 3), 2000)
			st := mustStart(t, f.nodes[0], Rollout{ID: "r", Scope: "s", Cohorts: 20, Rate: 400, Clients: 2000, Coverage: 0.1, By: "node-0"})
			for range 20 {
				f.step()
			}
			require.Equal(t, Running, mustStatus(t, f.nodes[1], "r").Phase)
			f.nodes = f.nodes[1:] // node 0 dies: it neither advances nor answers again
			for range 100 {
				f.step()
			}
			st = mustStatus(t, f.nodes[0], "r")
			assert.Equal(t, Done, st.Phase)
			for _, c := range f.clients {
				require.Equal(t, 1, c.notices, c.id)
			}
		})
	}
}

// TestDurabilityRedisRestartedEmpty: Redis loses everything mid-rollout,
// twice. Meanwhile the nodes answer Due from what they knew; then they
// re-register the rollout (each with the highest released count it knows;
// the store keeps the largest), and it completes under its original epoch,
// with every client told exactly once and the pace still within the budget.
// The second restart happens while the rollout is paused, so that every
// node knows the same count: it is restored exactly, and still paused.
func TestDurabilityRedisRestartedEmpty(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	ns := uniqueNS()
	var stores []Store
	for range 3 {
		// A short breaker: the virtual-time loop runs far faster than real
		// time, and the breaker's open period is real time.
		stores = append(stores, newRedisStore(t, fleet.Redis{Client: s.Client(t), Name: ns, BreakerFailures: 3, BreakerOpen: 20 * time.Millisecond}))
	}
	const clients, rate, wave = 3000, 200.0, 200
	f := newFleet(t, stores, clients)
	start := f.clk.Now()
	st := mustStart(t, f.nodes[0], Rollout{ID: "r", Scope: "s", Cohorts: 60, Rate: rate, Clients: clients, Coverage: 0.1, By: "node-0"})
	epoch := st.Rollout.Epoch
	stepUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // real time: Redis reconnects
		for !cond() {
			require.True(t, time.Now().Before(deadline), "waiting for %s", what)
			f.step()
		}
	}
	status := func() (Status, error) { return f.nodes[1].Status(ctx, "r") }
	for range 50 {
		f.step()
	}
	require.Greater(t, mustStatus(t, f.nodes[0], "r").Released, 5)

	s.Restart(t) // same port, empty dataset
	_, err := status()
	require.Error(t, err, "the restarted Redis must not know the rollout, or the test proves nothing")
	stepUntil("the rollout to be re-registered", func() bool { _, err := status(); return err == nil })

	stepUntil("half the cohorts", func() bool { st, err := status(); return err == nil && st.Released >= 30 })
	require.NoError(t, f.nodes[2].Pause(ctx, "r", By{}))
	for range 20 { // every node reads the paused state
		f.step()
	}
	paused := mustStatus(t, f.nodes[0], "r")
	s.Restart(t)
	stepUntil("the paused rollout to be re-registered", func() bool { _, err := status(); return err == nil })
	for range 20 { // every node has had its advance, and so its restore
		f.step()
	}
	st = mustStatus(t, f.nodes[0], "r")
	assert.Equal(t, Paused, st.Phase, "the pause survives")
	assert.Equal(t, paused.Released, st.Released, "restored with the released count every node knew")
	require.NoError(t, f.nodes[0].Resume(ctx, "r", By{}))

	stepUntil("the rollout to finish", func() bool { st, err := status(); return err == nil && st.Phase == Done })
	for range 30 {
		f.step()
	}
	st = mustStatus(t, f.nodes[2], "r")
	assert.Equal(t, epoch, st.Rollout.Epoch, "re-registered under its epoch")
	t.Logf("%d advances failed during the restarts", f.advanceErrs)
	for _, c := range f.clients {
		require.Equal(t, 1, c.notices, "client %s: told exactly once", c.id)
		require.Equal(t, epoch, c.applied)
	}
	for w := time.Second; w <= 3*time.Second; w += time.Second {
		most := f.notifiedPerWindow(start, w)
		assert.LessOrEqual(t, most, int(rate*w.Seconds())+wave, "window %v", w)
	}
	// The epoch sequence survived too: a new rollout gets a later epoch.
	next := mustStart(t, f.nodes[1], Rollout{ID: "r2", Scope: "s", Cohorts: 2, Rate: 1, Clients: 2, Coverage: 0.1, By: "node-1"})
	assert.Greater(t, next.Rollout.Epoch, epoch)
}

// TestDurabilityAbortNotifiesOnlyReleased: after an abort, exactly the
// clients of the cohorts released before it are told, on every node, however
// long they keep polling.
func TestDurabilityAbortNotifiesOnlyReleased(t *testing.T) {
	for _, sc := range storeCases()[:2] {
		t.Run(sc.name, func(t *testing.T) {
			f := newFleet(t, sc.fleet(t, 3), 5000)
			r := Rollout{ID: "r", Scope: "s", Cohorts: 50, Rate: 500, Clients: 5000, Coverage: 0.1, By: "node-0"}
			mustStart(t, f.nodes[0], r)
			for range 45 {
				f.step()
			}
			require.NoError(t, f.nodes[1].Abort(context.Background(), "r", By{}))
			st := mustStatus(t, f.nodes[2], "r")
			require.Equal(t, Aborted, st.Phase)
			require.Greater(t, st.Released, 0)
			require.Less(t, st.Released, r.Cohorts)
			for range 100 {
				f.step()
			}
			told := 0
			for _, c := range f.clients {
				released := limiter.Cohort(r.ID, c.id, r.Cohorts) < st.Released
				if released {
					told++
				}
				require.Equal(t, released, c.notices == 1, "client %s (cohort %d, %d released)", c.id, limiter.Cohort(r.ID, c.id, r.Cohorts), st.Released)
			}
			t.Logf("%d cohorts released before the abort; %d clients told", st.Released, told)
		})
	}
}

// TestRedisOutageDueAnswersFromLastState: while Redis is down, Due answers
// from the state last read, within the timeout; a node that never read
// it fails with ErrUnavailable; nothing panics.
func TestRedisOutageDueAnswersFromLastState(t *testing.T) {
	s := redistest.Start(t)
	ns := uniqueNS()
	timeout := 50 * time.Millisecond
	mk := func() Store {
		return newRedisStore(t, fleet.Redis{Client: s.Client(t), Name: ns, Timeout: timeout, BreakerFailures: 2, BreakerOpen: 100 * time.Millisecond})
	}
	clk := newVClock(t0)
	warm := newNode(t, mk(), clk, Config{CacheTTL: -1}) // reads the store on every Due
	cold := newNode(t, mk(), clk)
	mustStart(t, warm, ro("r"))
	for sec := 1; sec <= 10; sec++ {
		advance(t, warm, t0.Add(time.Duration(sec)*time.Second))
	}
	want := due(t, warm, "client-1", 0)
	require.Len(t, want, 1)

	s.Pause(t) // SIGSTOP: connections stay open, nothing answers
	defer s.Resume(t)
	ctx := context.Background()
	for i := range 5 {
		began := time.Now()
		got, err := warm.AppendDue(ctx, nil, "client-1", 0)
		took := time.Since(began)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		// Generous: the timeout (50 ms) plus scheduling on a loaded -race CI
		// machine; without the timeout a call would block for the client's
		// read timeout (seconds).
		assert.Less(t, took, timeout+500*time.Millisecond, "call %d", i)
	}
	_, err := cold.AppendDue(ctx, nil, "client-1", 0)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, advanceAt(warm, t0.Add(11*time.Second)), ErrUnavailable)
	_, err = warm.Start(ctx, ro("x"))
	assert.ErrorIs(t, err, ErrUnavailable)
	s.Resume(t)

	// Killed, then back empty: Due keeps answering, and once the breaker
	// lets a probe through, an advance re-registers the rollout.
	s.Kill(t)
	got, err := warm.AppendDue(ctx, nil, "client-1", 0)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	s.Restart(t)
	other := newNode(t, newRedisStore(t, fleet.Redis{Client: s.Client(t), Name: ns}), clk)
	_, err = other.Status(ctx, "r")
	assert.ErrorIs(t, err, ErrUnknownRollout, "the restarted Redis is empty")
	require.Eventually(t, func() bool {
		if advanceAt(warm, t0.Add(12*time.Second)) != nil {
			return false
		}
		_, err := other.Status(ctx, "r")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "re-registered after the breaker's open period")
	st := mustStatus(t, other, "r")
	assert.Equal(t, 10, st.Released)
	assert.Equal(t, Done, st.Phase)
	assert.Equal(t, want, due(t, other, "client-1", 0))
}

// TestRedisCorruptRecords: whatever is stored under the namespace's keys,
// the store reports it and keeps working for the rest; a node that knows a
// damaged rollout re-registers it.
func TestRedisCorruptRecords(t *testing.T) {
	ctx := context.Background()
	c := srv.Client(t)
	ns := uniqueNS()
	clk := newVClock(t0)
	a := newNode(t, newRedisStore(t, fleet.Redis{Client: c, Name: ns}), clk, Config{PopulationWindow: time.Minute, RestoreGrace: 2 * time.Second})
	good := mustStart(t, a, ro("good"))
	damaged := mustStart(t, a, ro("bad-state"))
	mustStart(t, a, ro("bad-cfg"))
	base := "herdcap:{inv:" + ns + "}:"
	require.NoError(t, c.HSet(ctx, base+"st", "bad-state", "1 1 nan 10 0 100 0 1000 1000 0 0 0 0 0 0 0").Err())
	require.NoError(t, c.HSet(ctx, base+"cfg", "bad-cfg", "not a rollout").Err())
	require.NoError(t, c.HSet(ctx, base+"st", "orphan", "1 1 5 10 0 100 0 1000 1000 0 0 0 0 0 0 0").Err())
	window := t0.UnixNano() / int64(time.Minute)
	require.NoError(t, c.Set(ctx, fmt.Sprintf("%sseen:%d", base, window), "not a hyperloglog", 0).Err())
	require.NoError(t, c.HIncrBy(ctx, base+"meta", "ver", 1).Err())

	// A node that never knew them skips what does not decode.
	b := newNode(t, newRedisStore(t, fleet.Redis{Client: c, Name: ns}), clk, Config{PopulationWindow: time.Minute})
	_, err := b.Status(ctx, "bad-state")
	assert.ErrorIs(t, err, ErrCorrupt)
	_, err = b.Status(ctx, "bad-cfg")
	assert.ErrorIs(t, err, ErrCorrupt)
	assert.ErrorIs(t, b.Pause(ctx, "bad-state", By{}), ErrCorrupt)
	assert.ErrorIs(t, b.Abort(ctx, "bad-cfg", By{}), ErrCorrupt)
	_, err = b.Start(ctx, ro("bad-cfg"))
	assert.ErrorIs(t, err, ErrCorrupt)
	due(t, b, "someone", 0)
	for sec := 1; sec <= 10; sec++ {
		advance(t, b, t0.Add(time.Duration(sec)*time.Second))
	}
	assert.Equal(t, Done, mustStatus(t, b, "good").Phase, "the good rollout is unaffected")
	list, err := b.Rollouts(ctx)
	require.NoError(t, err)
	var names []string
	for _, st := range list {
		names = append(names, st.Rollout.ID)
	}
	assert.Equal(t, []string{"good"}, names, "the undecodable ones are skipped")
	assert.Equal(t, []Notice{{RolloutID: "good", Scope: "tag:good", Epoch: good.Rollout.Epoch}}, due(t, b, "someone", 0))

	// The node that started them notices its unfinished rollouts are
	// unreadable and re-registers what it knew: the damaged state is
	// replaced (and held for the grace); a foreign rollout record under
	// the ID is left alone.
	due(t, a, "someone", 0)
	advance(t, a, t0.Add(11*time.Second))
	st := mustStatus(t, a, "bad-state")
	assert.Equal(t, damaged.Rollout.Epoch, st.Rollout.Epoch)
	assert.Equal(t, Running, st.Phase)
	assert.Equal(t, t0.Add(13*time.Second), st.HoldUntil)
	_, err = a.Status(ctx, "bad-cfg")
	assert.ErrorIs(t, err, ErrCorrupt)
	advance(t, a, t0.Add(13*time.Second))
	assert.Zero(t, mustStatus(t, a, "bad-state").Released, "held for the grace")
	advance(t, a, t0.Add(14*time.Second))
	advance(t, a, t0.Add(15*time.Second))
	assert.Equal(t, 2, mustStatus(t, a, "bad-state").Released, "it runs again")
}

// TestDurabilityAbortSurvivesRestartWithStaleNode: node A aborts a rollout;
// node B, whose view is older, still saw it running. Redis is killed and
// restarted empty before B reads again, and B re-registers first: as
// running, with the count it knew. The re-registration holds the rollout
// for the grace (WithRestoreGrace), in which A, which knows the abort,
// re-registers too, and the store keeps the most final state. No client,
// polling either node throughout, is told of a cohort that was not
// released before the abort. The second order, A first, must hold as well.
func TestDurabilityAbortSurvivesRestartWithStaleNode(t *testing.T) {
	for _, staleFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("stale node first=%v", staleFirst), func(t *testing.T) {
			ctx := context.Background()
			s := redistest.Start(t)
			ns := uniqueNS()
			clk := newVClock(t0)
			mk := func(name string) *Coordinator {
				// A short breaker: the test retries in real time, and the
				// breaker's open period is real time. A TTL of an hour: a
				// node's view changes only at its own advances and
				// actions, so B's stays stale until it advances.
				st := newRedisStore(t, fleet.Redis{Client: s.Client(t), Name: ns, BreakerFailures: 3, BreakerOpen: 20 * time.Millisecond})
				return newNode(t, st, clk, Config{Node: name, CacheTTL: time.Hour})
			}
			a, b := mk("a"), mk("b")
			require.Equal(t, 3*time.Second+20*time.Millisecond, b.cfg.grace, "the default grace: three advance intervals and the breaker's open period")
			r := Rollout{ID: "r", Scope: "s", Cohorts: 20, Rate: 100, Clients: 2000, Coverage: 0.1, By: "a"}
			mustStart(t, a, r) // one cohort a second
			const clients = 2000
			told := make([]int, clients) // notices per client
			applied := make([]uint64, clients)
			poll := func() {
				t.Helper()
				for i := range clients {
					n := []*Coordinator{a, b}[i%2]
					got, err := n.AppendDue(ctx, nil, fmt.Sprintf("client-%d", i), applied[i])
					require.NoError(t, err, "Due answers from the last state while Redis is away")
					for _, x := range got {
						told[i]++
						applied[i] = x.Epoch
					}
				}
			}
			// advanceUntilOK retries an advance at one virtual time while
			// Redis comes back (real time: reconnects, the breaker).
			advanceUntilOK := func(n *Coordinator, at time.Time) {
				t.Helper()
				require.Eventually(t, func() bool { return advanceAt(n, at) == nil }, 10*time.Second, 10*time.Millisecond,
					"%s could not advance", n.Node())
			}
			for sec := 1; sec <= 5; sec++ {
				at := clk.Add(time.Second)
				advance(t, a, at)
				advance(t, b, at)
				poll()
			}
			require.Equal(t, 5, mustStatus(t, b, "r").Released)

			clk.Add(500 * time.Millisecond)
			require.NoError(t, a.Abort(ctx, "r", By{}))
			released := mustStatus(t, a, "r").Released // the cohorts released before the abort
			require.Equal(t, 5, released)
			s.Kill(t) // before B reads again: B's view still has r running
			poll()
			assert.Error(t, advanceAt(b, clk.Add(500*time.Millisecond)), "Redis is down")
			s.Restart(t) // empty
			_, err := s.Client(t).Get(ctx, "herdcap:{inv:"+ns+"}:meta").Result()
			require.ErrorIs(t, err, redis.Nil, "the restarted Redis must be empty, or the test proves nothing")

			first, second := a, b
			if staleFirst {
				first, second = b, a
			}
			advanceUntilOK(first, clk.Add(time.Second)) // re-registers what it knows
			st := mustStatus(t, first, "r")
			if staleFirst {
				require.Equal(t, Running, st.Phase, "the stale node re-registered it as it knew it")
				assert.Equal(t, clk.Now().Add(b.cfg.grace), st.HoldUntil)
			} else {
				require.Equal(t, Aborted, st.Phase)
			}
			// The first node advances alone for most of the grace: two more
			// cohorts' worth of running time.
			for range 2 {
				advance(t, first, clk.Add(time.Second))
				poll()
			}
			advanceUntilOK(second, clk.Add(500*time.Millisecond))
			for range 30 {
				at := clk.Add(time.Second)
				advance(t, a, at)
				advance(t, b, at)
				poll()
			}
			st = mustStatus(t, b, "r")
			assert.Equal(t, Aborted, st.Phase, "the abort survived")
			assert.Equal(t, released, st.Released, "nothing released after the abort")
			for i := range clients {
				id := fmt.Sprintf("client-%d", i)
				want := 0
				if limiter.Cohort(r.ID, id, r.Cohorts) < released {
					want = 1
				}
				require.Equal(t, want, told[i], "client %s, cohort %d, %d released before the abort", id, limiter.Cohort(r.ID, id, r.Cohorts), released)
			}
		})
	}
}
