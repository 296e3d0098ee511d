package redistest_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
)

// helperEnv names the environment variable that turns the test binary into
// a child process for the hygiene tests; its value is the mode.
const helperEnv = "REDISTEST_HELPER"

// TestHelperProcess is not a test: run as a child by runHelper, it starts a
// server, prints its pid and directory, and then ends the way its mode says.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("runs only as a child process of the hygiene tests")
	}
	switch mode {
	case "panic", "fail":
		s := redistest.Start(t)
		fmt.Printf("PID=%d DIR=%s\n", s.PID(), s.Dir())
		if mode == "fail" {
			t.Fatal("deliberate failure")
		}
		panic("deliberate panic")
	case "exit":
		// Start a server and exit without stopping it, as a test binary
		// killed by go test -timeout would.
		s, _, err := redistest.StartMain()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("PID=%d DIR=%s\n", s.PID(), s.Dir())
		os.Exit(0)
	}
	t.Fatalf("unknown mode %q", mode)
}

var helperOut = regexp.MustCompile(`PID=(\d+) DIR=(\S+)`)

// runHelper runs TestHelperProcess in a child test binary and returns the
// pid and directory of the server it started.
func runHelper(t *testing.T, mode string) (pid int, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	// atexit_sleep_ms=0 spares a -race child the race detector's 1 s pause
	// on exit.
	cmd.Env = append(os.Environ(), helperEnv+"="+mode,
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	if mode == "exit" {
		require.NoError(t, err, "%s", out)
	} else {
		require.Error(t, err, "the child must fail: %s", out)
	}
	m := helperOut.FindSubmatch(out)
	require.NotNil(t, m, "no PID line in child output:\n%s", out)
	pid, err = strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return pid, string(m[2])
}

func TestCleanupAfterFailureAndPanic(t *testing.T) {
	redistest.Require(t)
	for _, mode := range []string{"fail", "panic"} {
		t.Run(mode, func(t *testing.T) {
			pid, dir := runHelper(t, mode)
			// The child reaped its server before exiting, so the pid is
			// gone (not even a zombie) and the directory removed: that is
			// the cleanup's work, not the kernel's.
			assert.False(t, redistest.PIDAlive(pid), "server %d outlived its test", pid)
			assert.NoDirExists(t, dir)
		})
	}
}
