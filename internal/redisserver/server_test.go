package redisserver_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redisserver"
	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/limiter"
)

// start starts a server for t and stops it in t.Cleanup. A missing
// redis-server skips the test, or fails it under CI (redistest.Require).
func start(t *testing.T, cfg redisserver.Config) *redisserver.Server {
	t.Helper()
	redistest.Require(t)
	s, err := redisserver.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Stop()) })
	return s
}

// do runs one command through Do and requires success.
func do(t *testing.T, s *redisserver.Server, args ...string) any {
	t.Helper()
	v, err := s.Do(args...)
	require.NoError(t, err, "%v", args)
	return v
}

// infoPID asks the server for its process id.
func infoPID(t *testing.T, s *redisserver.Server) int {
	t.Helper()
	info, ok := do(t, s, "INFO", "server").(string)
	require.True(t, ok)
	v, ok := redisserver.InfoField(info, "process_id")
	require.True(t, ok)
	pid, err := strconv.Atoi(v)
	require.NoError(t, err)
	return pid
}

func TestStartDoStop(t *testing.T) {
	s := start(t, redisserver.Config{})
	assert.Equal(t, "127.0.0.1:"+strconv.Itoa(s.Port()), s.Addr())
	assert.NotEqual(t, 6379, s.Port())
	assert.Zero(t, s.BusPort())
	assert.DirExists(t, s.Dir())
	pid := s.PID()
	require.NotZero(t, pid)
	assert.Equal(t, pid, infoPID(t, s))
	assert.Equal(t, "OK", do(t, s, "SET", "k", "v"))
	assert.Equal(t, "v", do(t, s, "GET", "k"))
	assert.Equal(t, int64(1), do(t, s, "DBSIZE"))
	assert.Nil(t, do(t, s, "GET", "missing"))
	_, err := s.Do("NO-SUCH-COMMAND")
	assert.ErrorContains(t, err, "unknown command")
	_, err = s.Do()
	assert.ErrorContains(t, err, "no command")
	// The harness's settings: loopback only, no persistence.
	assert.Equal(t, []any{"bind", "127.0.0.1"}, do(t, s, "CONFIG", "GET", "bind"))
	assert.Equal(t, []any{"appendonly", "no"}, do(t, s, "CONFIG", "GET", "appendonly"))

	dir := s.Dir()
	require.NoError(t, s.Stop())
	require.NoError(t, s.Stop(), "Stop is idempotent")
	assert.Zero(t, s.PID())
	assert.False(t, redisserver.ProcessExists(pid), "process %d outlived Stop", pid)
	assert.NoDirExists(t, dir)
	_, err = s.Do("PING")
	assert.ErrorContains(t, err, "not running")
	assert.ErrorContains(t, s.Restart(), "stopped")
	assert.ErrorContains(t, s.Pause(), "not running")
	assert.NoError(t, s.Resume())
	assert.NoError(t, s.Kill())
}

func TestFaultControls(t *testing.T) {
	s := start(t, redisserver.Config{})
	port := s.Port()
	c := redis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	// Generous for a loaded CI machine under -race; only reached when a
	// command that should succeed hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

	pid := s.PID()
	require.NoError(t, s.Kill())
	require.NoError(t, s.Kill(), "Kill of a killed server does nothing")
	assert.Zero(t, s.PID())
	assert.False(t, redisserver.ProcessExists(pid))
	assert.Error(t, c.Ping(ctx).Err())
	_, err := s.Do("PING")
	assert.ErrorContains(t, err, "not running")
	assert.ErrorContains(t, s.Pause(), "not running")
	require.NoError(t, s.Resume(), "Resume of a killed server does nothing")

	require.NoError(t, s.Restart())
	assert.Equal(t, port, s.Port())
	assert.NotEqual(t, pid, s.PID())
	assert.Equal(t, s.PID(), infoPID(t, s))
	require.NoError(t, c.Ping(ctx).Err())
	assert.ErrorIs(t, c.Get(ctx, "k").Err(), redis.Nil, "a restart starts with an empty dataset")

	require.NoError(t, s.Pause())
	require.NoError(t, s.Pause(), "Pause of a paused server does nothing")
	_, err = s.Do("PING")
	assert.ErrorContains(t, err, "paused")
	// A paused server accepts connections (the kernel does) but answers
	// nothing: the command runs into its deadline.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	err = c.Ping(short).Err()
	cancelShort()
	assert.Error(t, err)
	require.NoError(t, s.Resume())
	require.NoError(t, s.Resume(), "Resume of a running server does nothing")
	assert.Equal(t, "PONG", do(t, s, "PING"))

	// Restart of a paused server kills it first.
	require.NoError(t, s.Pause())
	require.NoError(t, s.Restart())
	assert.Equal(t, "PONG", do(t, s, "PING"))
}

func TestPersistenceSurvivesRestart(t *testing.T) {
	s := start(t, redisserver.Config{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	do(t, s, "SET", "k", "kept")
	require.NoError(t, s.Restart())
	assert.Equal(t, "kept", do(t, s, "GET", "k"))
}

func TestClusterMode(t *testing.T) {
	s := start(t, redisserver.Config{Cluster: true})
	require.NotZero(t, s.BusPort())
	assert.NotEqual(t, s.Port(), s.BusPort())
	info, ok := do(t, s, "CLUSTER", "INFO").(string)
	require.True(t, ok)
	state, ok := redisserver.InfoField(info, "cluster_state")
	assert.True(t, ok)
	assert.Equal(t, "fail", state, "no slots are assigned until the caller forms a cluster")
}

// TestIdentityCheck: a server answering on the port that is not the process
// the package started is told apart, so Start and Do never mistake it for
// their own.
func TestIdentityCheck(t *testing.T) {
	s := start(t, redisserver.Config{})
	require.NoError(t, s.ProbeAs(s.PID()))
	assert.ErrorIs(t, s.ProbeAs(s.PID()+1), redisserver.ErrPortTaken)
}

func TestStartFailureCarriesLog(t *testing.T) {
	redistest.Require(t)
	// An unknown directive makes redis-server exit at once.
	s, err := redisserver.Start(redisserver.Config{Args: []string{"--no-such-directive", "1"}})
	require.Error(t, err)
	assert.Nil(t, s)
	assert.Contains(t, err.Error(), "exited during start")
	assert.Contains(t, err.Error(), "no-such-directive")
}

func TestConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		cfg  redisserver.Config
		want string
	}{
		{redisserver.Config{StartTimeout: -time.Second}, "redisserver.Config.StartTimeout"},
		{redisserver.Config{Args: []string{"--port", "6379"}}, "redisserver.Config.Args: --port"},
		{redisserver.Config{Args: []string{"--BIND", "0.0.0.0"}}, "redisserver.Config.Args: --BIND"},
		{redisserver.Config{Args: []string{"--maxmemory", "1mb", "--dir", "/"}}, "redisserver.Config.Args: --dir"},
		{redisserver.Config{Args: []string{"--cluster-enabled", "yes"}}, "--cluster-enabled"},
	} {
		s, err := redisserver.Start(tc.cfg)
		assert.Nil(t, s)
		assert.ErrorIs(t, err, limiter.ErrInvalidConfig)
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := redisserver.Available()
	require.ErrorIs(t, err, redisserver.ErrNoRedis)
	assert.Contains(t, err.Error(), redisserver.InstallHint)
	s, err := redisserver.Start(redisserver.Config{})
	assert.Nil(t, s)
	assert.True(t, errors.Is(err, redisserver.ErrNoRedis), "%v", err)
}
