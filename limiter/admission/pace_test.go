package admission

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// spare is a limiter.Headroom the test sets, counting its calls.
type spare struct {
	bits     atomic.Uint64
	calls    atomic.Int64
	inFlight atomic.Int32
	overlap  atomic.Bool // two calls were in flight at once
	panics   atomic.Bool
}

func newSpare(v float64) *spare {
	s := &spare{}
	s.Set(v)
	return s
}

func (s *spare) Set(v float64) { s.bits.Store(math.Float64bits(v)) }

func (s *spare) Spare() float64 {
	if s.inFlight.Add(1) > 1 {
		s.overlap.Store(true)
	}
	defer s.inFlight.Add(-1)
	s.calls.Add(1)
	if s.panics.Load() {
		panic("headroom exploded")
	}
	return math.Float64frombits(s.bits.Load())
}

var _ limiter.Headroom = (*spare)(nil)

// TestAdmissionPacedByHeadroom: a gate of 1,000/s under a headroom of 100
// spare calls/s (one call per session) books slots 10 ms apart; when the
// headroom rises the gate goes back to its own 1 ms, never faster; slots
// booked meanwhile keep their times. Memory, Redis and a cluster alike.
func TestAdmissionPacedByHeadroom(t *testing.T) {
	forEachStore(t, func(t *testing.T, s store) {
		h := newSpare(100)
		a := s.make(t, limiter.PerSecond(1000, 1), Config{Headroom: h})
		first := a.at(t, "c0", t0, "")
		require.True(t, first.Admitted, "the burst of one, scaled down to one")
		assert.Equal(t, limiter.PerSecond(100, 1), first.Limit, "the limit applied is the pace")
		var slow []Decision
		for k := 1; k <= 20; k++ {
			d := a.at(t, fmt.Sprint("c", k), t0, "")
			require.True(t, d.Booked, "c%d", k)
			// Slot k is k × 10 ms ahead, plus a jitter inside the 10 ms gap,
			// rounded up to the ms.
			slot := time.Duration(k) * 10 * time.Millisecond
			assert.GreaterOrEqual(t, d.RetryAfter, slot, "c%d", k)
			assert.Less(t, d.RetryAfter, slot+11*time.Millisecond, "c%d", k)
			slow = append(slow, d)
		}

		// The headroom rises far above the gate's limit: the next reading
		// (100 ms of clock later) restores the configured 1,000/s, no more.
		h.Set(1e9)
		at := t0.Add(150 * time.Millisecond)
		early := a.at(t, "c20", at, "")
		assert.Equal(t, limiter.PerSecond(1000, 1), early.Limit, "never above the configured limit")
		// A slot booked at the slow pace keeps its time (its jitter is now
		// drawn inside the faster pace's 1 ms gap, so RetryAt can only come
		// sooner, never before the slot).
		assert.True(t, early.Booked)
		assert.False(t, early.RetryAt.Before(t0.Add(200*time.Millisecond)), "%v", early.RetryAt.Sub(t0))
		assert.False(t, early.RetryAt.After(slow[19].RetryAt))
		// The bucket repays the slow pace's debt at the new rate (so the
		// clients booked before come back alongside new ones: see the
		// package doc): by 150 ms it is full again, and new slots come
		// 1 ms apart.
		require.True(t, a.at(t, "n0", at, "").Admitted)
		for k := 1; k <= 10; k++ {
			d := a.at(t, fmt.Sprint("n", k), at, "")
			require.True(t, d.Booked, "n%d", k)
			slot := time.Duration(k) * time.Millisecond
			assert.GreaterOrEqual(t, d.RetryAfter, slot, "n%d", k)
			assert.Less(t, d.RetryAfter, slot+2*time.Millisecond, "n%d", k)
		}
	})
}

