package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProgram builds the program, runs it as its own process on a loopback
// port, and sends it 30 requests from one address. The limit is 5 per
// second in bursts of 10, so over the e seconds the requests take at least
// 10 and at most 10 + 5·e + 1 are served (tokens come back while a loaded
// machine is slow: the bound follows the measured time instead of
// assuming a fast machine), and those refused get 429 with Retry-After and
// RateLimit.
func TestProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "minimal")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stderr lockedBuffer // written by exec's copying goroutine while the test reads it
	cmd := exec.CommandContext(ctx, bin, "-addr", addr)
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	url := "http://" + addr + "/"
	waitUp(t, url)
	var ok, refused int
	start := time.Now()
	for range 30 {
		res, err := http.Get(url)
		require.NoError(t, err)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			assert.Equal(t, "hello\n", string(body))
			ok++
		case http.StatusTooManyRequests:
			assert.NotEmpty(t, res.Header.Get("Retry-After"))
			assert.NotEmpty(t, res.Header.Get("RateLimit"))
			refused++
		default:
			t.Fatalf("status %d: %s", res.StatusCode, body)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d served, %d refused in %v; program's stderr: %s", ok, refused, elapsed, stderr.String())
	assert.GreaterOrEqual(t, ok, 10, "the burst is served")
	assert.LessOrEqual(t, float64(ok), 10+5*elapsed.Seconds()+1, "no more than the burst and the refill")
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// waitUp waits until the server accepts connections, for at most 30 s (a
// loaded CI machine may be slow to start the process). It only dials: a
// request would spend a token of the burst.
func waitUp(t *testing.T, url string) {
	t.Helper()
	addr := url[len("http://") : len(url)-1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program did not listen on %s within 30 s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
