package admission

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/limiter/retry"
)

// The reconnect-storm target, driven in virtual time on both stores: 10,000
// clients disconnected at one instant come back to a gate of 500 sessions
// per second, each exactly at the RetryAt it was told (which already holds
// the gate's jitter).

const (
	herdClients = 10_000
	herdRate    = 500
	herdBurst   = 50
)

// herdEvent is one client's next attempt.
type herdEvent struct {
	at     time.Time
	seq    int // insertion order: ties go first come, first served
	client int
}

type herdQueue []herdEvent

func (q herdQueue) Len() int { return len(q) }
func (q herdQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q herdQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *herdQueue) Push(x any)   { *q = append(*q, x.(herdEvent)) }
func (q *herdQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// herdResult is what a storm did, in offsets from its start.
type herdResult struct {
	arrivals []time.Duration // every attempt that reached the gate, in time order
	admitted []time.Duration // every admission, in time order
	attempts []int           // per client
	told     []time.Duration // per client: the first RetryAt it was told (0 if admitted at once)
	booked   []bool          // per client: every refusal was Booked
}

// runHerd replays n clients that all arrive at start, each returning at the
// RetryAt it is told, until every client is in.
func runHerd(t *testing.T, a subject, n int, start time.Time) herdResult {
	t.Helper()
	return runHerdN(t, a, n, start, 10)
}

// runHerdN is runHerd allowing each client up to maxAttempts attempts.
func runHerdN(t *testing.T, a subject, n int, start time.Time, maxAttempts int) herdResult {
	t.Helper()
	return runHerdWait(t, a, n, start, maxAttempts, nil)
}

// runHerdWait is runHerdN with each refused client waiting wait(attempt,
// RetryAfter) (attempt counted from 0) instead of exactly RetryAfter.
func runHerdWait(t *testing.T, a subject, n int, start time.Time, maxAttempts int, wait func(int, time.Duration) time.Duration) herdResult {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%05d", i)
	}
	r := herdResult{attempts: make([]int, n), told: make([]time.Duration, n), booked: make([]bool, n)}
	q := make(herdQueue, 0, n)
	seq := 0
	for i := range n {
		q = append(q, herdEvent{at: start, seq: seq, client: i})
		seq++
		r.booked[i] = true
	}
	heap.Init(&q)
	ctx := context.Background()
	for q.Len() > 0 {
		ev := heap.Pop(&q).(herdEvent)
		off := ev.at.Sub(start)
		r.arrivals = append(r.arrivals, off)
		r.attempts[ev.client]++
		// Plain checks in the loop: testify per event would dominate the
		// run time under -race.
		if r.attempts[ev.client] > maxAttempts {
			t.Fatalf("client %d is going round in circles", ev.client)
		}
		a.clk.Set(ev.at)
		d, err := a.Admit(ctx, ids[ev.client], "")
		if err != nil {
			t.Fatalf("client %d at %v: %v", ev.client, off, err)
		}
		if d.Admitted {
			r.admitted = append(r.admitted, off)
			continue
		}
		if d.RetryAfter <= 0 || !d.RetryAt.Equal(ev.at.Add(d.RetryAfter)) {
			t.Fatalf("client %d at %v: refused with RetryAfter %v, RetryAt %v", ev.client, off, d.RetryAfter, d.RetryAt)
		}
		if r.told[ev.client] == 0 {
			r.told[ev.client] = d.RetryAt.Sub(start)
		}
		r.booked[ev.client] = r.booked[ev.client] && d.Booked
		at := d.RetryAt
		if wait != nil {
			w := wait(r.attempts[ev.client]-1, d.RetryAfter)
			if w < d.RetryAfter {
				t.Fatalf("client %d at %v: told %v, came back after %v", ev.client, off, d.RetryAfter, w)
			}
			at = ev.at.Add(w)
		}
		heap.Push(&q, herdEvent{at: at, seq: seq, client: ev.client})
		seq++
	}
	return r
}

