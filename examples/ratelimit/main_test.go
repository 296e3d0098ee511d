package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/limiter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stoppedClock never moves, so the burst is exact: no token comes back
// while the test runs, however slow the machine.
type stoppedClock struct{ t time.Time }

func (c stoppedClock) Now() time.Time { return c.t }

func (stoppedClock) AfterFunc(time.Duration, func()) limiter.Timer { panic("Local sets no timers") }

var quiet = slog.New(slog.DiscardHandler)

func TestHandler429AfterBurst(t *testing.T) {
	h, err := newHandler(limiter.PerSecond(5, 10), quiet, limiter.Config{Clock: stoppedClock{time.Unix(1e9, 0)}})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for i := range 10 {
		res, err := srv.Client().Get(srv.URL)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, "request %d of the burst", i+1)
		assert.Equal(t, "hello from herdcap\n", string(body))
		assert.Equal(t, `"default";q=10;w=2`, res.Header.Get("RateLimit-Policy"))
	}
	// The next token is 200 ms away: the refusal is held for those 200 ms
	// (a plain client's whole-second Retry-After cannot say 0.2 s) and
	// then says "now": Retry-After 0, and 1 ms for herdcap's clients. A
	// lower bound on the hold only, since load can delay, never advance.
	start := time.Now()
	res, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond, "held for the fraction of a second")
	assert.Equal(t, "0", res.Header.Get("Retry-After"))
	assert.Equal(t, "1", res.Header.Get("Herdcap-Retry-After-Ms"))
	assert.Equal(t, `"default";r=0;t=0`, res.Header.Get("RateLimit"))
}

func TestBadLimit(t *testing.T) {
	err := run(context.Background(), "127.0.0.1:0", limiter.PerSecond(0, 10), quiet, nil)
	require.ErrorIs(t, err, limiter.ErrInvalidLimit)
	assert.ErrorContains(t, err, "Limit.Rate")
}

func TestBadAddr(t *testing.T) {
	err := run(context.Background(), "127.0.0.1:http-alt-nonsense", limiter.PerSecond(5, 10), quiet, nil)
	assert.Error(t, err)
}

// TestRunServesAndShutsDown runs the real server on a loopback port with
// the wall clock, then cancels it as SIGINT would.
func TestRunServesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		addr  net.Addr
		ready = make(chan struct{})
		once  sync.Once
	)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", limiter.PerSecond(5, 10), quiet, func(a net.Addr) {
			once.Do(func() { addr = a; close(ready) })
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run returned before serving: %v", err)
	}

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	res, err := client.Get("http://" + addr.String() + "/")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	// The first request of a fresh bucket: 9 of 10 left, whatever the
	// wall clock did meanwhile (a refill cannot exceed the burst).
	assert.Equal(t, `"default";r=9;t=1`, res.Header.Get("RateLimit"))

	cancel()
	// Shutdown of an idle server is immediate; 30 s only bounds a hang on
	// a loaded CI machine, it is not a performance claim.
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
