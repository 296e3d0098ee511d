package fleet

import (
	"context"
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/limiter"
)

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

func TestStrictOneRoundTripPerDecision(t *testing.T) {
	c := srv.Client(t)
	b := newStrictForTest(t, c, limiter.PerSecond(100, 100), Redis{}, failOpen) // FailOpen: no heartbeat traffic
	ctx := context.Background()
	_, err := b.AllowN(ctx, "warm", 1) // loads the script (EVALSHA, then EVAL once)
	require.NoError(t, err)
	h := &countingHook{}
	c.AddHook(h)
	for i := range 50 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, d.Allowed, "decision %d", i)
		require.Equal(t, limiter.ViaRedis, d.Via)
	}
	// Refusals, the denial tail and a carried limit included.
	for range 50 {
		d, err := b.Take(ctx, limiter.Request{Key: "k", N: 1, Limit: limiter.PerSecond(1, 1)})
		require.NoError(t, err)
		require.Equal(t, limiter.ViaRedis, d.Via)
	}
	assert.Equal(t, int64(100), h.cmds.Load(), "exactly one command (EVALSHA) per decision")
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
// bucketlua.Lib), in µs since the Unix epoch.
func storedTimestamp(t *testing.T, c redis.UniversalClient, rkey string) time.Time {
	t.Helper()
	v, err := c.Get(context.Background(), rkey).Bytes()
	require.NoError(t, err)
	require.Contains(t, []int{16, 80}, len(v))
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
func TestStrictUsesServerTime(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	b := newStrictForTest(t, c, limiter.PerSecond(1, 10), Redis{}, failOpen)
	h := &lastArgsHook{}
	c.AddHook(h)
	before := redisTime(t, c)
	d, err := b.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	args := h.last()
	after := redisTime(t, c)
	require.NotEmpty(t, args)
	assert.Equal(t, "", args[8], "no time argument: the script reads TIME; sent %v", args)
	ts := storedTimestamp(t, c, bucketkey.Redis("herdcap", b.s.link.Name, "k"))
	assert.False(t, ts.Before(before.Truncate(time.Microsecond)), "stored %v, TIME before %v", ts, before)
	assert.False(t, ts.After(after), "stored %v, TIME after %v", ts, after)

	skewed := time.Now().Add(-time.Hour).Truncate(time.Microsecond)
	bs := newStrictForTest(t, c, limiter.PerSecond(1, 10), Redis{}, Config{Config: limiter.Config{Clock: fakeClockAt(skewed)}, Failure: FailOpen})
	d, err = bs.AllowN(ctx, "k", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	args = h.last()
	assert.Equal(t, strconv.FormatInt(skewed.UnixMicro(), 10), args[8])
	assert.Equal(t, skewed, storedTimestamp(t, c, bucketkey.Redis("herdcap", bs.s.link.Name, "k")), "an injected clock's time is passed instead")
	assert.Greater(t, before.Sub(skewed), 59*time.Minute, "and the two are told apart")
}

// TestRedisExpiresIdleKeys: a written bucket expires when it would be full
// again, but not sooner than a second after its last write.
func TestStrictExpiresIdleKeys(t *testing.T) {
	c := srv.Client(t)
	b := newStrictForTest(t, c, limiter.PerSecond(1000, 10), Redis{}, failOpen)
	ctx := context.Background()
	start := time.Now()
	d, err := b.AllowN(ctx, "idle", 5)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	rkey := bucketkey.Redis("herdcap", b.s.link.Name, "idle")
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

func TestStrictConfigErrors(t *testing.T) {
	opts := srv.Options()
	opts.ContextTimeoutEnabled = false
	c := redis.NewClient(opts)
	defer c.Close()
	ok := srv.Client(t)
	for _, tc := range []struct {
		r    Redis
		cfg  Config
		want string
	}{
		{Redis{Client: c}, Config{}, "Redis.Client: the redis client must be created with ContextTimeoutEnabled"},
		{Redis{}, Config{}, "limiter: invalid config: Redis.Client is nil"},
		{Redis{Client: ok, Name: "a{b}"}, Config{}, "Redis.Name must not contain braces"},
		{Redis{Client: ok, Prefix: "a:b"}, Config{}, "Redis.Prefix must not contain"},
		{Redis{Client: ok, Name: strings.Repeat("n", 65)}, Config{}, "Redis.Name must be 1 to 64 bytes"},
		{Redis{Client: ok, Node: strings.Repeat("n", 257)}, Config{}, "Redis.Node must be at most 256 bytes"},
		{Redis{Client: ok, Timeout: -1}, Config{}, "Redis.Timeout must be >= 0"},
		{Redis{Client: ok, BreakerFailures: -1}, Config{}, "Redis.BreakerFailures must be >= 0"},
		{Redis{Client: ok, BreakerOpen: -1}, Config{}, "Redis.BreakerOpen must be >= 0"},
		{Redis{Client: ok, Heartbeat: time.Millisecond}, Config{}, "Redis.Heartbeat must be 0 or >= 10ms"},
		{Redis{Client: ok}, Config{Failure: 7}, "Config.Failure is unknown"},
		// Only FailLocal runs the heartbeat: elsewhere its fields are
		// rejected rather than ignored.
		{Redis{Client: ok, Node: "n1"}, Config{Failure: FailClosed},
			`limiter: invalid config: Redis.Node must be empty, got "n1": only FailLocal runs the live-node heartbeat they configure, and Config.Failure is FailClosed`},
		{Redis{Client: ok, Heartbeat: time.Second}, Config{Failure: FailOpen},
			"Redis.Heartbeat must be 0, got 1s: only FailLocal runs the live-node heartbeat they configure, and Config.Failure is FailOpen"},
		{Redis{Client: ok}, Config{Config: limiter.Config{MaxKeys: -1}}, "limiter: invalid config: Config.MaxKeys must be >= 0, got -1"},
		{Redis{Client: ok}, Config{Config: limiter.Config{Ramp: -time.Second}}, "Config.Ramp must be >= 0 or NoRamp"},
	} {
		b, err := NewStrict(tc.r, limiter.PerSecond(1, 1), tc.cfg)
		require.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.want)
		assert.ErrorContains(t, err, tc.want)
		assert.Nil(t, b)
	}
	_, err := NewStrict(Redis{Client: ok}, limiter.Limit{Rate: 1}, Config{})
	assert.ErrorIs(t, err, limiter.ErrInvalidLimit)
}

func TestStrictUnexpectedReply(t *testing.T) {
	c := srv.Client(t)
	b := newStrictForTest(t, c, limiter.PerSecond(1, 1), Redis{}, failOpen)
	ctx := context.Background()
	// A foreign value of the wrong type under the bucket's key.
	require.NoError(t, c.LPush(ctx, "herdcap:"+b.s.link.Name+":{k:taken}", "x").Err())
	_, err := b.AllowN(ctx, "taken", 1)
	require.ErrorIs(t, err, ErrUnexpectedReply)
	assert.ErrorContains(t, err, "WRONGTYPE")
	// A foreign string is treated as a missing bucket.
	require.NoError(t, c.Set(ctx, "herdcap:"+b.s.link.Name+":{k:junk}", "zzz 1", time.Minute).Err())
	d, err := b.AllowN(ctx, "junk", 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	// So is one of the right length holding NaNs.
	require.NoError(t, c.Set(ctx, "herdcap:"+b.s.link.Name+":{k:junk2}", string(make([]byte, 8))+"\xff\xff\xff\xff\xff\xff\xff\xff", time.Minute).Err())
	d, err = b.AllowN(ctx, "junk2", 1)
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	// The breaker did not count the bad reply as Redis being down.
	d, err = b.AllowN(ctx, "fine", 1)
	require.NoError(t, err)
	assert.Equal(t, limiter.ViaRedis, d.Via)
	// An extended bucket (80 bytes) holding a NaN is a missing bucket too.
	require.NoError(t, c.Set(ctx, "herdcap:"+b.s.link.Name+":{k:junk3}", string(make([]byte, 72))+"\xff\xff\xff\xff\xff\xff\xff\xff", time.Minute).Err())
	d, err = b.Take(ctx, limiter.Request{Key: "junk3", N: 1, Limit: limiter.PerSecond(1, 1)})
	require.NoError(t, err)
	assert.True(t, d.Allowed)
}

func TestParseBucketReply(t *testing.T) {
	i := int64(1)
	for _, v := range []any{nil, "x", []any{i}, []any{i, i, i, i, "x"}, []any{i, i, int64(-1), i, i},
		[]any{i, i, i, i, i, "x"}, []any{i, i, i, i, i, "0.5", int64(0)}, []any{i, i, i, i, i, "nan", i}, []any{i, i, i, i, i, "1", "1"}} {
		_, err := parseBucketReply(v, limiter.PerSecond(1, 1), limiter.ViaRedis)
		assert.ErrorIs(t, err, ErrUnexpectedReply, "%v", v)
	}
	d, err := parseBucketReply([]any{i, i, i, i, i, "0.000025", int64(30)}, limiter.PerMinute(60, 10), limiter.ViaRedis)
	require.NoError(t, err)
	assert.InDelta(t, 25, d.Limit.PerSecond(), 1e-9, "the rate in force, per µs")
	assert.Equal(t, time.Minute, d.Limit.Period, "in the period of the limit asked for")
	assert.Equal(t, 30, d.Limit.Burst)
}

func TestClusterKeysSpreadAcrossMasters(t *testing.T) {
	c := cluster.Client(t)
	b := newStrictForTest(t, c, limiter.PerSecond(1, 5), Redis{}, failOpen)
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
// goroutines at once, on both backends (a check-then-close of the stop
// channel could close it twice and panic).
func TestCloseConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T) budget
	}{
		{"strict", func(t *testing.T) budget {
			return newStrictForTest(t, srv.Client(t), limiter.PerSecond(1, 1), Redis{}, Config{})
		}},
		{"leased", func(t *testing.T) budget {
			return newLeasedForTest(t, srv.Client(t), limiter.PerSecond(1, 1), Redis{}, LeasedConfig{})
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
						assert.ErrorIs(t, err, limiter.ErrClosed)
					}()
				}
				close(start)
				wg.Wait()
			}
		})
	}
}

