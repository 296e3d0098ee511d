package redistest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// go-redis writes its own log lines ("failed to dial after 1 attempts ...")
// through one process-wide logger. A test that kills or pauses a server
// expects those lines, and printed on stderr they bury a real failure, so the
// harness installs a router in their place (once, when it first starts a
// server) that hands each line to the tests that own the server it names:
// the test's log shows it when the test fails or under -v, and never
// otherwise. A line naming no registered server goes to every registered
// test; with no test registered it is dropped, unless the environment
// variable HERDCAP_REDIS_LOG is non-empty, which sends every line to stderr
// as go-redis would.

// logRoute is one test's interest in the lines about some addresses.
type logRoute struct {
	tb    testing.TB
	addrs []string
}

// logRouter implements go-redis's logging interface.
type logRouter struct {
	mu     sync.RWMutex
	routes map[*logRoute]struct{}
	stderr bool
}

var (
	routerOnce sync.Once
	router     = &logRouter{routes: map[*logRoute]struct{}{}}
)

// installLogRouter makes router go-redis's logger, once per process.
func installLogRouter() {
	routerOnce.Do(func() {
		router.stderr = os.Getenv("HERDCAP_REDIS_LOG") != ""
		redis.SetLogger(router)
	})
}

// routeLogs sends go-redis's lines about addrs to tb's log until tb's
// cleanup runs (tb.Logf must not be called after the test ends).
func routeLogs(tb testing.TB, addrs ...string) {
	installLogRouter()
	r := &logRoute{tb: tb, addrs: addrs}
	router.mu.Lock()
	router.routes[r] = struct{}{}
	router.mu.Unlock()
	tb.Cleanup(func() {
		router.mu.Lock()
		delete(router.routes, r)
		router.mu.Unlock()
	})
}

// Printf routes one go-redis log line. The read lock is held while calling
// Logf so that a route's cleanup (which takes the write lock) cannot finish,
// and its test end, in the middle of a call.
func (l *logRouter) Printf(_ context.Context, format string, v ...any) {
	msg := "go-redis: " + strings.TrimSuffix(fmt.Sprintf(format, v...), "\n")
	if l.stderr {
		fmt.Fprintln(os.Stderr, msg)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	matched := false
	for r := range l.routes {
		if r.names(msg) {
			r.tb.Logf("%s", msg)
			matched = true
		}
	}
	if matched {
		return
	}
	for r := range l.routes {
		r.tb.Logf("%s", msg)
	}
}

// names reports whether msg mentions one of r's addresses ("127.0.0.1:639"
// does not name "127.0.0.1:6390").
func (r *logRoute) names(msg string) bool {
	for _, a := range r.addrs {
		for rest := msg; ; {
			i := strings.Index(rest, a)
			if i < 0 {
				break
			}
			rest = rest[i+len(a):]
			if rest == "" || rest[0] < '0' || rest[0] > '9' {
				return true
			}
		}
	}
	return false
}
