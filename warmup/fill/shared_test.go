package fill

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

var nameSeq atomic.Int64

func uniqueName() string { return fmt.Sprintf("t%d", nameSeq.Add(1)) }

// slack is added to wall-clock bounds on latency: CI runs these tests
// under -race on 2 loaded cores, where a goroutine can wait for a CPU for
// tens of milliseconds. The tight figures are in the benchmarks.
const slack = 250 * time.Millisecond

// origin is a loopback HTTP origin with a capacity limit: each request
// costs it cost, at most capacity are served at once and the others are
// refused with 503. It counts the requests it serves.
type origin struct {
	srv     *httptest.Server
	client  *http.Client
	served  atomic.Int64
	refused atomic.Int64
	ttl     time.Duration
}

func newOrigin(t *testing.T, capacity int, cost, ttl time.Duration) *origin {
	o := &origin{ttl: ttl}
	slots := make(chan struct{}, capacity)
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		default:
			o.refused.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		defer func() { <-slots }()
		o.served.Add(1)
		select { // the cost of a fill at the origin, not a synchronisation
		case <-time.After(cost):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "value of "+strings.TrimPrefix(r.URL.Path, "/"))
	}))
	o.client = o.srv.Client()
	t.Cleanup(func() {
		o.client.CloseIdleConnections()
		o.srv.Close()
	})
	return o
}

// fetch is a Func that fills key from the origin.
func (o *origin) fetch(ctx context.Context, key string) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.srv.URL+"/"+key, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("origin: %s", resp.Status)
	}
	return string(b), o.ttl, nil
}

// redisCache is a Cache shared by the nodes, in Redis: the value with its
// expiry and fill time, as "expiresUnixNano fillTimeNano value".
type redisCache struct {
	c      redis.UniversalClient
	prefix string
}

func (c *redisCache) Get(ctx context.Context, key string) (Entry[string], bool) {
	s, err := c.c.Get(ctx, c.prefix+key).Result()
	if err != nil {
		return Entry[string]{}, false
	}
	f := strings.SplitN(s, " ", 3)
	if len(f) != 3 {
		return Entry[string]{}, false
	}
	exp, err1 := strconv.ParseInt(f[0], 10, 64)
	took, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return Entry[string]{}, false
	}
	return Entry[string]{Value: f[2], Expires: time.Unix(0, exp), FillTime: time.Duration(took)}, true
}

func (c *redisCache) Set(ctx context.Context, key string, e Entry[string]) {
	c.c.Set(ctx, c.prefix+key, fmt.Sprintf("%d %d %s", e.Expires.UnixNano(), int64(e.FillTime), e.Value), 0)
}

// hotKey makes one key expire on every node at once, rounds times, with
// callers concurrent calls per node, and returns the requests the origin
// got (served or refused) per round and the calls that failed. With lease,
// each node is a NewShared Group; otherwise a New one.
func hotKey(t *testing.T, client redis.UniversalClient, nodes, callers, rounds int, lease bool) (fills []int64, failed int64) {
	t.Helper()
	name := uniqueName()
	cache := &redisCache{c: client, prefix: "cache:" + name + ":"}
	o := newOrigin(t, 4, 20*time.Millisecond, time.Minute)
	groups := make([]*Group[string], nodes)
	for i := range groups {
		var err error
		if lease {
			// Timeout: generous, as these tests count fills, not latency.
			groups[i], err = NewShared[string](cache, fleet.Redis{Client: client, Name: name, Timeout: time.Second},
				SharedConfig[string]{LeaseTTL: 5 * time.Second})
		} else {
			groups[i], err = New[string](cache, Config{})
		}
		require.NoError(t, err)
		t.Cleanup(func() { _ = groups[i].Close() })
	}
	fills = make([]int64, rounds)
	var failures atomic.Int64
	for round := range rounds {
		cache.Set(context.Background(), "hot", Entry[string]{Value: "old", Expires: time.Now().Add(-time.Second)})
		before := o.served.Load() + o.refused.Load()
		stampede(groups, callers, func(g *Group[string]) {
			r, err := g.Do(context.Background(), "hot", o.fetch)
			if err != nil {
				failures.Add(1)
				return
			}
			assert.Equal(t, "value of hot", r.Value)
		})
		fills[round] = o.served.Load() + o.refused.Load() - before
	}
	return fills, failures.Load()
}

