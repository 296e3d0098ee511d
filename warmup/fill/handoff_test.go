package fill

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// stringCodec hands strings off as their bytes.
type stringCodec struct{}

func (stringCodec) Encode(v string) ([]byte, error) { return []byte(v), nil }
func (stringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// brokenCodec fails as told: an error or a panic, on encode or decode.
type brokenCodec struct{ encode, decode, panics bool }

var errCodec = errors.New("codec: broken")

func (c brokenCodec) Encode(v string) ([]byte, error) {
	if c.encode {
		if c.panics {
			panic("encode")
		}
		return nil, errCodec
	}
	return []byte(v), nil
}

func (c brokenCodec) Decode(b []byte) (string, error) {
	if c.decode {
		if c.panics {
			panic("decode")
		}
		return "", errCodec
	}
	return string(b), nil
}

// node is one simulated node: a Group on a cache of its own.
type node struct {
	*Group[string]
	cache *memCache[string]
}

// newNodes returns n Groups with node-local caches on one Redis name,
// closed at the test's end. cfg's Handoff is the nodes' codec.
func newNodes(t *testing.T, client redis.UniversalClient, name string, n int, cfg SharedConfig[string]) []node {
	t.Helper()
	nodes := make([]node, n)
	for i := range nodes {
		c := newMemCache[string]()
		// Timeout: generous, as these tests count fills, not latency.
		g, err := NewShared[string](c, fleet.Redis{Client: client, Name: name, Timeout: time.Second}, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = g.Close() })
		nodes[i] = node{g, c}
	}
	return nodes
}

// sum adds a counter over the nodes.
func sum(nodes []node, f func(Stats) uint64) (n uint64) {
	for _, g := range nodes {
		n += f(g.Stats())
	}
	return n
}

// localHotKey makes a key expire on every node at once (each node-local
// cache holds an expired entry), rounds times with a new key each, with
// callers concurrent calls per node, and returns the origin's requests per
// round. Every call must get the origin's value.
func localHotKey(t *testing.T, client redis.UniversalClient, n, callers, rounds int, codec Codec[string]) ([]int64, []node) {
	t.Helper()
	o := newOrigin(t, n, 20*time.Millisecond, time.Minute) // room for every node at once
	// LeaseTTL and LeaseWait of an hour: a node that found nothing to take
	// would fill without the lease at once (the marker moved), never wait.
	nodes := newNodes(t, client, uniqueName(), n, SharedConfig[string]{LeaseTTL: time.Hour, Handoff: codec})
	groups := make([]*Group[string], n)
	for i, g := range nodes {
		groups[i] = g.Group
	}
	fills := make([]int64, rounds)
	for round := range rounds {
		key := "hot" + strconv.Itoa(round)
		for _, g := range nodes {
			g.cache.put(key, Entry[string]{Value: "old", Expires: time.Now().Add(-time.Second)})
		}
		before := o.served.Load() + o.refused.Load()
		stampede(groups, callers, func(g *Group[string]) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			r, err := g.Do(ctx, key, o.fetch)
			if assert.NoError(t, err) {
				assert.Equal(t, "value of "+key, r.Value)
			}
		})
		fills[round] = o.served.Load() + o.refused.Load() - before
	}
	return fills, nodes
}

