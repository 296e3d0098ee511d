package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

// ctxTimeout bounds commands that should succeed: generous for a loaded CI
// machine under -race, and only ever reached on a real failure.
const ctxTimeout = 5 * time.Second

func cmdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ctxTimeout)
	t.Cleanup(cancel)
	return ctx
}

// requireGone waits briefly for pid to disappear; the harness reaps before
// returning, so it should already be gone.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.NotZero(t, pid)
	assert.False(t, redistest.PIDAlive(pid), "process %d still exists", pid)
}

// serverPID asks the server for its process id through c.
func serverPID(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(cmdCtx(t), "server").Result()
	require.NoError(t, err)
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			require.NoError(t, err)
			return pid
		}
	}
	t.Fatalf("no process_id in INFO server")
	return 0
}

func TestStartPing(t *testing.T) {
	s := redistest.Start(t)
	host, port, err := net.SplitHostPort(s.Addr())
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1", host)
	assert.Equal(t, strconv.Itoa(s.Port()), port)
	assert.NotEqual(t, 6379, s.Port(), "must never use the default port")

	c := s.Client(t)
	ctx := cmdCtx(t)
	require.NoError(t, c.Ping(ctx).Err())
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	assert.Equal(t, "v", c.Get(ctx, "k").Val())
	assert.Equal(t, s.PID(), serverPID(t, c), "client must reach the process we started")

	opts := s.Options()
	assert.True(t, opts.ContextTimeoutEnabled)
	assert.Equal(t, s.Addr(), opts.Addr)
	assert.NotSame(t, opts, s.Options(), "Options returns a fresh copy")

	// The server runs with the harness's settings.
	cfg, err := c.ConfigGet(ctx, "*").Result()
	require.NoError(t, err)
	assert.Equal(t, "", cfg["save"])
	assert.Equal(t, "no", cfg["appendonly"])
	assert.Equal(t, "127.0.0.1", cfg["bind"])
	assert.Equal(t, "yes", cfg["protected-mode"])
	assert.Equal(t, s.Dir(), cfg["dir"])
}

func TestServersAreIndependent(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	require.NotEqual(t, a.Addr(), b.Addr())
	ca, cb := a.Client(t), b.Client(t)
	ctx := cmdCtx(t)
	require.NoError(t, ca.Set(ctx, "k", "a", 0).Err())
	assert.ErrorIs(t, cb.Get(ctx, "k").Err(), redis.Nil)
}

func TestKillThenCommandsFail(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	require.NoError(t, c.Set(cmdCtx(t), "k", "v", 0).Err())
	pid := s.PID()

	s.Kill(t)
	requireGone(t, pid)
	assert.Zero(t, s.PID())
	err := c.Get(cmdCtx(t), "k").Err()
	require.Error(t, err)
	assert.NotErrorIs(t, err, redis.Nil)
	// A fresh connection is refused too: nothing listens on the port.
	_, err = net.DialTimeout("tcp", s.Addr(), time.Second)
	require.Error(t, err)

	s.Kill(t) // a second Kill is a no-op
	s.Resume(t)
	assert.Zero(t, s.PID())
}

func TestRestartSamePortEmptyDataset(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	addr, pid := s.Addr(), s.PID()
	require.NoError(t, c.Set(cmdCtx(t), "k", "v", 0).Err())

	s.Restart(t) // from running
	assert.Equal(t, addr, s.Addr())
	requireGone(t, pid)
	require.NotEqual(t, pid, s.PID())
	assert.ErrorIs(t, c.Get(cmdCtx(t), "k").Err(), redis.Nil, "dataset must be empty")
	require.NoError(t, c.Set(cmdCtx(t), "k", "v2", 0).Err())
	assert.Equal(t, s.PID(), serverPID(t, c))

	s.Kill(t)
	require.Error(t, c.Ping(cmdCtx(t)).Err())
	s.Restart(t) // from killed
	assert.Equal(t, addr, s.Addr())
	assert.ErrorIs(t, c.Get(cmdCtx(t), "k").Err(), redis.Nil)
	assert.Equal(t, s.PID(), serverPID(t, c))
}