// TestStrictKeepsTailsInRedis: a refusal writes the key's denial tail and
// nothing else (the tokens and their time stay as stored, so no later
// decision's arithmetic changes), and the key lives until the tail has
// passed, not only until the bucket is full.
func TestStrictKeepsTailsInRedis(t *testing.T) {
	c := srv.Client(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	b := newStrictForTest(t, c, limiter.PerSecond(10, 1), Redis{}, Config{Config: limiter.Config{Clock: fakeClockAt(now)}, Failure: FailOpen})
	rkey := bucketkey.Redis("herdcap", b.s.link.Name, "k")
	d, err := b.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	v, err := c.Get(ctx, rkey).Bytes()
	require.NoError(t, err)
	assert.Len(t, v, 16, "a bucket with no tail is two doubles")
	for i := range 100 {
		d, err := b.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.False(t, d.Allowed)
		require.Equal(t, time.Duration(i+1)*100*time.Millisecond, d.RetryAfter)
	}
	v, err = c.Get(ctx, rkey).Bytes()
	require.NoError(t, err)
	assert.Len(t, v, 80, "with its tail")
	assert.Equal(t, now, storedTimestamp(t, c, rkey), "the refusals left the tokens' time as the take wrote it")
	pttl, err := c.PTTL(ctx, rkey).Result()
	require.NoError(t, err)
	assert.Greater(t, pttl, 9*time.Second, "kept until the tail (10.1 s ahead) has passed, not the bucket's 100 ms refill")
}
