package clientcore

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: Sleep starts
// timers, and the notice tests run goroutines.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
