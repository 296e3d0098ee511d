package fleet

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// leaseOf returns key's lease on b (creating an empty one if it has none).
func leaseOf(b *Leased, key string) *lease {
	return &b.keys.Get(bucketkey.Local(key), time.Now(), func(l *lease) {
		l.rkey = b.s.redisKey(key)
	}).V
}

// leaseState returns key's unspent tokens and whether its lease is settled.
func leaseState(b *Leased, key string) (tokens int, settled bool) {
	l := leaseOf(b, key)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tokens, l.settled()
}

// TestLeasedWaitsAtMostOneTimeout: a request that waits for a refill under
// way and then, the refill having failed, would make its own round trip,
// spends one Redis.Timeout in all, not one for each.
func TestLeasedWaitsAtMostOneTimeout(t *testing.T) {
	s := redistest.Start(t)
	// A long timeout, so that one timeout (600 ms) and two (1.2 s less the
	// pause below) are far apart compared with the scheduling noise of a
	// loaded -race machine (see slack).
	const timeout = 600 * time.Millisecond
	b, err := NewLeased(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: timeout, BreakerFailures: 1000, BreakerOpen: time.Hour},
		limiter.PerSecond(1000, 1000), LeasedConfig{Config: failOpen, LeaseAhead: time.Second, MaxLease: 1})
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	d, err := b.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.Eventually(t, func() bool {
		n, settled := leaseState(b, "k")
		return n == 1 && settled
	}, 10*time.Second, time.Millisecond, "the lease holds its one token")

	s.Pause(t)
	defer s.Resume(t)
	// Spends the lease's token and starts a refill, which hangs.
	d, err = b.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.Equal(t, limiter.ViaLease, d.Via)
	// Let the refill get on the wire first, so that it fails before this
	// request's own time limit ends: then the request has a round trip of
	// its own to make, in what is left of its time limit.
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	d, err = b.AllowN(ctx, "k", 1)
	el := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaFallback, d.Via)
	assert.True(t, d.Allowed, "FailOpen")
	t.Logf("waited %v with a timeout of %v", el, timeout)
	assert.Greater(t, el, timeout/2, "it waited for the refill under way")
	assert.Less(t, el, timeout+slack, "and then spent no second timeout on its own round trip")
}

// TestLeasedRefusedLargeRequests: a request for more than the lease size that
// the bucket cannot grant takes nothing, leaves the lease as it was, and is
// remembered, so that repeating it makes no round trip until Redis said it
// could succeed. The refusals are told successive times (the node's denial
// tail): the first the bucket's own wait, each next one 40 tokens later.
func TestLeasedRefusedLargeRequests(t *testing.T) {
	name := uniqueName()
	lim := limiter.PerSecond(10, 100)
	clk := fakeClockAt(t0)
	cfg := Config{Config: limiter.Config{Clock: clk}, Failure: FailOpen}
	strict := newStrictForTest(t, srv.Client(t), lim, Redis{Name: name}, cfg)
	c := srv.Client(t)
	b := newLeasedForTest(t, c, lim, Redis{Name: name}, LeasedConfig{Config: cfg, LeaseAhead: time.Second, MaxLease: 5})
	L := b.maxLeaseFor(lim)
	require.Equal(t, 5, L)
	ctx := context.Background()
	d, err := strict.AllowN(ctx, "k", 70)
	require.NoError(t, err)
	require.True(t, d.Allowed, "30 left")
	require.NoError(t, c.Ping(ctx).Err()) // connect first: a new connection's HELLO would count

	h := &countingHook{}
	c.AddHook(h)
	for i := range 10 {
		d, err := b.AllowN(ctx, "k", 40)
		require.NoError(t, err)
		assert.False(t, d.Allowed, "request %d", i)
		assert.Equal(t, time.Second+time.Duration(i)*4*time.Second, d.RetryAfter, "10 more tokens at 10/s, then 40 tokens apart")
		assert.Equal(t, 30, d.Remaining)
		n, _ := leaseState(b, "k")
		assert.LessOrEqual(t, n, L, "a refusal never grows the lease beyond L")
	}
	assert.Equal(t, int64(1), h.cmds.Load(), "one round trip; the refusals after it are remembered")
	d, err = strict.AllowN(ctx, "k", 0)
	require.NoError(t, err)
	assert.Equal(t, 30, d.Remaining, "the refusals took nothing")

	// A smaller request the bucket can serve is not refused by that memory.
	d, err = b.AllowN(ctx, "k", 25)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	assert.Equal(t, 25, d.Taken)
	// And once Redis's wait has passed, the large one is asked again.
	before := h.cmds.Load()
	clk.Set(t0.Add(4 * time.Second))
	d, err = b.AllowN(ctx, "k", 40)
	require.NoError(t, err)
	assert.True(t, d.Allowed, "5 left at t0, 40 more in 4 s")
	assert.Greater(t, h.cmds.Load(), before)
	require.Eventually(t, func() bool { _, settled := leaseState(b, "k"); return settled }, 10*time.Second, time.Millisecond)
	n, _ := leaseState(b, "k")
	assert.LessOrEqual(t, n, L)
}