// redisKinds are the package's private server and its 3-master cluster.
var redisKinds = []struct {
	name   string
	client func(t *testing.T) redis.UniversalClient
}{
	{"server", func(t *testing.T) redis.UniversalClient { return srv.Client(t) }},
	{"cluster", func(t *testing.T) redis.UniversalClient { return cluster.Client(t) }},
}

// stampede makes callers calls of do at once on each group, and returns
// once they and the groups' flights have ended (leases released: the next
// expiry is a new one).
func stampede(groups []*Group[string], callers int, do func(g *Group[string])) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, g := range groups {
		for range callers {
			wg.Go(func() {
				<-start
				do(g)
			})
		}
	}
	close(start)
	wg.Wait()
	for _, g := range groups {
		g.wg.Wait()
	}
}

func TestHotKeyOneFillPerLease(t *testing.T) {
	for _, tc := range redisKinds {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client(t)
			for _, nodes := range []int{3, 10} {
				const rounds = 3
				leased, failed := hotKey(t, client, nodes, 8, rounds, true)
				for round, n := range leased {
					assert.EqualValues(t, 1, n, "%d nodes, round %d: one origin fill per expiry", nodes, round)
				}
				assert.Zero(t, failed, "every call got the value")
				// Without the lease each node fills (the origin, with room
				// for 4 at once, refuses some at 10 nodes): shown, not held.
				unleased, failedU := hotKey(t, client, nodes, 8, rounds, false)
				t.Logf("%d nodes × 8 callers: origin requests per expiry %v with the fleet lease (%d calls failed), %v without (%d calls failed)",
					nodes, leased, failed, unleased, failedU)
			}
		})
	}
}

func TestDeadLeaseHolder(t *testing.T) {
	client := srv.Client(t)
	name := uniqueName()
	cache := &redisCache{c: client, prefix: "cache:" + name + ":"}
	const ttl, leaseWait = 300 * time.Millisecond, time.Second
	cfg := SharedConfig[string]{LeaseTTL: ttl, LeaseWait: leaseWait}
	r := fleet.Redis{Client: client, Name: name, Timeout: time.Second}
	a, err := NewShared[string](cache, r, cfg)
	require.NoError(t, err)
	b, err := NewShared[string](cache, r, cfg)
	require.NoError(t, err)
	o := newOrigin(t, 4, time.Millisecond, time.Minute)

	// Node a takes the lease and hangs: it never fills and never releases.
	hung, unhang := make(chan struct{}), make(chan struct{})
	start := time.Now() // before a takes the lease
	go func() {
		_, _ = a.Do(context.Background(), "k", func(ctx context.Context, key string) (string, time.Duration, error) {
			close(hung)
			<-unhang
			return "", 0, ctx.Err()
		})
	}()
	<-hung
	res, err := b.Do(context.Background(), "k", o.fetch)
	took := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, "value of k", res.Value)
	assert.EqualValues(t, 1, b.Stats().Leases, "b filled holding the lease, taken over")
	// a took the lease after start: b's fill cannot come before the lease
	// expired, less a millisecond of Redis's expiry rounding.
	assert.GreaterOrEqual(t, took, ttl-time.Millisecond)
	assert.LessOrEqual(t, took, ttl+leaseWait, "a dead holder keeps the others at most LeaseTTL + LeaseWait")
	close(unhang)
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())

	// A lease left by a process that is gone (never released) is the same.
	c, err := NewShared[string](cache, r, cfg)
	require.NoError(t, err)
	defer c.Close()
	keys := c.shared.keys("gone")
	start = time.Now()
	require.NoError(t, client.Set(context.Background(), keys[0], "dead-process", ttl).Err())
	res, err = c.Do(context.Background(), "gone", o.fetch)
	took = time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, "value of gone", res.Value)
	assert.GreaterOrEqual(t, took, ttl-time.Millisecond)
	assert.LessOrEqual(t, took, ttl+leaseWait)
}

