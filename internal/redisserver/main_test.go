package redisserver_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the package leaves no goroutine behind: processes are
// watched without one.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
