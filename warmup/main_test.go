package warmup_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

// One private redis-server and one private 3-master cluster serve the
// whole package; tests keep apart by using their own namespaces. Tests
// that restart Redis start their own server.
var (
	srv     *redistest.Server
	cluster *redistest.Cluster
)

func TestMain(m *testing.M) {
	s, stopS, err := redistest.StartMain()
	if err != nil && !errors.Is(err, redistest.ErrNoRedis) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, stopC, err := redistest.StartClusterMain()
	if err != nil && !errors.Is(err, redistest.ErrNoRedis) {
		stopS()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, cluster = s, c
	code := m.Run()
	stopS()
	stopC()
	if code == 0 {
		// Run starts worker goroutines: none may outlive a test.
		if err := goleak.Find(redistest.LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
