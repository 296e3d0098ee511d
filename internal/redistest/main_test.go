package redistest_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines without redistest.LeakOptions: the
// harness itself must leave nothing behind. When REDISTEST_HELPER is set the
// binary is a child process run by the hygiene tests, and only the helper
// test runs.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}