func TestHandoffHotKey(t *testing.T) {
	for _, tc := range redisKinds {
		t.Run(tc.name, func(t *testing.T) {
			client := tc.client(t)
			const n, callers, rounds = 10, 8, 3
			handed, nodes := localHotKey(t, client, n, callers, rounds, stringCodec{})
			for round, f := range handed {
				assert.EqualValues(t, 1, f, "round %d: one origin fill across the fleet", round)
			}
			get := func(f func(Stats) uint64) uint64 { return sum(nodes, f) }
			assert.EqualValues(t, rounds, get(func(s Stats) uint64 { return s.Leases }))
			assert.EqualValues(t, rounds, get(func(s Stats) uint64 { return s.HandoffWrites }))
			assert.EqualValues(t, rounds*(n-1), get(func(s Stats) uint64 { return s.HandoffHits }), "every other node took the handoff")
			assert.Zero(t, get(func(s Stats) uint64 { return s.Unleased }))
			for _, g := range nodes { // each node's cache holds the value now
				e, ok := g.cache.Get(context.Background(), "hot0")
				assert.True(t, ok && e.Value == "value of hot0")
			}

			// Without a handoff, every node fills once: the marker tells
			// the waiters that the holder's value is not coming to them.
			alone, _ := localHotKey(t, client, n, callers, rounds, nil)
			for round, f := range alone {
				assert.EqualValues(t, n, f, "round %d: one origin fill per node", round)
			}
			t.Logf("%d nodes × %d callers, node-local caches: origin requests per expiry %v with the handoff, %v without",
				n, callers, handed, alone)
		})
	}
}

func TestHandoffEntry(t *testing.T) {
	client := srv.Client(t)
	o := newOrigin(t, 4, time.Millisecond, time.Minute)
	nodes := newNodes(t, client, uniqueName(), 2, SharedConfig[string]{Handoff: stringCodec{}})
	a, b := nodes[0], nodes[1]
	ctx := context.Background()
	ra, err := a.Do(ctx, "k", o.fetch)
	require.NoError(t, err)
	require.Equal(t, FromFill, ra.Source)
	a.wg.Wait() // released, handed off

	// In Redis for the rest of the entry's fresh lifetime, no longer.
	pttl, err := client.PTTL(ctx, a.shared.keys("k")[2]).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, time.Duration(0))
	assert.LessOrEqual(t, pttl, time.Until(ra.Expires))

	rb, err := b.Do(ctx, "k", o.fetch)
	require.NoError(t, err)
	assert.Equal(t, FromHandoff, rb.Source)
	assert.Equal(t, "handoff", rb.Source.String())
	assert.Equal(t, "value of k", rb.Value)
	assert.True(t, ra.Expires.Equal(rb.Expires), "the holder's expiry, not a new one")
	e, ok := b.cache.Get(ctx, "k")
	require.True(t, ok, "Set in b's cache")
	assert.Equal(t, "value of k", e.Value)
	fa, _ := a.cache.Get(ctx, "k")
	assert.Equal(t, fa.FillTime, e.FillTime, "the holder's fill time, for early refresh")
	rb, err = b.Do(ctx, "k", o.fetch)
	require.NoError(t, err)
	assert.Equal(t, FromCache, rb.Source)
	assert.EqualValues(t, 1, o.served.Load())
	assert.EqualValues(t, 1, b.Stats().HandoffHits)
}

func TestHandoffNotOlderThanSeen(t *testing.T) {
	// b holds the very entry that was handed off and refreshes it early:
	// the handoff has nothing newer, so b takes the lease and fills, in one
	// round trip (Redis does not return the entry). A private server, for
	// its command counts.
	client := redistest.Start(t).Client(t)
	o := newOrigin(t, 4, time.Millisecond, time.Minute)
	var draw atomic.Value // b's early-refresh draws
	draw.Store(1.0)       // -ln(1) = 0: never early
	name := uniqueName()
	a := newNodes(t, client, name, 1, SharedConfig[string]{Handoff: stringCodec{}})[0]
	b := newNodes(t, client, name, 1, SharedConfig[string]{Handoff: stringCodec{},
		Config: Config{Beta: 1, Rand: func() float64 { return draw.Load().(float64) }}})[0]
	ctx := context.Background()
	slow := func(ctx context.Context, key string) (string, time.Duration, error) {
		time.Sleep(time.Millisecond) // a FillTime > 0, so that b may refresh early
		return o.fetch(ctx, key)
	}
	_, err := a.Do(ctx, "k", slow)
	require.NoError(t, err)
	a.wg.Wait()
	r, err := b.Do(ctx, "k", slow)
	require.NoError(t, err)
	require.Equal(t, FromHandoff, r.Source)

	draw.Store(0.0) // -ln(0) = +Inf: refresh now
	scripts := evalCalls(t, client)
	r, err = b.Do(ctx, "k", slow)
	require.NoError(t, err)
	assert.Equal(t, FromCache, r.Source)
	b.wg.Wait()
	assert.Equal(t, 2, evalCalls(t, client)-scripts, "the lease's round trip and the release")
	assert.EqualValues(t, 1, b.Stats().Early)
	assert.EqualValues(t, 1, b.Stats().Leases, "the early refresh filled, holding the lease")
	assert.EqualValues(t, 1, b.Stats().HandoffHits, "and did not take the entry it had")
	assert.EqualValues(t, 2, o.served.Load())
}

