package limiter

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/bucketkey"
)

func redisBackends(t *testing.T) []backendCase {
	return []backendCase{
		{name: "redis", make: func(t *testing.T, l Limit, opts ...Option) Backend {
			return newRedisForTest(t, srv.Client(t), l, opts...)
		}},
		{name: "cluster", make: func(t *testing.T, l Limit, opts ...Option) Backend {
			return newRedisForTest(t, cluster.Client(t), l, opts...)
		}},
		{name: "leased", remainingIsView: true, make: func(t *testing.T, l Limit, opts ...Option) Backend {
			return newLeasedForTest(t, srv.Client(t), l, append([]Option{WithName(uniqueName())}, opts...)...)
		}},
		{name: "leased-cluster", remainingIsView: true, make: func(t *testing.T, l Limit, opts ...Option) Backend {
			return newLeasedForTest(t, cluster.Client(t), l, append([]Option{WithName(uniqueName())}, opts...)...)
		}},
	}
}

func newRedisForTest(t *testing.T, c redis.UniversalClient, l Limit, opts ...Option) *Redis {
	t.Helper()
	// A generous time budget: CI runs under -race on 2 loaded cores, and
	// these tests check decisions, not latency.
	opts = append([]Option{WithName(uniqueName()), WithTimeout(2 * time.Second)}, opts...)
	b, err := NewRedis(c, l, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// countingHook counts the commands a client sends.
type countingHook struct{ cmds, pipes atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipes.Add(1)
		return next(ctx, cmds)
	}
}

func TestRedisOneRoundTripPerDecision(t *testing.T) {
	c := srv.Client(t)
	b := newRedisForTest(t, c, PerSecond(100, 100), WithFailure(FailOpen)) // FailOpen: no heartbeat traffic
	ctx := context.Background()
	_, err := b.AllowN(ctx, "warm", 1) // loads the script (EVALSHA, then EVAL once)
	require.NoError(t, err)
	h := &countingHook{}
	c.AddHook(h)
	for i := range 50 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed, "decision %d", i)
		require.Equal(t, SourceRedis, d.Source)
	}
	assert.Equal(t, int64(50), h.cmds.Load(), "exactly one command (EVALSHA) per decision")
	assert.Zero(t, h.pipes.Load())
}

// redisTime returns Redis TIME.
func redisTime(t *testing.T, c redis.UniversalClient) time.Time {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	require.NoError(t, err)
	return now
}

// storedTimestamp returns the time of the last update of the bucket stored
// under rkey: the second of the two doubles the scripts pack (see
// luaBucketLib), in µs since the Unix epoch.
func storedTimestamp(t *testing.T, c redis.UniversalClient, rkey string) time.Time {
	t.Helper()
	v, err := c.Get(context.Background(), rkey).Bytes()
	require.NoError(t, err)
	require.Len(t, v, 16)
	us := math.Float64frombits(binary.LittleEndian.Uint64(v[8:])) // struct.pack "d": native order, little-endian here
	return time.UnixMicro(int64(us))
}

// lastArgsHook records the arguments of the last command sent.
type lastArgsHook struct {
	mu   sync.Mutex
	args []any
}

func (h *lastArgsHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lastArgsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		h.args = cmd.Args()
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *lastArgsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *lastArgsHook) last() []any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.args
}

// TestRedisUsesServerTime: without an injected clock, no time is passed to
// the script, which takes it from Redis TIME: the bucket's stored timestamp
// lies between TIME read just before and just after the decision. With an
// injected clock, an hour behind, that clock's time is passed and stored:
// the checks can tell the two apart.
func TestRedisUsesServerTime(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	b := newRedisForTest(t, c, PerSecond(1, 10), WithFailure(FailOpen))
	h := &lastArgsHook{}
	c.AddHook(h)
	before := redisTime(t, c)
	d, err := b.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	args := h.last()
	after := redisTime(t, c)
	require.NotEmpty(t, args)
	assert.Equal(t, "", args[len(args)-1], "no time argument: the script reads TIME; sent %v", args)
	ts := storedTimestamp(t, c, bucketkey.Redis("herdcap", b.r.o.name, "k"))
	assert.False(t, ts.Before(before.Truncate(time.Microsecond)), "stored %v, TIME before %v", ts, before)
	assert.False(t, ts.After(after), "stored %v, TIME after %v", ts, after)

	skewed := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	bs := newRedisForTest(t, c, PerSecond(1, 10), WithFailure(FailOpen), WithClock(fakeClockAt(skewed)))
	d, err = bs.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	args = h.last()
	assert.Equal(t, strconv.FormatInt(skewed.UnixMicro(), 10), args[len(args)-1])
	assert.Equal(t, skewed, storedTimestamp(t, c, bucketkey.Redis("herdcap", bs.r.o.name, "k")), "an injected clock's time is passed instead")
	assert.Greater(t, before.Sub(skewed), 59*time.Minute, "and the two are told apart")
}

