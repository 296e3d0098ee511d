package httpmw

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

// TestMain checks that no test leaves a goroutine behind: Transports wait
// on timers, and the Redis tests kill servers under live clients, after
// which go-redis redials in the background for up to a second.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, redistest.LeakOptions()...)
}