// maxWindow returns the most events in any window [s, s+w) with s > after,
// and where it starts. times must be sorted. The maximum over all such
// windows is reached by one starting at an event (or just after `after`).
func maxWindow(times []time.Duration, w, after time.Duration) (int, time.Duration) {
	i0 := 0
	for i0 < len(times) && times[i0] <= after {
		i0++
	}
	best, at := 0, time.Duration(0)
	j := i0
	for i := i0; i < len(times); i++ {
		for j < len(times) && times[j] < times[i]+w {
			j++
		}
		if j-i > best {
			best, at = j-i, times[i]
		}
	}
	return best, at
}

// checkHerd asserts the storm target on r.
func checkHerd(t *testing.T, r herdResult) {
	t.Helper()
	n := len(r.attempts)
	require.Len(t, r.admitted, n, "every client is eventually admitted, once")
	require.True(t, slices.IsSorted(r.arrivals))

	// Returns are flat: every 1-second window of arrivals that does not
	// hold the herd's own instant (t = 0) holds at most 1.1 × the rate.
	// By construction it holds at most rate+1 (one slot per interval, each
	// return inside its own interval), so the 10% is room, not tolerance.
	arr, at := maxWindow(r.arrivals, time.Second, 0)
	t.Logf("busiest 1 s window of returning arrivals: %d (starts at %v); limit %d", arr, at, herdRate*11/10)
	assert.LessOrEqual(t, arr, herdRate*11/10)
	assert.LessOrEqual(t, arr, herdRate+1, "exact slots: at most one return per slot interval")
	adm, at := maxWindow(r.admitted, time.Second, 0)
	t.Logf("busiest 1 s window of admissions after the burst: %d (starts at %v)", adm, at)
	assert.LessOrEqual(t, adm, herdRate+1)

	// Nobody is refused at its slot: the herd's instant plus one return
	// each, and every refusal came with a slot.
	twice := 0
	for i, k := range r.attempts {
		if k > 2 || !r.booked[i] {
			t.Fatalf("client %d: %d attempts, every refusal booked: %v", i, k, r.booked[i])
		}
		if k == 2 {
			twice++
		}
	}
	assert.Equal(t, n-herdBurst, twice, "all but the burst came back exactly once")
	assert.Len(t, r.arrivals, 2*n-herdBurst)

	// Total time: the last slot is (n - burst)/rate after the storm, and
	// its client returns within one slot interval (the jitter window) plus
	// the millisecond RetryAfter is rounded up to. So the storm drains in
	// 10,000/500 s less the burst's 0.1 s: [19.9 s, 19.9 s + 3 ms].
	last := r.admitted[len(r.admitted)-1]
	lo := time.Duration(n-herdBurst) * time.Second / herdRate
	t.Logf("last admission at %v (slots end at %v; n/rate = %v)", last, lo, time.Duration(n)*time.Second/herdRate)
	assert.GreaterOrEqual(t, last, lo)
	assert.LessOrEqual(t, last, lo+time.Second/herdRate+time.Millisecond)
}

func TestAdmissionHerdMemory(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(herdRate, herdBurst), Config{})
	r := runHerd(t, a, herdClients, t0)
	checkHerd(t, r)
	assert.Zero(t, a.Stats().Slots, "every booked slot was used and dropped")
	assert.Zero(t, a.Stats().LossyEvictions)
}

// TestAdmissionHerdRedis runs the storm on a real Redis and checks that it
// books the very same slots as the memory store: the two stores do the same
// arithmetic.
func TestAdmissionHerdRedis(t *testing.T) {
	mem := newMemoryForTest(t, limiter.PerSecond(herdRate, herdBurst), Config{})
	want := runHerd(t, mem, herdClients, t0)

	a := newSharedForTest(t, srv.Client(t), limiter.PerSecond(herdRate, herdBurst), fleet.Redis{}, Config{})
	start := time.Now()
	got := runHerd(t, a, herdClients, t0)
	t.Logf("%d Redis admissions in %v", len(got.arrivals), time.Since(start))
	checkHerd(t, got)
	assert.Equal(t, want.told, got.told, "memory and Redis book the same slots")
	assert.Equal(t, want.admitted, got.admitted)
}

