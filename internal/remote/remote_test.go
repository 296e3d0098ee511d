package remote

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
	c, err := Resolve(Config{Client: client(t, true)}, "default")
	require.NoError(t, err)
	assert.Equal(t, "default", c.Name)
	assert.Equal(t, "herdcap", c.Prefix)
	assert.Len(t, c.Node, 16, "a random node name")
	assert.Equal(t, 20*time.Millisecond, c.Timeout)
	assert.Equal(t, 3, c.BreakerFailures)
	assert.Equal(t, time.Second, c.BreakerOpen)
	assert.Equal(t, time.Second, c.Heartbeat)
	c2, err := Resolve(Config{Client: client(t, true)}, "admission")
	require.NoError(t, err)
	assert.Equal(t, "admission", c2.Name)
	assert.NotEqual(t, c.Node, c2.Node)
	set := Config{Client: client(t, true), Name: "n", Prefix: "p", Node: "node-1", Timeout: time.Second,
		BreakerFailures: 7, BreakerOpen: time.Minute, Heartbeat: 10 * time.Millisecond}
	got, err := Resolve(set, "default")
	require.NoError(t, err)
	assert.Equal(t, set, got, "set values are kept")
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
		_, err := Resolve(tc.c, "default")
		require.ErrorIs(t, err, limiter.ErrInvalidConfig, tc.want)
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestLinkWithoutHeartbeat(t *testing.T) {
	l, err := Open(Config{Client: client(t, true)}, "default", nil, nil, "open")
	require.NoError(t, err)
	assert.Equal(t, int64(1), l.Live(), "one node until a heartbeat says otherwise")
	assert.NotNil(t, l.Guard())
	assert.NotNil(t, l.Logger())
	assert.False(t, l.Closed())
	l.Close()
	l.Close()
	assert.True(t, l.Closed())
}
