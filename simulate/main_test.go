package simulate

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

// srv is a private Redis for the memory-against-Redis tests; nil when
// redis-server is missing (those tests then skip, or fail under CI).
var srv *redistest.Server

func TestMain(m *testing.M) {
	s, stop, err := redistest.StartMain()
	if err != nil && !errors.Is(err, redistest.ErrNoRedis) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(redistest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
