package remote

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// The heartbeat and the guarded calls are exercised against real Redis by
// package fleet's tests (the live-node set, FailLocal's share, Close).

func client(t *testing.T, timeouts bool) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: timeouts})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestResolveDefaults(t *testing.T) {
	c, err := Resolve(Config{Client: client(t, true)}, Use{DefaultName: "default"})
	require.NoError(t, err)
	assert.Equal(t, "default", c.Name)
	assert.Equal(t, "herdcap", c.Prefix)
	assert.Len(t, c.Node, 16, "a random node name")
	assert.Equal(t, 20*time.Millisecond, c.Timeout)
	assert.Equal(t, 3, c.BreakerFailures)
	assert.Equal(t, time.Second, c.BreakerOpen)
	assert.Equal(t, time.Second, c.Heartbeat)
	c2, err := Resolve(Config{Client: client(t, true)}, Use{DefaultName: "admission"})
	require.NoError(t, err)
	assert.Equal(t, "admission", c2.Name)
	assert.NotEqual(t, c.Node, c2.Node)
	set := Config{Client: client(t, true), Name: "n", Prefix: "p", Node: "node-1", Timeout: time.Second,
		BreakerFailures: 7, BreakerOpen: time.Minute, Heartbeat: 10 * time.Millisecond}
	got, err := Resolve(set, Use{DefaultName: "default"})
	require.NoError(t, err)
	assert.Equal(t, set, got, "set values are kept")
	// A component without a heartbeat leaves Node and Heartbeat zero.
	c3, err := Resolve(Config{Client: client(t, true)}, Use{DefaultName: "default", NoHeartbeat: "none here"})
	require.NoError(t, err)
	assert.Empty(t, c3.Node)
	assert.Zero(t, c3.Heartbeat)
	assert.Equal(t, 20*time.Millisecond, c3.Timeout, "the other defaults apply")
}

func TestResolveErrors(t *testing.T) {
	ok := client(t, true)
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{}, "Redis.Client is nil"},
		{Config{Client: client(t, false)}, "Redis.Client: the redis client must be created with ContextTimeoutEnabled"},
		{Config{Client: ok, Name: "a:b"}, "Redis.Name must not contain"},
		{Config{Client: ok, Name: " "}, "Redis.Name must not contain"},
		{Config{Client: ok, Prefix: strings.Repeat("p", 65)}, "Redis.Prefix must be 1 to 64 bytes"},
		{Config{Client: ok, Node: strings.Repeat("n", 257)}, "Redis.Node must be at most 256 bytes"},
		{Config{Client: ok, Timeout: -1}, "Redis.Timeout must be >= 0"},
		{Config{Client: ok, BreakerFailures: -1}, "Redis.BreakerFailures must be >= 0"},
		{Config{Client: ok, BreakerOpen: -1}, "Redis.BreakerOpen must be >= 0"},
		{Config{Client: ok, Heartbeat: 9 * time.Millisecond}, "Redis.Heartbeat must be 0 or >= 10ms"},
	} {
		_, err := Resolve(tc.c, Use{DefaultName: "default"})
		require.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.want)
		assert.ErrorContains(t, err, tc.want)
	}
	// Node and Heartbeat where no heartbeat runs: rejected, with the reason,
	// and wrapping the package's own error.
	errOther := errors.New("other: invalid config")
	none := Use{DefaultName: "default", Invalid: errOther, NoHeartbeat: "no heartbeat here"}
	_, err := Resolve(Config{Client: ok, Node: "n1"}, none)
	require.ErrorIs(t, err, errOther)
	assert.EqualError(t, err, `other: invalid config: Redis.Node must be empty, got "n1": no heartbeat here`)
	_, err = Resolve(Config{Client: ok, Heartbeat: time.Second}, none)
	require.ErrorIs(t, err, errOther)
	assert.EqualError(t, err, `other: invalid config: Redis.Heartbeat must be 0, got 1s: no heartbeat here`)
}

func TestNoHeartbeatUnder(t *testing.T) {
	assert.Empty(t, NoHeartbeatUnder("Config.Failure", "local"))
	assert.Equal(t, "only FailLocal runs the live-node heartbeat they configure, and Config.Failure is FailClosed",
		NoHeartbeatUnder("Config.Failure", "closed"))
	assert.Contains(t, NoHeartbeatUnder("SharedConfig.Failure", "open"), "SharedConfig.Failure is FailOpen")
}

func TestLinkWithoutHeartbeat(t *testing.T) {
	l, err := Open(Config{Client: client(t, true)}, Use{DefaultName: "default", NoHeartbeat: "open"}, nil, nil, "open")
	require.NoError(t, err)
	assert.Equal(t, int64(1), l.Live(), "one node until a heartbeat says otherwise")
	assert.NotNil(t, l.Guard())
	assert.NotNil(t, l.Logger())
	assert.False(t, l.Closed())
	l.Close()
	l.Close()
	assert.True(t, l.Closed())
}

// TestHeartbeatTime: the live-node set is judged on the component's time,
// as its buckets are: an injected clock's, else Redis TIME.
func TestHeartbeatTime(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := s.Client(t)
	t0 := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // far from Redis TIME
	clk := fakeclock.New(t0)
	open := func(node string, clock limiter.Clock) *Link {
		l, err := Open(Config{Client: c, Name: "hb", Node: node, Heartbeat: time.Second, Timeout: time.Second}, Use{DefaultName: "default"},
			clock, nil, "local")
		require.NoError(t, err)
		t.Cleanup(l.Close)
		return l
	}
	a := open("a", clk)
	a.StartHeartbeat()
	score, err := c.ZScore(ctx, "herdcap:hb:nodes", "a").Result()
	require.NoError(t, err)
	assert.Equal(t, float64(t0.UnixMilli()), score, "the injected clock's time, in ms")
	assert.Equal(t, int64(1), a.Live())

	// Another node counts while it beats, and not once it has left.
	b := open("b", clk)
	b.StartHeartbeat()
	assert.Equal(t, int64(2), b.Live(), "a and b, both beating at t0")
	b.Close() // leaves the set; a beats on
	clk.Add(time.Second)
	assert.Equal(t, int64(1), a.Live())
	// A node that last beat at t0 counts for three intervals on the clock
	// (no real time passes), then no longer.
	require.NoError(t, c.ZAdd(ctx, "herdcap:hb:nodes", redis.Z{Score: float64(t0.UnixMilli()), Member: "stale"}).Err())
	clk.Add(time.Second)
	assert.Equal(t, int64(2), a.Live(), "stale beat at t0, 2 s ago on the clock: live")
	clk.Add(2 * time.Second)
	assert.Equal(t, int64(1), a.Live(), "4 s after its beat on the clock: gone")

	// Without an injected clock, Redis TIME.
	r := open("r", nil)
	r.StartHeartbeat()
	score, err = c.ZScore(ctx, "herdcap:hb:nodes", "r").Result()
	require.NoError(t, err)
	assert.InDelta(t, float64(time.Now().UnixMilli()), score, float64(time.Minute.Milliseconds()), "Redis TIME")
}