// TestAdmissionHeadroomReadings: bad readings, no headroom, +Inf and a
// panicking Headroom.
func TestAdmissionHeadroomReadings(t *testing.T) {
	lim := limiter.PerSecond(1000, 50)
	for _, tc := range []struct {
		name  string
		spare float64
		want  limiter.Limit
	}{
		{"+Inf is no cap", math.Inf(1), lim},
		{"above the limit", 1e6, lim},
		{"at the limit", 2000, lim},
		{"below: rate and burst scaled", 250, limiter.PerSecond(125, 7)}, // 2 calls per session; 50 × 1/8 = 6.25 → 7
		{"0: two sessions per horizon", 0, limiter.PerSecond(2.0/60, 1)},
		{"negative is 0", -3, limiter.PerSecond(2.0/60, 1)},
		{"NaN is 0", math.NaN(), limiter.PerSecond(2.0/60, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newMemoryForTest(t, lim, Config{Headroom: newSpare(tc.spare), CallsPerSession: 2})
			d := a.at(t, "x", t0, "")
			assert.Equal(t, tc.want, d.Limit)
			assert.Equal(t, lim, a.Limit(), "Gate.Limit is the configured limit")
		})
	}

	t.Run("no headroom defers with a finite time", func(t *testing.T) {
		a := newMemoryForTest(t, limiter.PerSecond(1000, 1), Config{Headroom: newSpare(0)})
		require.True(t, a.at(t, "a", t0, "").Admitted)
		b := a.at(t, "b", t0, "")
		assert.True(t, b.Booked)
		assert.GreaterOrEqual(t, b.RetryAfter, 30*time.Second, "two sessions per horizon")
		assert.LessOrEqual(t, b.RetryAfter, 36*time.Second, "plus a jitter of at most half the slot grace")
		var deferred Decision
		for i := range 3 {
			if d := a.at(t, fmt.Sprint("c", i), t0, ""); !d.Booked {
				deferred = d
				break
			}
		}
		require.NotZero(t, deferred.RetryAfter, "deferred")
		assert.GreaterOrEqual(t, deferred.RetryAfter, 30*time.Second)
		assert.LessOrEqual(t, deferred.RetryAfter, 2*time.Minute, "two horizons at most")
	})

	t.Run("panic", func(t *testing.T) {
		var buf logtest.Buffer
		h := newSpare(100)
		h.panics.Store(true)
		cfg := Config{Headroom: h}
		withClock(&cfg)
		g, err := NewShared(fleet.Redis{Client: srv.Client(t), Name: uniqueName(), Timeout: 2 * time.Second}, lim,
			SharedConfig{Config: cfg, Failure: fleet.FailOpen, Logger: logtest.NewLogger(&buf)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = g.Close() })
		a := subject{g, cfg.Clock.(*fakeclock.Clock)}
		for i := range 5 {
			d := a.at(t, fmt.Sprint("p", i), t0.Add(time.Duration(i)*time.Second), "")
			assert.Equal(t, lim, d.Limit, "a panicking headroom leaves the configured limit")
		}
		h.panics.Store(false)
		d := a.at(t, "ok", t0.Add(10*time.Second), "")
		assert.Equal(t, limiter.PerSecond(100, 5), d.Limit)
		assert.Equal(t, uint64(5), g.room.Panics(), "construction and the Admits at 1-4 s (the one at 0 s used construction's reading)")
		assert.Contains(t, buf.String(), "admission headroom panicked")
		assert.Contains(t, buf.String(), "headroom exploded")
		assert.Contains(t, buf.String(), "admission headroom answers again")
	})
}

// TestAdmissionHeadroomReadEvery100ms: Spare is read at construction and
// then at most once per 100 ms of the gate's clock, however many Admits.
func TestAdmissionHeadroomReadEvery100ms(t *testing.T) {
	h := newSpare(1e6)
	a := newMemoryForTest(t, limiter.PerSecond(1e6, 1e6), Config{Headroom: h})
	require.Equal(t, int64(1), h.calls.Load(), "read once at construction")
	for i := range 1000 {
		a.at(t, fmt.Sprint(i), t0.Add(time.Duration(i)*99*time.Microsecond), "")
	}
	assert.Equal(t, int64(1), h.calls.Load(), "99 ms of Admits: no new reading")
	a.at(t, "x", t0.Add(100*time.Millisecond), "")
	assert.Equal(t, int64(2), h.calls.Load())
	a.at(t, "y", t0.Add(150*time.Millisecond), "")
	assert.Equal(t, int64(2), h.calls.Load())
	a.at(t, "z", t0.Add(50*time.Millisecond), "")
	assert.Equal(t, int64(3), h.calls.Load(), "a clock set back reads again")
}

// TestAdmissionHeadroomConcurrent: concurrent Admits on a moving clock
// never call Spare twice at once, and never admit above the limit.
func TestAdmissionHeadroomConcurrent(t *testing.T) {
	h := newSpare(500)
	a := newMemoryForTest(t, limiter.PerSecond(1000, 10), Config{Headroom: h})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				a.clk.Add(time.Millisecond)
				if i == 250 {
					h.Set(float64(w * 300))
				}
				d, err := a.Admit(context.Background(), fmt.Sprint(w, "-", i), "")
				assert.NoError(t, err)
				assert.LessOrEqual(t, d.Limit.PerSecond(), 1000.0)
			}
		})
	}
	wg.Wait()
	assert.False(t, h.overlap.Load(), "Spare was called twice at once")
	assert.Greater(t, h.calls.Load(), int64(10), "4 s of clock: read again and again")
}

func TestAdmissionPacedAllocs(t *testing.T) {
	a := newMemoryForTest(t, limiter.PerSecond(1e9, 1e6), Config{Headroom: newSpare(1e6)})
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		a.clk.Add(time.Millisecond) // a reading every 100 Admits
		_, _ = a.Admit(ctx, "client", "")
	})
	assert.Zero(t, allocs)
}

func TestAdmissionCallsPerSessionChecked(t *testing.T) {
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1} {
		_, err := New(limiter.PerSecond(10, 1), Config{Headroom: newSpare(1), CallsPerSession: v})
		assert.ErrorIs(t, err, limiter.ErrInvalidConfig, "%v", v)
		assert.ErrorContains(t, err, "Config.CallsPerSession", "%v", v)
	}
	g, err := New(limiter.PerSecond(10, 1), Config{Headroom: newSpare(1), CallsPerSession: 0.5})
	require.NoError(t, err)
	require.NoError(t, g.Close())
}