// TestRedisExpiresIdleKeys: a written bucket expires when it would be full
// again, but not sooner than a second after its last write.
func TestRedisExpiresIdleKeys(t *testing.T) {
	c := srv.Client(t)
	b := newRedisForTest(t, c, PerSecond(1000, 10), WithFailure(FailOpen))
	ctx := context.Background()
	start := time.Now()
	d, err := b.AllowN(ctx, "idle", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	rkey := bucketkey.Redis("herdcap", b.r.o.name, "idle")
	pttl, err := c.PTTL(ctx, rkey).Result()
	require.NoError(t, err)
	el := time.Since(start)
	// 5 tokens at 1000/s refill in 5 ms, but the key was written with a
	// TTL of one second, and at most el has passed since (however loaded
	// the machine: el is measured, not assumed); PTTL rounds to the ms.
	assert.LessOrEqual(t, pttl, time.Second)
	assert.GreaterOrEqual(t, pttl, time.Second-el-time.Millisecond, "TTL %v, %v after the call began", pttl, el)
	// A full bucket needs no key at all.
	require.Eventually(t, func() bool {
		n, err := c.Exists(ctx, rkey).Result()
		return err == nil && n == 0
	}, 5*time.Second, 5*time.Millisecond)
}

func TestRedisRequiresContextTimeout(t *testing.T) {
	opts := srv.Options()
	opts.ContextTimeoutEnabled = false
	c := redis.NewClient(opts)
	defer c.Close()
	_, err := NewRedis(c, PerSecond(1, 1))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.ErrorContains(t, err, "ContextTimeoutEnabled")
	_, err = NewRedis(nil, PerSecond(1, 1))
	assert.ErrorIs(t, err, ErrInvalidOption)
	_, err = NewRedis(srv.Client(t), PerSecond(1, 1), WithMaxKeys(3))
	assert.ErrorContains(t, err, "WithMaxKeys does not apply to NewRedis")
	_, err = NewRedis(srv.Client(t), PerSecond(1, 1), WithName("a{b}"))
	assert.ErrorContains(t, err, "WithName")
}

func TestRedisUnexpectedReply(t *testing.T) {
	c := srv.Client(t)
	b := newRedisForTest(t, c, PerSecond(1, 1), WithFailure(FailOpen))
	ctx := context.Background()
	// A foreign value of the wrong type under the bucket's key.
	require.NoError(t, c.LPush(ctx, "herdcap:"+b.r.o.name+":{k:taken}", "x").Err())
	_, err := b.AllowN(ctx, "taken", 1)
	require.ErrorIs(t, err, ErrUnexpectedReply)
	assert.ErrorContains(t, err, "WRONGTYPE")
	// A foreign string is treated as a missing bucket.
	require.NoError(t, c.Set(ctx, "herdcap:"+b.r.o.name+":{k:junk}", "zzz 1", time.Minute).Err())
	d, err := b.AllowN(ctx, "junk", 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	// So is one of the right length holding NaNs.
	require.NoError(t, c.Set(ctx, "herdcap:"+b.r.o.name+":{k:junk2}", string(make([]byte, 8))+"\xff\xff\xff\xff\xff\xff\xff\xff", time.Minute).Err())
	d, err = b.AllowN(ctx, "junk2", 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	// The breaker did not count the bad reply as Redis being down.
	d, err = b.AllowN(ctx, "fine", 1)
	require.NoError(t, err)
	assert.Equal(t, SourceRedis, d.Source)
}

func TestParseBucketReply(t *testing.T) {
	for _, v := range []any{nil, "x", []any{int64(1)}, []any{int64(1), int64(1), int64(1), int64(1), "x"}, []any{int64(1), int64(1), int64(-1), int64(1), int64(1)}} {
		_, err := parseBucketReply(v, PerSecond(1, 1), SourceRedis)
		assert.ErrorIs(t, err, ErrUnexpectedReply, "%v", v)
	}
}

func TestClusterKeysSpreadAcrossMasters(t *testing.T) {
	c := cluster.Client(t)
	b := newRedisForTest(t, c, PerSecond(1, 5), WithFailure(FailOpen))
	ctx := context.Background()
	for i := range 64 {
		d, err := b.AllowN(ctx, string(rune('a'+i%26))+string(rune('A'+i/26)), 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	var masters atomic.Int32
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			masters.Add(1)
		}
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, int32(3), masters.Load(), "64 keys land on all three masters")
}

// TestCloseConcurrently: Close is idempotent and safe to call from many
// goroutines at once, on both Redis backends (a check-then-close of the stop
// channel could close it twice and panic).
func TestCloseConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T) Backend
	}{
		{"redis", func(t *testing.T) Backend { return newRedisForTest(t, srv.Client(t), PerSecond(1, 1)) }},
		{"leased", func(t *testing.T) Backend {
			return newLeasedForTest(t, srv.Client(t), PerSecond(1, 1), WithName(uniqueName()))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				b := tc.make(t)
				_, err := b.AllowN(context.Background(), "k", 1)
				require.NoError(t, err)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						assert.NoError(t, b.Close())
						// Every Close returns once the backend is closed.
						_, err := b.AllowN(context.Background(), "k", 1)
						assert.ErrorIs(t, err, ErrClosed)
					}()
				}
				close(start)
				wg.Wait()
			}
		})
	}
}
