package redistest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// logTB records what is logged to it; Cleanup runs the registered funcs
// when the enclosing test ends.
type logTB struct {
	testing.TB
	mu    sync.Mutex
	lines []string
}

func (r *logTB) Logf(format string, v ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, v...))
}

func (r *logTB) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// TestLogRouter: a go-redis line goes to the tests whose server it names,
// to every registered test when it names none, and to none after the
// test's cleanup.
func TestLogRouter(t *testing.T) {
	installLogRouter()
	var a, b logTB
	t.Run("routes", func(t *testing.T) {
		a.TB, b.TB = t, t
		routeLogs(&a, "127.0.0.1:639")
		routeLogs(&b, "127.0.0.1:6390", "127.0.0.1:7000")
		ctx := context.Background()
		router.Printf(ctx, "dial tcp %s: connect: connection refused\n", "127.0.0.1:6390")
		router.Printf(ctx, "dial tcp 127.0.0.1:639: refused")
		router.Printf(ctx, "pool closed")
	})
	router.Printf(context.Background(), "after the tests ended: dial tcp 127.0.0.1:639")
	assert.Equal(t, []string{
		"go-redis: dial tcp 127.0.0.1:639: refused",
		"go-redis: pool closed",
	}, a.got())
	assert.Equal(t, []string{
		"go-redis: dial tcp 127.0.0.1:6390: connect: connection refused",
		"go-redis: pool closed",
	}, b.got())
}
