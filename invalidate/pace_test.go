package invalidate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/pace"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// spare is a limiter.Headroom the test sets: spare origin calls per second.
type spare struct{ bits atomic.Uint64 }

func newSpare(v float64) *spare {
	s := &spare{}
	s.Set(v)
	return s
}

func (s *spare) Set(v float64)  { s.bits.Store(math.Float64bits(v)) }
func (s *spare) Spare() float64 { return math.Float64frombits(s.bits.Load()) }

var _ limiter.Headroom = (*spare)(nil)

// panicky is a Headroom that panics.
type panicky struct{}

func (panicky) Spare() float64 { panic("headroom exploded") }

// fastRollout is 10 cohorts of 1,000 clients at 1,000 clients per second:
// one cohort a second, done in 10 s when not paced.
func fastRollout(id string) Rollout {
	r := ro(id)
	r.Clients, r.Rate = 10000, 1000
	return r
}

// doneAt advances c every second from t0 until rollout id is finished (or
// limit has passed) and returns the running time it took.
func doneAt(t *testing.T, c *Coordinator, id string, limit time.Duration, at func(time.Duration)) time.Duration {
	t.Helper()
	var d time.Duration
	for d < limit {
		d += time.Second
		if at != nil {
			at(d)
		}
		advance(t, c, t0.Add(d))
		if mustStatus(t, c, id).Phase == Done {
			return d
		}
	}
	return d
}

// TestConformancePacedByHeadroom: a rollout releases at min(Rate, spare ÷
// CallsPerClient), on every store. The arithmetic is exact here (every
// interval and bank is a whole number of µs in a double), so the times are
// exact; the assertions are exact too, since a looser bound would hide a
// twin that drifted.
func TestConformancePacedByHeadroom(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		t.Run("slower than the rate", func(t *testing.T) {
			// 400 spare calls/s at 2 calls per client: 200 clients/s, a fifth
			// of the rate: a cohort every 5 s, done in 50 s, not 10 s.
			c := newNode(t, sc.fleet(t, 1)[0], newVClock(t0), Config{Headroom: newSpare(400), CallsPerClient: 2})
			st := mustStart(t, c, fastRollout("a"))
			require.Equal(t, time.Second, st.CohortInterval, "the status reports the rate's interval")
			assert.Equal(t, 50*time.Second, doneAt(t, c, "a", 2*time.Minute, nil))
		})
		t.Run("never faster than the rate", func(t *testing.T) {
			c := newNode(t, sc.fleet(t, 1)[0], newVClock(t0), Config{Headroom: newSpare(5000)})
			mustStart(t, c, fastRollout("a"))
			assert.Equal(t, 10*time.Second, doneAt(t, c, "a", 2*time.Minute, nil))
			c = newNode(t, sc.fleet(t, 1)[0], newVClock(t0), Config{Headroom: newSpare(math.Inf(1))})
			mustStart(t, c, fastRollout("a"))
			assert.Equal(t, 10*time.Second, doneAt(t, c, "a", 2*time.Minute, nil), "+Inf: no cap")
		})
		t.Run("speeds up when the headroom rises", func(t *testing.T) {
			h := newSpare(200)
			c := newNode(t, sc.fleet(t, 1)[0], newVClock(t0), Config{Headroom: h})
			mustStart(t, c, fastRollout("a"))
			// 4 cohorts in the first 20 s at 200/s, then the other 6 at the
			// rate, one a second: done at 26 s.
			got := doneAt(t, c, "a", 2*time.Minute, func(d time.Duration) {
				if d == 21*time.Second {
					assert.Equal(t, 4, mustStatus(t, c, "a").Released)
					h.Set(1e6)
				}
			})
			assert.Equal(t, 26*time.Second, got)
		})
		t.Run("no headroom releases nothing but is no hold", func(t *testing.T) {
			var buf logtest.Buffer
			for _, v := range []float64{0, -5, math.NaN(), math.Inf(-1)} {
				h := newSpare(v)
				c := newNode(t, sc.fleet(t, 1)[0], newVClock(t0), Config{Headroom: h, Logger: logtest.NewLogger(&buf)})
				mustStart(t, c, fastRollout("a"))
				for d := time.Second; d <= 20*time.Second; d += time.Second {
					advance(t, c, t0.Add(d))
				}
				st := mustStatus(t, c, "a")
				assert.Zero(t, st.Released, "spare %v", v)
				assert.Equal(t, Running, st.Phase)
				assert.True(t, st.HoldUntil.IsZero(), "spare %v: not a health hold", v)
				// The stopped time banked nothing: a cohort a second from now on.
				h.Set(1000)
				advance(t, c, t0.Add(21*time.Second))
				assert.Equal(t, 1, mustStatus(t, c, "a").Released, "spare %v", v)
			}
			assert.NotContains(t, buf.String(), "held", "no hold is logged")
		})
	})
}

