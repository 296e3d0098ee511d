package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoTestOnlyDependencies: stormsim is a shipped command, so its binary
// must not link the testing package or a test helper (goleak, testify, the
// redistest harness); it starts its private redis-server through
// internal/redisserver. The go tool lists what the binary links.
func TestNoTestOnlyDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is not in PATH: %v", err)
	}
	// go list reads the module cache the test binary was just built from;
	// a minute covers a cold cache on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", ".")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list -deps: %s", stderr.String())
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/herdcap/herdcap/internal/redisserver", "the listing is of stormsim")
	for _, d := range deps {
		assert.NotEqual(t, "testing", d, "stormsim links the testing package")
		for _, bad := range []string{"go.uber.org/goleak", "github.com/stretchr/testify", "github.com/herdcap/herdcap/internal/redistest"} {
			assert.False(t, d == bad || strings.HasPrefix(d, bad+"/"), "stormsim links %s", d)
		}
	}
}
