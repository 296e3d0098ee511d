//go:build unix

package redistest_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

func TestServerThatCrashedOnItsOwn(t *testing.T) {
	s := redistest.Start(t)
	c := s.Client(t)
	pid := s.PID()
	// A crash the harness did not cause.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

	ft := &fakeTB{TB: t}
	s.Pause(ft)
	assert.Contains(t, ft.fatal, "exited")
	assert.Zero(t, s.PID(), "the crashed process is forgotten")
	requireGone(t, pid)

	s.Restart(t)
	require.NoError(t, c.Ping(cmdCtx(t)).Err())

	// A crash while paused: Kill and Stop still reap it.
	s.Pause(t)
	pid = s.PID()
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	s.Kill(t)
	requireGone(t, pid)
	s.Restart(t)
	require.NoError(t, c.Ping(cmdCtx(t)).Err())
}