func TestPauseTimesOutAndResumeRestores(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	require.NoError(t, c.Set(cmdCtx(t), "k", "v", 0).Err())
	pid := s.PID()

	s.Pause(t)
	s.Pause(t) // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Get(ctx, "k").Err()
	elapsed := time.Since(start)
	require.Error(t, err)
	var ne net.Error
	assert.True(t, errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()),
		"want a timeout, got %v", err)
	// The deadline is 50 ms; 2 s leaves room for a loaded -race CI machine
	// while still far below ClientIOTimeout (3 s), which a client ignoring
	// the context would hit.
	assert.Less(t, elapsed, 2*time.Second)
	assert.Equal(t, pid, s.PID(), "paused, not killed")

	s.Resume(t)
	s.Resume(t) // idempotent
	assert.Equal(t, "v", c.Get(cmdCtx(t), "k").Val(), "data survives a pause")
}

func TestFaultSequences(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ping := func(step string) {
		t.Helper()
		require.NoError(t, c.Ping(cmdCtx(t)).Err(), step)
	}
	var pids []int
	steps := []struct {
		name string
		do   func(testing.TB)
		up   bool
	}{
		{"kill", s.Kill, false},
		{"kill again", s.Kill, false},
		{"restart", s.Restart, true},
		{"pause", s.Pause, false},
		{"pause again", s.Pause, false},
		{"resume", s.Resume, true},
		{"pause", s.Pause, false},
		{"kill while paused", s.Kill, false},
		{"resume after kill", s.Resume, false},
		{"restart", s.Restart, true},
		{"pause", s.Pause, false},
		{"restart while paused", s.Restart, true},
		{"restart while running", s.Restart, true},
	}
	for _, st := range steps {
		if pid := s.PID(); pid != 0 {
			pids = append(pids, pid)
		}
		st.do(t)
		if st.up {
			ping(st.name)
			assert.Equal(t, s.PID(), serverPID(t, c), st.name)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			assert.Error(t, c.Ping(ctx).Err(), st.name)
			cancel()
		}
	}
	live := s.PID()
	for _, pid := range pids {
		if pid != live {
			requireGone(t, pid)
		}
	}
}

func TestFlush(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	ctx := cmdCtx(t)
	for i := range 10 {
		require.NoError(t, c.Set(ctx, fmt.Sprint("k", i), i, 0).Err())
	}
	require.Equal(t, int64(10), c.DBSize(ctx).Val())
	s.Flush(t)
	assert.Equal(t, int64(0), c.DBSize(ctx).Val())

	s.Pause(t)
	ft := &fakeTB{TB: t}
	s.Flush(ft)
	assert.Contains(t, ft.fatal, "paused")
	s.Kill(t)
	ft = &fakeTB{TB: t}
	s.Flush(ft)
	assert.Contains(t, ft.fatal, "not running")
}

func TestStopCleansUpEvenWhenPaused(t *testing.T) {
	var pids []int
	var dirs []string
	t.Run("owner", func(t *testing.T) {
		a, b := redistest.Start(t), redistest.Start(t)
		b.Pause(t) // Stop must still kill a stopped process
		pids = append(pids, a.PID(), b.PID())
		dirs = append(dirs, a.Dir(), b.Dir())
		for _, d := range dirs {
			require.DirExists(t, d)
		}
	})
	for _, pid := range pids {
		requireGone(t, pid)
	}
	for _, d := range dirs {
		assert.NoDirExists(t, d)
	}
}

func TestStopIdempotent(t *testing.T) {
	s := redistest.Start(t)
	pid := s.PID()
	s.Stop()
	s.Stop()
	requireGone(t, pid)
	assert.Zero(t, s.PID())
	ft := &fakeTB{TB: t}
	s.Restart(ft)
	assert.Contains(t, ft.fatal, "stopped")
	var nilServer *redistest.Server
	nilServer.Stop()
	assert.Nil(t, nilServer.Options())
}

func TestStartMain(t *testing.T) {
	s, stop, err := redistest.StartMain()
	require.NoError(t, err)
	defer stop() // in case of an early failure; stop is idempotent
	c := redis.NewClient(s.Options())
	require.NoError(t, c.Ping(cmdCtx(t)).Err())
	require.NoError(t, c.Close())
	pid, dir := s.PID(), s.Dir()
	stop()
	stop()
	requireGone(t, pid)
	assert.NoDirExists(t, dir)
}