// evalCalls returns the scripts a server has run (EVALSHA and EVAL).
func evalCalls(t *testing.T, client redis.UniversalClient) (n int) {
	t.Helper()
	info, err := client.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				calls, _, _ := strings.Cut(rest, ",")
				c, err := strconv.Atoi(calls)
				require.NoError(t, err)
				n += c
			}
		}
	}
	return n
}

func TestHandoffCodecErrors(t *testing.T) {
	for _, panics := range []bool{false, true} {
		t.Run("panics="+strconv.FormatBool(panics), func(t *testing.T) {
			client := srv.Client(t)
			o := newOrigin(t, 4, time.Millisecond, time.Minute)
			var logs logtest.Buffer
			name := uniqueName()
			cfg := func(c brokenCodec) SharedConfig[string] {
				c.panics = panics
				return SharedConfig[string]{Handoff: c, Config: Config{Logger: logtest.NewLogger(&logs)}}
			}
			a := newNodes(t, client, name, 1, cfg(brokenCodec{}))[0]
			b := newNodes(t, client, name, 1, cfg(brokenCodec{decode: true}))[0]
			c := newNodes(t, client, name, 1, cfg(brokenCodec{encode: true}))[0]
			ctx := context.Background()

			// b cannot decode what a handed off: it counts, logs and fills
			// holding the lease, as if nothing was there.
			_, err := a.Do(ctx, "k", o.fetch)
			require.NoError(t, err)
			a.wg.Wait()
			r, err := b.Do(ctx, "k", o.fetch)
			require.NoError(t, err)
			assert.Equal(t, FromFill, r.Source)
			assert.Equal(t, "value of k", r.Value)
			b.wg.Wait()
			assert.EqualValues(t, 1, b.Stats().HandoffErrors)
			assert.EqualValues(t, 1, b.Stats().Leases)
			assert.EqualValues(t, 2, o.served.Load())
			assert.Contains(t, logs.String(), "failed to decode")

			// c cannot encode: nothing is handed off, and a's next miss
			// fills.
			_, err = c.Do(ctx, "k2", o.fetch)
			require.NoError(t, err)
			c.wg.Wait()
			assert.EqualValues(t, 1, c.Stats().HandoffErrors)
			assert.Zero(t, c.Stats().HandoffWrites)
			assert.Contains(t, logs.String(), "failed to encode")
			n, err := client.Exists(ctx, c.shared.keys("k2")[2]).Result()
			require.NoError(t, err)
			assert.Zero(t, n, "nothing handed off")
			r, err = a.Do(ctx, "k2", o.fetch)
			require.NoError(t, err)
			assert.Equal(t, FromFill, r.Source)
			assert.EqualValues(t, 4, o.served.Load())
		})
	}
}

