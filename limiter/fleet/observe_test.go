package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// recorder collects the events of one budget. Its hooks call back into
// the budget (b), which must not deadlock: the budgets call hooks with no
// lock held.
type recorder struct {
	mu        sync.Mutex
	b         budget
	sources   map[string]int // decisions by outcome/source
	breaker   []string       // "from>to"
	fallback  []bool
	leased    int // tokens granted by lease exchanges
	exchanges int
	reentered bool
}

func (r *recorder) hooks() *observe.Hooks {
	return &observe.Hooks{
		Decision: func(e observe.Decision) {
			if e.Policy != "checkout" {
				panic("policy " + e.Policy)
			}
			r.mu.Lock()
			r.sources[e.Outcome.String()+"/"+e.Source.String()]++
			r.mu.Unlock()
		},
		Breaker: func(e observe.Breaker) {
			r.mu.Lock()
			r.breaker = append(r.breaker, e.From.String()+">"+e.To.String())
			r.mu.Unlock()
		},
		Fallback: func(e observe.Fallback) {
			r.mu.Lock()
			r.fallback = append(r.fallback, e.Entered)
			again := !r.reentered
			r.reentered = true
			r.mu.Unlock()
			if again {
				// Back into the budget, on another key.
				_, _ = r.b.AllowN(context.Background(), "other", 1)
			}
		},
		Lease: func(e observe.Lease) {
			r.mu.Lock()
			r.leased += e.Tokens
			r.exchanges++
			r.mu.Unlock()
		},
	}
}

func (r *recorder) snapshot() (map[string]int, []string, []bool, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.sources))
	for k, v := range r.sources {
		m[k] = v
	}
	return m, append([]string(nil), r.breaker...), append([]bool(nil), r.fallback...), r.leased, r.exchanges
}

// TestBudgetsReportEvents runs each Redis budget through an outage of its
// private redis-server and checks what it reported: decisions by source,
// the breaker opening and closing, fallback entered and left (once each),
// and, for Leased, its lease exchanges.
func TestBudgetsReportEvents(t *testing.T) {
	for _, kind := range []string{"strict", "leased"} {
		t.Run(kind, func(t *testing.T) {
			s := redistest.Start(t)
			rec := &recorder{sources: map[string]int{}}
			cfg := Config{Config: limiter.Config{Name: "checkout", Observe: rec.hooks()}, Failure: FailOpen}
			r := forTest(s.Client(t), Redis{Timeout: 200 * time.Millisecond, BreakerFailures: 1, BreakerOpen: 50 * time.Millisecond})
			var err error
			if kind == "strict" {
				rec.b, err = NewStrict(r, limiter.PerSecond(1000, 1000), cfg)
			} else {
				rec.b, err = NewLeased(r, limiter.PerSecond(1000, 1000), LeasedConfig{Config: cfg})
			}
			require.NoError(t, err)
			defer rec.b.Close()
			ctx := context.Background()
			for range 5 {
				_, err := rec.b.AllowN(ctx, "k", 1)
				require.NoError(t, err)
			}
			s.Kill(t)
			d, err := rec.b.AllowN(ctx, "k2", 1) // a new key: no lease to spend
			require.NoError(t, err)
			require.Equal(t, limiter.ViaFallback, d.Via)
			s.Restart(t)
			// Generous: the breaker lets a probe through after 50 ms, and
			// a restarted redis-server under -race on 2 loaded cores may
			// take a while to accept connections.
			require.Eventually(t, func() bool {
				d, err := rec.b.AllowN(ctx, "k3", 1)
				return err == nil && d.Via == limiter.ViaRedis
			}, 10*time.Second, 20*time.Millisecond)
			sources, breaker, fallback, leased, exchanges := rec.snapshot()
			assert.Equal(t, []bool{true, false}, fallback, "entered once, left once")
			assert.Equal(t, "closed>open", breaker[0])
			assert.Equal(t, "half-open>closed", breaker[len(breaker)-1])
			assert.Positive(t, sources["allowed/fallback"])
			assert.Positive(t, sources["allowed/redis"])
			if kind == "leased" {
				assert.Positive(t, sources["allowed/lease"], "spent from the lease")
				assert.Positive(t, exchanges)
				assert.Positive(t, leased)
			} else {
				assert.Zero(t, exchanges)
			}
		})
	}
}