// TestLeasedMegabyteKeysCostBoundedMemory: a lease keeps only the bounded
// forms of its key (bucketkey), never the key as given.
func TestLeasedMegabyteKeysCostBoundedMemory(t *testing.T) {
	b := newLeasedForTest(t, srv.Client(t), limiter.PerSecond(1, 1), Redis{}, LeasedConfig{Config: Config{
		Config: limiter.Config{Clock: fakeClockAt(t0)}, Failure: FailOpen}})
	ctx := context.Background()
	const keys, size = 64, 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keys {
		k := strings.Repeat("x", size) + strconv.Itoa(i) // garbage once the call returns, unless kept
		d, err := b.AllowN(ctx, k, 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	require.Equal(t, keys, b.keys.Len())
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d leases of 1 MiB keys: heap grew by %d bytes", keys, grown)
	// The keys total 64 MiB; their leases, a few hundred bytes each. 8 MiB
	// leaves room for whatever else the runtime and go-redis allocate.
	assert.Less(t, grown, int64(keys*size/8))
}

// lockProbe checks, from inside user code (a clock, a logger), that its
// caller holds none of a Leased's locks: it takes them all from another
// goroutine. That finishes at once unless a lock is held for as long as the
// user code runs, which no lock of Leased ever is (none is held across I/O
// or a wait); 2 s is far beyond any scheduling delay, even on a loaded
// -race machine.
type lockProbe struct {
	b          atomic.Pointer[Leased]
	calls      atomic.Int64
	violations atomic.Int64
	timers     atomic.Int64 // AfterFunc calls
}

func (p *lockProbe) check() {
	b := p.b.Load()
	if b == nil || p.violations.Load() > 0 {
		return // one violation is enough to fail; don't wait 2 s for each
	}
	p.calls.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.mu.Lock()
		//lint:ignore SA2001 taking the lock is the probe
		b.mu.Unlock()
		b.keys.Each(func(s *keymap.Slot[lease]) {
			s.V.mu.Lock()
			//lint:ignore SA2001 taking the lock is the probe
			s.V.mu.Unlock()
		})
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		p.violations.Add(1) // the probe finishes once the caller lets go
	}
}

type probeClock struct {
	p   *lockProbe
	now atomic.Int64
}

func (c *probeClock) Now() time.Time {
	c.p.check()
	return time.Unix(0, c.now.Load())
}

// AfterFunc runs f on the real clock, after a check like Now's: a Leased
// sets its refill timers through it.
func (c *probeClock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	c.p.check()
	c.p.timers.Add(1)
	return time.AfterFunc(d, f)
}

type probeHandler struct{ p *lockProbe }

func (h probeHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h probeHandler) Handle(context.Context, slog.Record) error { h.p.check(); return nil }
func (h probeHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h probeHandler) WithGroup(string) slog.Handler             { return h }

// TestLeasedCallsNoUserCodeUnderLocks drives refills (and scheduled ones,
// whose timers the clock sets), evictions with tokens to give back, a Redis
// outage (logged) and Close, with a clock and a logger that check no lock
// of the Leased is held while they run.
func TestLeasedCallsNoUserCodeUnderLocks(t *testing.T) {
	s := redistest.Start(t)
	p := &lockProbe{}
	clk := &probeClock{p: p}
	clk.now.Store(t0.UnixNano())
	b, err := NewLeased(Redis{Client: s.Client(t), Name: uniqueName(), Timeout: time.Second, BreakerFailures: 1000, BreakerOpen: time.Hour},
		limiter.PerSecond(1000, 1000), LeasedConfig{Config: Config{Config: limiter.Config{Clock: clk, MaxKeys: 4},
			Failure: FailOpen, Logger: slog.New(probeHandler{p})}})
	require.NoError(t, err)
	p.b.Store(b)
	ctx := context.Background()
	key := func(i int) string { return "k" + strconv.Itoa(i) }
	for i := range 40 {
		clk.now.Add(int64(time.Millisecond))
		_, err := b.AllowN(ctx, key(i%8), 1)
		require.NoError(t, err)
		_, err = b.Take(ctx, limiter.Request{Key: key(i % 8), N: 3, UpTo: true})
		require.NoError(t, err)
		_, err = b.Take(ctx, limiter.Request{Key: key(i % 8), N: 2, Limit: limiter.PerSecond(500, 500)})
		require.NoError(t, err)
		// A key whose bucket runs short: its refills are scheduled on the
		// clock.
		_, err = b.Take(ctx, limiter.Request{Key: "short", N: 1, Limit: limiter.PerSecond(1, 2)})
		require.NoError(t, err)
	}
	assert.Positive(t, p.timers.Load(), "refills were scheduled through the clock")
	s.Kill(t)
	for i := range 40 {
		clk.now.Add(int64(time.Millisecond))
		_, err := b.AllowN(ctx, key(8+i%8), 1) // new keys evict leases holding tokens
		require.NoError(t, err)
	}
	require.NoError(t, b.Close())
	logs := p.calls.Load()
	t.Logf("%d probes from the clock and the logger", logs)
	assert.Greater(t, logs, int64(80), "the probes ran")
	assert.Zero(t, p.violations.Load(), "user code ran while a lock was held")
}