func TestHandoffBadHeader(t *testing.T) {
	client := srv.Client(t)
	o := newOrigin(t, 4, time.Millisecond, time.Minute)
	g := newNodes(t, client, uniqueName(), 1, SharedConfig[string]{Handoff: stringCodec{}})[0]
	ctx := context.Background()
	exp := strconv.FormatInt(time.Now().Add(time.Hour).UnixNano(), 10)
	for i, v := range []string{"garbage", exp + " x value", exp + "value"} {
		key := "k" + strconv.Itoa(i)
		require.NoError(t, client.Set(ctx, g.shared.keys(key)[2], v, time.Hour).Err())
		r, err := g.Do(ctx, key, o.fetch)
		require.NoError(t, err)
		assert.Equal(t, "value of "+key, r.Value, "%q is not taken", v)
		assert.Equal(t, FromFill, r.Source)
	}
	// "garbage" and exp+"value" have no expiry Redis can read, and are not
	// returned; exp+" x value" is, and fails to decode.
	assert.EqualValues(t, 1, g.Stats().HandoffErrors)
}

func TestHandoffSizeBound(t *testing.T) {
	client := srv.Client(t)
	ctx := context.Background()
	const bound = 10
	nodes := newNodes(t, client, uniqueName(), 2, SharedConfig[string]{Handoff: stringCodec{}, HandoffMaxBytes: bound})
	a, b := nodes[0], nodes[1]
	var fills atomic.Int64
	value := func(_ context.Context, key string) (string, time.Duration, error) {
		fills.Add(1)
		return key, time.Minute, nil // the key is the value: its length is the size
	}
	for _, key := range []string{"0123456789", "0123456789a"} { // bound, bound + 1
		_, err := a.Do(ctx, key, value)
		require.NoError(t, err)
		a.wg.Wait()
		n, err := client.Exists(ctx, a.shared.keys(key)[2]).Result()
		require.NoError(t, err)
		r, err := b.Do(ctx, key, value)
		require.NoError(t, err)
		assert.Equal(t, key, r.Value)
		if len(key) <= bound {
			assert.EqualValues(t, 1, n, "%d bytes: handed off", len(key))
			assert.Equal(t, FromHandoff, r.Source)
		} else {
			assert.Zero(t, n, "%d bytes: not handed off", len(key))
			assert.Equal(t, FromFill, r.Source, "b fills on its own")
		}
	}
	assert.EqualValues(t, 1, a.Stats().HandoffWrites)
	assert.EqualValues(t, 1, a.Stats().HandoffTooLarge)
	assert.EqualValues(t, 3, fills.Load())

	// The default bound is 1 MiB.
	g := newNodes(t, client, uniqueName(), 1, SharedConfig[string]{Handoff: stringCodec{}})[0]
	assert.Equal(t, 1<<20, g.shared.max)
}

// blockedFill returns a Func that signals started, then returns v once
// release is closed.
func blockedFill(v string, started chan<- struct{}, release <-chan struct{}) Func[string] {
	return func(context.Context, string) (string, time.Duration, error) {
		close(started)
		<-release
		return v, time.Minute, nil
	}
}

func TestForgetRacesFill(t *testing.T) {
	for _, forget := range []bool{false, true} { // without Forget, the control
		t.Run("forget="+strconv.FormatBool(forget), func(t *testing.T) {
			client := srv.Client(t)
			ctx := context.Background()
			nodes := newNodes(t, client, uniqueName(), 3, SharedConfig[string]{Handoff: stringCodec{}, LeaseTTL: time.Hour})
			a, b, c := nodes[0], nodes[1], nodes[2]

			// a holds the lease, its fill (of the value before the
			// invalidation) under way; Forget runs on b meanwhile.
			started, release := make(chan struct{}), make(chan struct{})
			done := make(chan Result[string])
			go func() {
				r, err := a.Do(ctx, "k", blockedFill("before", started, release))
				assert.NoError(t, err)
				done <- r
			}()
			<-started
			if forget {
				require.NoError(t, b.Forget(ctx, "k"))
			}
			close(release)
			assert.Equal(t, "before", (<-done).Value, "a's own callers get its fill")
			a.wg.Wait() // released

			n, err := client.Exists(ctx, a.shared.keys("k")[2]).Result()
			require.NoError(t, err)
			after := func(context.Context, string) (string, time.Duration, error) { return "after", time.Minute, nil }
			r, err := c.Do(ctx, "k", after)
			require.NoError(t, err)
			if forget {
				assert.Zero(t, n, "a fill begun before Forget is not handed off")
				assert.Zero(t, a.Stats().HandoffWrites)
				assert.Equal(t, "after", r.Value)
				assert.Equal(t, FromFill, r.Source)
			} else {
				assert.EqualValues(t, 1, n)
				assert.Equal(t, "before", r.Value)
				assert.Equal(t, FromHandoff, r.Source)
			}
		})
	}
}