// TestConformanceHeadroomNeverBeatsTheGuard: a guarded "invalidate
// everything" keeps its MinDuration whatever the headroom says.
func TestConformanceHeadroomNeverBeatsTheGuard(t *testing.T) {
	forEachStore(t, func(t *testing.T, sc storeCase) {
		for _, v := range []float64{math.Inf(1), 1e12, 1e3, 0.25} {
			h := newSpare(v)
			clk := newVClock(t0)
			c := newNode(t, sc.fleet(t, 1)[0], clk, Config{Headroom: h, Guard: Guard{MinDuration: 20 * time.Second, Starts: roomyStarts(t, clk)},
				AdvanceInterval: 100 * time.Millisecond})
			all := Rollout{ID: "all", Scope: ScopeAll, Cohorts: 10, Rate: maxRate, Clients: 10, By: "bad-node"}
			st := mustStart(t, c, all)
			require.True(t, st.Guarded)
			at := time.Duration(0)
			for at < 20*time.Second {
				at += 100 * time.Millisecond
				advance(t, c, t0.Add(at))
				if at < 20*time.Second {
					require.NotEqual(t, Done, mustStatus(t, c, "all").Phase, "spare %v: done at %v, before MinDuration", v, at)
				}
			}
			if v >= 1e3 { // a spare above the guard's pace leaves it at MinDuration exactly
				assert.Equal(t, Done, mustStatus(t, c, "all").Phase, "spare %v", v)
			} else { // 0.25 clients/s: 10 clients take 40 s
				assert.Equal(t, Running, mustStatus(t, c, "all").Phase, "spare %v", v)
			}
		}
	})
}

// TestHeadroomPanicIsRecovered: a Headroom that panics costs no advance: it
// is recovered, logged once per run of panics, counted, and the rollouts
// run at their own rate meanwhile (as with no Headroom).
func TestHeadroomPanicIsRecovered(t *testing.T) {
	var buf logtest.Buffer
	var broken atomic.Bool
	broken.Store(true)
	sw := headroomFunc(func() float64 {
		if broken.Load() {
			return panicky{}.Spare()
		}
		return 200
	})
	c := newNode(t, NewMemoryStore(), newVClock(t0), Config{Headroom: sw, Logger: logtest.NewLogger(&buf)})
	mustStart(t, c, fastRollout("a"))
	got := doneAt(t, c, "a", time.Minute, func(d time.Duration) {
		if d == 5*time.Second {
			broken.Store(false) // answers again: 200/s
		}
		if d == 10*time.Second {
			broken.Store(true)
		}
	})
	// 4 cohorts at the rate (1-4 s), 1 at 200/s (5-9 s: 5 advances bank
	// exactly one cohort), the other 5 at the rate again from 10 s.
	assert.Equal(t, 14*time.Second, got)
	assert.Equal(t, uint64(4+5), c.room.Panics(), "every panic is counted")
	out := buf.String()
	assert.Equal(t, 2, strings.Count(out, "headroom panicked"), "logged once per run of panics:\n%s", out)
	assert.Contains(t, out, "headroom exploded")
	assert.Equal(t, 1, strings.Count(out, "headroom answers again"))
}

// headroomFunc adapts a function to limiter.Headroom.
type headroomFunc func() float64

func (f headroomFunc) Spare() float64 { return f() }

// TestPacedStepTwins compares state.step (the memory store) with the
// advance script (Redis) state for state, credit bits included, under
// paces above the rate, at it, below it, 0, and changing every advance.
func TestPacedStepTwins(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(12, 3))
	paces := []float64{pace.None, 0, 1e-3, 0.7, 33, 99.9, 100, 100.1, 250, 1e9}
	mem := NewMemoryStore()
	red := newRedisStore(t, fleet.Redis{Client: srv.Client(t)})
	for round := range 20 {
		id := fmt.Sprintf("r%d", round)
		r := Rollout{ID: id, Scope: "s", Cohorts: 1 + rng.IntN(50), Rate: 1 + rng.Float64()*300,
			Clients: 1 + rng.IntN(20000), Coverage: 0.1, MinDuration: time.Duration(rng.IntN(30)) * time.Second, By: "x"}
		clk := newVClock(t0)
		cm := newNode(t, mem, clk)
		cr := newNode(t, red, clk)
		mustStart(t, cm, r)
		mustStart(t, cr, r)
		at := time.Duration(0)
		for step := range 60 {
			at += time.Duration(1+rng.IntN(2500)) * time.Millisecond
			p := paces[rng.IntN(len(paces))]
			if rng.IntN(4) == 0 {
				p = rng.Float64() * 2 * r.Rate
			}
			for _, s := range []Store{mem, red} {
				_, err := s.advance(ctx, advanceReq{now: stamp{us: t0.Add(at).UnixMicro()}, waveUs: 1e6, pace: p,
					retention: int64(time.Hour / time.Microsecond), window: -1, windowTTL: 1})
				require.NoError(t, err)
			}
			gm, err := mem.get(ctx, id)
			require.NoError(t, err)
			gr, err := red.get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, gm.st.encode(), gr.st.encode(), "round %d step %d at %v pace %v", round, step, at, p)
		}
	}
}
