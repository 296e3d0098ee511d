package report

import (
	"testing"

	"go.uber.org/goleak"
)

// Compare runs its two modes on two goroutines: none may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