// TestCohortWindowsAreNotFlat backs the package doc's design note: spreading
// the same herd by hash alone (each client at a time drawn from its cohort
// over the 20 s the herd needs) is flat only on average, and breaks the
// 1.1 × rate bound in some sliding one-second window for most salts. The
// inputs are fixed, so the outcome is deterministic; with a uniform hash
// each salt breaks the bound with probability ≈ 0.8.
func TestCohortWindowsAreNotFlat(t *testing.T) {
	const ms = herdClients / herdRate * 1000
	broken, worst := 0, 0
	for s := range 10 {
		salt := fmt.Sprintf("storm-%d", s)
		times := make([]time.Duration, herdClients)
		for i := range times {
			times[i] = time.Duration(limiter.Cohort(salt, fmt.Sprintf("client-%05d", i), ms)) * time.Millisecond
		}
		slices.Sort(times)
		n, _ := maxWindow(times, time.Second, -1)
		worst = max(worst, n)
		if n > herdRate*11/10 {
			broken++
		}
	}
	t.Logf("hash placement: %d of 10 storms exceed %d in a 1 s window (worst %d); slots: at most %d", broken, herdRate*11/10, worst, herdRate+1)
	assert.GreaterOrEqual(t, broken, 5)
}

// TestAdmissionHerdWholeSeconds replays the storm as it looks behind an
// HTTP transport: RetryAfter is sent as whole seconds (Retry-After: n,
// rounded up), and each client waits with retry.Backoff.DelayHint, which adds its
// own jitter (10%, at most 1 s). Rounding bunches each second's slots at
// the next whole second, and the client's jitter spreads them again. Every
// client still gets in on its first return (the 10 s slot grace covers the
// rounding and the jitter), and the storm still drains at the budget's rate.
func TestAdmissionHerdWholeSeconds(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(herdRate, herdBurst), Config{})
	bo := retry.Backoff{Base: 100 * time.Millisecond, Cap: 30 * time.Second, Rand: seeded(3).Float64}
	ctx := context.Background()
	type ret struct {
		at time.Duration
		id string
	}
	var returns []ret
	for i := range herdClients {
		id := fmt.Sprintf("client-%05d", i)
		a.clk.Set(t0)
		d, err := a.Admit(ctx, id, "")
		require.NoError(t, err)
		if !d.Admitted {
			// Retry-After: whole seconds, rounded up.
			hint := (d.RetryAfter + time.Second - 1) / time.Second * time.Second
			returns = append(returns, ret{bo.DelayHint(0, hint), id})
		}
	}
	slices.SortFunc(returns, func(x, y ret) int { return int(x.at - y.at) })
	var arrivals []time.Duration
	for _, r := range returns {
		a.clk.Set(t0.Add(r.at))
		d, err := a.Admit(ctx, r.id, "")
		require.NoError(t, err)
		if !d.Admitted {
			t.Fatalf("%s refused on its return at %v", r.id, r.at)
		}
		arrivals = append(arrivals, r.at)
	}
	n, at := maxWindow(arrivals, time.Second, 0)
	last := arrivals[len(arrivals)-1]
	t.Logf("busiest 1 s window of returns: %d (at %v); last return %v", n, at, last)
	// Each whole second's 500 slots come back spread at random over up to
	// a second of client jitter, so a window straddling two seconds draws
	// Binomial(500, 1-x) + Binomial(500, x) clients: mean 500, standard
	// deviation at most 16. Random client jitter brings back some of the
	// noise exact slots removed: over ten seeds the busiest window held
	// 521 to 546. The bound asserted here is 1.15 × rate (over 4.5
	// standard deviations; the seed is fixed, so the test is
	// deterministic); the exact 1.1 × bound holds for clients that honour
	// RetryAfter to the millisecond (TestAdmissionHerdMemory/Redis).
	assert.LessOrEqual(t, n, herdRate*115/100)
	assert.LessOrEqual(t, last, 22*time.Second, "20 s of slots, +1 s rounding, +1 s jitter")
}