func TestNodeLocalCaches(t *testing.T) {
	// Each node has its own cache: a waiter cannot see the holder's value,
	// and the marker the holder bumps tells it to fill at once rather than
	// wait out LeaseWait (an hour here).
	client := srv.Client(t)
	name := uniqueName()
	o := newOrigin(t, 4, 20*time.Millisecond, time.Minute)
	const nodes = 3
	groups := make([]*Group[string], nodes)
	for i := range groups {
		var err error
		groups[i], err = NewShared[string](newMemCache[string](), fleet.Redis{Client: client, Name: name, Timeout: time.Second},
			SharedConfig[string]{LeaseTTL: time.Hour})
		require.NoError(t, err)
		defer groups[i].Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			r, err := g.Do(ctx, "k", o.fetch)
			if assert.NoError(t, err, "no node waits out LeaseWait") {
				assert.Equal(t, "value of k", r.Value)
			}
		})
	}
	wg.Wait()
	var leases, unleased uint64
	for _, g := range groups {
		leases += g.Stats().Leases
		unleased += g.Stats().Unleased
	}
	assert.EqualValues(t, nodes, o.served.Load(), "each node filled once")
	assert.EqualValues(t, nodes, leases+unleased)
	assert.GreaterOrEqual(t, leases, uint64(1))
}

func TestLeaseWaitServesStale(t *testing.T) {
	client := srv.Client(t)
	name := uniqueName()
	cache := &redisCache{c: client, prefix: "cache:" + name + ":"}
	g, err := NewShared[string](cache, fleet.Redis{Client: client, Name: name, Timeout: time.Second},
		SharedConfig[string]{Config: Config{StaleIfError: time.Hour}, LeaseTTL: time.Hour, LeaseWait: 50 * time.Millisecond})
	require.NoError(t, err)
	defer g.Close()
	keys := g.shared.keys("k")
	require.NoError(t, client.Set(context.Background(), keys[0], "other-node", time.Hour).Err())
	cache.Set(context.Background(), "k", Entry[string]{Value: "old", Expires: time.Now().Add(-time.Second)})
	never := func(context.Context, string) (string, time.Duration, error) {
		return "", 0, fmt.Errorf("must not fill")
	}
	r, err := g.Do(context.Background(), "k", never)
	require.NoError(t, err)
	assert.Equal(t, StaleOnError, r.Source)
	assert.ErrorIs(t, r.FillErr, ErrLeaseWait)
	assert.Equal(t, "old", r.Value)

	// Without a stale entry, the node fills itself after the wait.
	o := newOrigin(t, 4, time.Millisecond, time.Minute)
	require.NoError(t, client.Set(context.Background(), g.shared.keys("k2")[0], "other-node", time.Hour).Err())
	r, err = g.Do(context.Background(), "k2", o.fetch)
	require.NoError(t, err)
	assert.Equal(t, "value of k2", r.Value)
	assert.EqualValues(t, 1, g.Stats().Unleased)
}