func TestOptionsValidated(t *testing.T) {
	for _, tc := range []struct {
		opt  redistest.Option
		want string
	}{
		{redistest.WithArgs("--port", "6379"), "--port"},
		{redistest.WithArgs("--BIND", "0.0.0.0"), "--BIND"},
		{redistest.WithArgs("--dir", "/"), "--dir"},
		{redistest.WithArgs("--cluster-enabled", "yes"), "--cluster-enabled"},
		{redistest.WithStartTimeout(0), "WithStartTimeout"},
	} {
		ft := &fakeTB{TB: t}
		assert.Nil(t, redistest.Start(ft, tc.opt))
		assert.Contains(t, ft.fatal, tc.want)
		_, stop, err := redistest.StartMain(tc.opt)
		stop()
		assert.ErrorContains(t, err, tc.want)
	}
}

func TestWithArgs(t *testing.T) {
	s := redistest.Start(t, redistest.WithArgs("--maxmemory", "16mb"))
	c := s.Client(t)
	assert.Equal(t, map[string]string{"maxmemory": "16777216"}, c.ConfigGet(cmdCtx(t), "maxmemory").Val())
}

func TestWithArgsPersistenceSurvivesRestart(t *testing.T) {
	s := redistest.Start(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "always"))
	c := s.Client(t)
	require.NoError(t, c.Set(cmdCtx(t), "k", "kept", 0).Err())
	s.Restart(t)
	assert.Equal(t, "kept", c.Get(cmdCtx(t), "k").Val())
}

func TestStartTimeoutReportsLog(t *testing.T) {
	// A server that cannot start: an unknown directive makes redis-server
	// exit at once, and the failure must carry its log.
	_, stop, err := redistest.StartMain(redistest.WithArgs("--no-such-directive", "1"))
	stop()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited during start")
	assert.Contains(t, err.Error(), "no-such-directive")
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	require.ErrorIs(t, redistest.Available(), redistest.ErrNoRedis)
	_, stop, err := redistest.StartMain()
	stop()
	require.ErrorIs(t, err, redistest.ErrNoRedis)
	_, stop, err = redistest.StartClusterMain()
	stop()
	require.ErrorIs(t, err, redistest.ErrNoRedis)
	assert.Contains(t, err.Error(), redistest.InstallHint)

	t.Run("skip outside CI", func(t *testing.T) {
		t.Setenv("CI", "")
		for name, use := range map[string]func(testing.TB){
			"Require":      redistest.Require,
			"Start":        func(tb testing.TB) { redistest.Start(tb) },
			"StartCluster": func(tb testing.TB) { redistest.StartCluster(tb) },
			"nil Server":   func(tb testing.TB) { (*redistest.Server)(nil).Client(tb) },
			"nil Cluster":  func(tb testing.TB) { (*redistest.Cluster)(nil).Flush(tb) },
		} {
			ft := &fakeTB{TB: t}
			use(ft)
			assert.Contains(t, ft.skip, "apt-get install -y redis-server", name)
			assert.NotContains(t, ft.fatal, "CI is set", name)
		}
	})
	t.Run("fail under CI", func(t *testing.T) {
		t.Setenv("CI", "true")
		for name, use := range map[string]func(testing.TB){
			"Require":    redistest.Require,
			"Start":      func(tb testing.TB) { redistest.Start(tb) },
			"nil Server": func(tb testing.TB) { (*redistest.Server)(nil).Kill(tb) },
		} {
			ft := &fakeTB{TB: t}
			use(ft)
			assert.Empty(t, ft.skip, name)
			assert.Contains(t, ft.fatal, "apt-get install -y redis-server", name)
		}
	})
}

func TestNilServerWithRedisFails(t *testing.T) {
	ft := &fakeTB{TB: t}
	(*redistest.Server)(nil).Client(ft)
	assert.Empty(t, ft.skip)
	assert.Contains(t, ft.fatal, "nil *Server")
}

// fakeTB records Fatalf and Skipf instead of ending the test, so the
// harness's failure paths can be checked. The harness returns right after
// either call, as it must for a real testing.TB.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal += fmt.Sprintf(format, args...) + "\n"
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip += fmt.Sprintf(format, args...) + "\n"
}