// TestAdmissionHerdClientJitter replays the storm with clients that wait as
// the herdcap transports do when given an exact slot (the millisecond
// field of httpmw, gRPC pushback): retry.Backoff.DelaySlot, the slot plus at most
// its default SlotJitter (5 ms). Each return is late by under 5 ms, so a one-second
// window of returns holds at most the slots of 1.005 s (2.5 at 500/s)
// plus the one the gate's own jitter can move: rate + 4. For contrast, the
// same clients waiting with DelayHint (10% of the slot, up to 1 s, the
// jitter meant for whole-second hints) smear the late slots by up to a
// second and come within a few percent of the 1.1 × rate bound, which is
// why the transports do not use it for exact slots. The seeds are fixed, so
// both figures are deterministic.
func TestAdmissionHerdClientJitter(t *testing.T) {
	run := func(wait func(retry.Backoff) func(int, time.Duration) time.Duration) (herdResult, int) {
		a := newMemoryForTest(t, limiter.PerSecond(herdRate, herdBurst), Config{})
		bo := retry.Backoff{Base: 100 * time.Millisecond, Cap: 30 * time.Second, Rand: seeded(5).Float64}
		r := runHerdWait(t, a, herdClients, t0, 10, wait(bo))
		n, at := maxWindow(r.arrivals, time.Second, 0)
		t.Logf("busiest 1 s window of returns: %d (starts at %v); limit %d", n, at, herdRate*11/10)
		return r, n
	}
	r, slot := run(func(b retry.Backoff) func(int, time.Duration) time.Duration { return b.DelaySlot })
	checkHerdAdmitted(t, r)
	assert.LessOrEqual(t, slot, herdRate*11/10)
	assert.LessOrEqual(t, slot, herdRate+4, "a return at most 5 ms late: at most 3 more slots, and 1 for the gate's jitter")

	r, hint := run(func(b retry.Backoff) func(int, time.Duration) time.Duration { return b.DelayHint })
	checkHerdAdmitted(t, r)
	assert.Greater(t, hint, slot+10, "proportional jitter is visibly less flat")
}

// checkHerdAdmitted asserts that every client of r got in on its first
// return (a late return is admitted when it comes, so admissions are as
// flat as the returns, no flatter).
func checkHerdAdmitted(t *testing.T, r herdResult) {
	t.Helper()
	n := len(r.attempts)
	require.Len(t, r.admitted, n, "every client is eventually admitted, once")
	for i, k := range r.attempts {
		if k > 2 {
			t.Fatalf("client %d: %d attempts: refused at its slot", i, k)
		}
	}
}

// TestAdmissionHerdPastHorizon: a herd ten times the horizon. Only a
// horizon's worth of slots is ever booked; the rest are deferred over one
// horizon by cohort and come back until they get a slot. Admissions stay at
// the budget's rate and everyone gets in; the price of the bounded debt is
// extra (cheap) refusals at the gate.
func TestAdmissionHerdPastHorizon(t *testing.T) {
	const (
		n       = 2000
		rate    = 100
		horizon = 2 * time.Second
	)
	a := newMemoryForTest(t, limiter.PerSecond(rate, 1), Config{Horizon: horizon})
	r := runHerdN(t, a, n, t0, 200)
	require.Len(t, r.admitted, n, "everyone gets in")
	adm, _ := maxWindow(r.admitted, time.Second, 0)
	assert.LessOrEqual(t, adm, rate+1, "admissions never outrun the budget")
	for i, told := range r.told {
		if r.booked[i] && told > 0 {
			assert.LessOrEqual(t, told, horizon+time.Second/rate+time.Millisecond, "no slot past the horizon")
		}
	}
	last := r.admitted[len(r.admitted)-1]
	arr, _ := maxWindow(r.arrivals, time.Second, 0)
	mean := float64(len(r.arrivals)) / n
	t.Logf("%d clients, %d/s, horizon %v: last admission %v (n/rate = %v), %.1f attempts per client, busiest 1 s of arrivals %d",
		n, rate, horizon, last, time.Duration(n)*time.Second/rate, mean, arr)
	assert.LessOrEqual(t, last, time.Duration(n)*time.Second/rate+2*horizon, "drains at the budget's rate, give or take a horizon")
	// The cost, estimated: the deferred (1800, falling linearly to 0 over
	// 18 s) come back every 0.75 horizon (1.5 s) on average, which is
	// 900 × 18 / 1.5 = 10,800 refusals, 5.4 per client, plus the first
	// attempt and the return to the slot: ≈ 7.4 attempts per client.
	assert.InDelta(t, 7.4, mean, 1, "attempts per client")
}

// seeded returns a deterministic random source for client backoffs.
func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 42)) }