func TestRedisDownFillsLocally(t *testing.T) {
	for _, fault := range []string{"kill", "pause"} {
		t.Run(fault, func(t *testing.T) {
			s := redistest.Start(t)
			const timeout = 30 * time.Millisecond
			g, err := NewShared[string](newMemCache[string](), fleet.Redis{Client: s.Client(t), Name: uniqueName(),
				Timeout: timeout, BreakerFailures: 1, BreakerOpen: time.Hour}, SharedConfig[string]{})
			require.NoError(t, err)
			defer g.Close()
			ok := func(_ context.Context, key string) (string, time.Duration, error) { return "v" + key, time.Minute, nil }
			_, err = g.Do(context.Background(), "warm", ok)
			require.NoError(t, err)
			require.EqualValues(t, 1, g.Stats().Leases)
			if fault == "kill" {
				s.Kill(t)
			} else {
				s.Pause(t)
				defer s.Resume(t)
			}
			var worst time.Duration
			for i := range 5 {
				start := time.Now()
				r, err := g.Do(context.Background(), strconv.Itoa(i), ok)
				took := time.Since(start)
				worst = max(worst, took)
				require.NoError(t, err)
				assert.Equal(t, "v"+strconv.Itoa(i), r.Value)
				assert.Less(t, took, timeout+slack, "a fill waits for Redis no longer than its Timeout")
			}
			assert.EqualValues(t, 5, g.Stats().Unleased)
			t.Logf("%s: slowest call %v (Redis.Timeout %v)", fault, worst, timeout)
		})
	}
}

func TestSharedBadConfig(t *testing.T) {
	client := srv.Client(t)
	cache := newMemCache[int]()
	for _, tc := range []struct {
		r     fleet.Redis
		cfg   SharedConfig[int]
		field string
	}{
		{fleet.Redis{Client: client}, SharedConfig[int]{LeaseTTL: -1}, "fill.SharedConfig.LeaseTTL"},
		{fleet.Redis{Client: client}, SharedConfig[int]{LeaseTTL: time.Microsecond}, "fill.SharedConfig.LeaseTTL"},
		{fleet.Redis{Client: client}, SharedConfig[int]{LeaseWait: -1}, "fill.SharedConfig.LeaseWait"},
		{fleet.Redis{Client: client}, SharedConfig[int]{Config: Config{MaxKeys: -1}}, "fill.SharedConfig.MaxKeys"},
		{fleet.Redis{Client: client}, SharedConfig[int]{HandoffMaxBytes: -1}, "fill.SharedConfig.HandoffMaxBytes"},
		{fleet.Redis{}, SharedConfig[int]{}, "Redis.Client"},
		{fleet.Redis{Client: client, Name: "a:b"}, SharedConfig[int]{}, "Redis.Name"},
		{fleet.Redis{Client: client, Node: "n"}, SharedConfig[int]{}, "Redis.Node"},
		{fleet.Redis{Client: client, Heartbeat: time.Second}, SharedConfig[int]{}, "Redis.Heartbeat"},
		{fleet.Redis{Client: client, Timeout: -1}, SharedConfig[int]{}, "Redis.Timeout"},
	} {
		_, err := NewShared[int](cache, tc.r, tc.cfg)
		assert.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.field)
		assert.ErrorContains(t, err, tc.field)
	}
	_, err := NewShared[int](nil, fleet.Redis{Client: client}, SharedConfig[int]{})
	assert.ErrorContains(t, err, "cache is nil")
}

// TestSharedBreakerObserved: with Redis out of reach the lease's breaker
// opens, the fill goes on without the lease, and Config.Observe's Breaker
// hook hears of the change, named after the Redis.Name.
func TestSharedBreakerObserved(t *testing.T) {
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	var mu sync.Mutex
	var got []observe.Breaker
	cfg := SharedConfig[string]{Config: Config{Observe: &observe.Hooks{Breaker: func(b observe.Breaker) {
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}}}}
	g, err := NewShared[string](newMemCache[string](), fleet.Redis{Client: dead, Name: "obs", BreakerFailures: 1, Timeout: time.Second}, cfg)
	require.NoError(t, err)
	defer g.Close()
	r, err := g.Do(context.Background(), "k", func(context.Context, string) (string, time.Duration, error) {
		return "v", time.Minute, nil
	})
	require.NoError(t, err)
	assert.Equal(t, "v", r.Value)
	assert.EqualValues(t, 1, g.Stats().Unleased)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []observe.Breaker{{Policy: "obs", From: observe.BreakerClosed, To: observe.BreakerOpen}}, got)
}