func TestForgetWaiter(t *testing.T) {
	// b waits for a's fill when Forget runs: it does not get a's value
	// (begun before the invalidation), and fills on its own.
	client := srv.Client(t)
	ctx := context.Background()
	nodes := newNodes(t, client, uniqueName(), 2, SharedConfig[string]{Handoff: stringCodec{}, LeaseTTL: time.Hour})
	a, b := nodes[0], nodes[1]
	started, release := make(chan struct{}), make(chan struct{})
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		_, err := a.Do(ctx, "k", blockedFill("before", started, release))
		assert.NoError(t, err)
	}()
	<-started
	got := make(chan Result[string])
	go func() {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		r, err := b.Do(ctx, "k", func(context.Context, string) (string, time.Duration, error) { return "after", time.Minute, nil })
		assert.NoError(t, err)
		got <- r
	}()
	require.NoError(t, a.Forget(ctx, "k"))
	close(release)
	r := <-got
	<-filled
	assert.Equal(t, "after", r.Value)
	assert.Equal(t, FromFill, r.Source)
	assert.Zero(t, b.Stats().HandoffHits)
}

func TestForgetAfterHandoff(t *testing.T) {
	client := srv.Client(t)
	ctx := context.Background()
	o := newOrigin(t, 4, time.Millisecond, time.Minute)
	nodes := newNodes(t, client, uniqueName(), 2, SharedConfig[string]{Handoff: stringCodec{}})
	a, b := nodes[0], nodes[1]
	_, err := a.Do(ctx, "k", o.fetch)
	require.NoError(t, err)
	a.wg.Wait()
	require.NoError(t, a.Forget(ctx, "k"))
	r, err := b.Do(ctx, "k", o.fetch)
	require.NoError(t, err)
	assert.Equal(t, FromFill, r.Source, "the copy in Redis is gone")
	assert.EqualValues(t, 2, o.served.Load())

	// After Close, and on a Group without Redis.
	require.NoError(t, a.Close())
	assert.ErrorIs(t, a.Forget(ctx, "k"), limiter.ErrClosed)
	local := newGroupT[string](t, newMemCache[string](), Config{})
	assert.NoError(t, local.Forget(ctx, "k"))
}

func TestHandoffRedisDown(t *testing.T) {
	s := redistest.Start(t)
	const timeout = 30 * time.Millisecond
	g, err := NewShared[string](newMemCache[string](), fleet.Redis{Client: s.Client(t), Name: uniqueName(),
		Timeout: timeout, BreakerFailures: 1, BreakerOpen: time.Hour}, SharedConfig[string]{Handoff: stringCodec{}})
	require.NoError(t, err)
	defer g.Close()
	ok := func(_ context.Context, key string) (string, time.Duration, error) { return "v" + key, time.Minute, nil }
	_, err = g.Do(context.Background(), "warm", ok)
	require.NoError(t, err)
	g.wg.Wait()
	require.EqualValues(t, 1, g.Stats().HandoffWrites)
	s.Kill(t)
	for i := range 3 {
		r, err := g.Do(context.Background(), strconv.Itoa(i), ok)
		require.NoError(t, err)
		assert.Equal(t, "v"+strconv.Itoa(i), r.Value)
	}
	g.wg.Wait()
	assert.EqualValues(t, 3, g.Stats().Unleased, "filled locally")
	assert.Error(t, g.Forget(context.Background(), "warm"), "Forget tells the caller")
}
