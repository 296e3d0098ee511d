package httpmw

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/retry"
)

// The connection failures of a reconnect storm, over real loopback
// sockets: a port nothing listens on (refused), and a server that drops
// connections before answering (closed or reset).

// freeAddr returns a loopback address nothing listens on: a port the kernel
// handed out, closed again.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// countingServer serves h on ln in the background until the test ends,
// and counts the requests it serves and their bodies.
type countingServer struct {
	mu     sync.Mutex
	bodies []string
}

func (c *countingServer) serve(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.bodies = append(c.bodies, string(b))
		c.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

func (c *countingServer) served() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.bodies...)
}

// dialWatcher is a base transport that calls hook after every dial, with
// the dial's number (from 1) and error.
func dialWatcher(t *testing.T, hook func(n int, err error)) *http.Transport {
	t.Helper()
	var n atomic.Int32
	d := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		hook(int(n.Add(1)), err)
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// fastBackoff waits at most a few milliseconds between attempts.
var fastBackoff = retry.Backoff{Base: time.Millisecond, Cap: 5 * time.Millisecond}

// TestTransportRetriesRefusedConnection: the server is down (connection
// refused) and comes up during the backoff; the request is sent again and
// served. A refused dial sent nothing, so even a POST is resent, when its
// body can be replayed.
func TestTransportRetriesRefusedConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  func(url string) *http.Request
		body string
	}{
		{"GET", func(url string) *http.Request { return newGet(t, url) }, ""},
		{"POST with a replayable body", func(url string) *http.Request {
			r, err := http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
			require.NoError(t, err)
			return r
		}, "payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			var (
				srv      countingServer
				firstErr error
			)
			base := dialWatcher(t, func(n int, err error) {
				if n == 1 {
					// The first dial was refused: start the server on
					// the port, so the retry finds it.
					firstErr = err
					ln, lerr := net.Listen("tcp", addr)
					if assert.NoError(t, lerr, "the port was taken meanwhile") {
						srv.serve(t, ln)
					}
				}
			})
			rb, err := retry.NewBudget(10, 0.5)
			require.NoError(t, err)
			tr, err := NewTransport(TransportConfig{Base: base, Retry: retry.Policy{Backoff: fastBackoff, Budget: rb}})
			require.NoError(t, err)

			status, body := do(t, tr, tc.req("http://"+addr+"/"))
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, "ok", body)
			assert.True(t, errors.Is(firstErr, syscall.ECONNREFUSED), "first dial: %v", firstErr)
			assert.Equal(t, []string{tc.body}, srv.served(), "served once, with its body")
			assert.InDelta(t, 10-1+0.5, rb.Tokens(), 1e-9, "the refusal took a token, the success gave half back")
		})
	}
}

// dropListener drops the first n connections it accepts once the request
// has begun to arrive, without answering: with reset, abortively (RST,
// "connection reset by peer"), else with a FIN (EOF before a response).
// Dropping on accept instead would race with the client's dial, which may
// then fail (nothing sent) rather than the connection break.
type dropListener struct {
	net.Listener
	n     atomic.Int32
	reset bool
}

func (l *dropListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.n.Add(-1) < 0 {
			return c, err
		}
		// The deadline only keeps a broken test from hanging.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = c.Read(make([]byte, 1))
		if l.reset {
			_ = c.(*net.TCPConn).SetLinger(0)
		}
		_ = c.Close()
	}
}

// TestTransportRetriesBrokenConnection: the server drops the first
// connection as the request arrives, without answering. The request may
// have been processed, so it is sent again only if that is safe (as for
// refusals).
func TestTransportRetriesBrokenConnection(t *testing.T) {
	for _, reset := range []bool{false, true} {
		for _, tc := range []struct {
			name    string
			req     func(url string) *http.Request
			resends bool
		}{
			{"GET", func(url string) *http.Request { return newGet(t, url) }, true},
			{"POST", func(url string) *http.Request {
				r, err := http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
				require.NoError(t, err)
				return r
			}, false},
			{"POST with an idempotency key", func(url string) *http.Request {
				r, err := http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
				require.NoError(t, err)
				r.Header.Set("Idempotency-Key", "k1")
				return r
			}, true},
		} {
			t.Run(fmt.Sprintf("%s/reset=%v", tc.name, reset), func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				dl := &dropListener{Listener: ln, reset: reset}
				dl.n.Store(1)
				var srv countingServer
				srv.serve(t, dl)
				base := &http.Transport{}
				t.Cleanup(base.CloseIdleConnections)
				tr, err := NewTransport(TransportConfig{Base: base, Retry: retry.Policy{Backoff: fastBackoff}})
				require.NoError(t, err)

				res, err := (&http.Client{Transport: tr}).Do(tc.req("http://" + ln.Addr().String() + "/"))
				if !tc.resends {
					require.Error(t, err)
					assert.Equal(t, faultBroken, connFault(err), "returned as the base transport gave it: %v", err)
					assert.Empty(t, srv.served())
					return
				}
				require.NoError(t, err)
				discard(res.Body)
				assert.Equal(t, http.StatusOK, res.StatusCode)
				assert.Len(t, srv.served(), 1)
			})
		}
	}
}

// TestTransportConnectionRetriesBounded: against a port that never opens,
// a request is sent at most Retry.MaxAttempts times, each failure takes a
// token, and the retry budget can stop the retries first.
func TestTransportConnectionRetriesBounded(t *testing.T) {
	addr := freeAddr(t)
	for _, tc := range []struct {
		name         string
		tokens       int
		dials        int
		tokensAfter  float64
		maxAttempts  int
		nonReplayble bool
	}{
		{"max attempts", 10, 3, 7, 3, false},
		{"retry budget", 2, 1, 1, 10, false},           // 2 → 1 left, not more than half: no retry
		{"body cannot be replayed", 10, 1, 9, 3, true}, // the failure still counts
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dials atomic.Int32
			base := dialWatcher(t, func(int, error) { dials.Add(1) })
			rb, err := retry.NewBudget(tc.tokens, 0.1)
			require.NoError(t, err)
			tr, err := NewTransport(TransportConfig{Base: base, Retry: retry.Policy{Backoff: fastBackoff, Budget: rb, MaxAttempts: tc.maxAttempts}})
			require.NoError(t, err)
			req := newGet(t, "http://"+addr+"/")
			if tc.nonReplayble {
				req, err = http.NewRequest(http.MethodPut, "http://"+addr+"/", io.NopCloser(strings.NewReader("payload")))
				require.NoError(t, err)
			}
			_, err = (&http.Client{Transport: tr}).Do(req)
			require.Error(t, err)
			assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "the last attempt's error: %v", err)
			assert.Equal(t, int32(tc.dials), dials.Load())
			assert.InDelta(t, tc.tokensAfter, rb.Tokens(), 1e-9)
		})
	}
}

// TestTransportConnectionRetryHonoursCancellation: a context that ends
// during the backoff after a refused dial ends the wait; one that has
// ended is never retried.
func TestTransportConnectionRetryHonoursCancellation(t *testing.T) {
	addr := freeAddr(t)
	// Seeded: the first full-jitter draw is 68% of the hour-long window.
	slow := retry.Backoff{Base: time.Hour, Cap: time.Hour, Rand: rand.New(rand.NewPCG(1, 2)).Float64}

	t.Run("during the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var dials atomic.Int32
		base := dialWatcher(t, func(int, error) {
			dials.Add(1)
			time.AfterFunc(20*time.Millisecond, cancel)
		})
		tr, err := NewTransport(TransportConfig{Base: base, Retry: retry.Policy{Backoff: slow, MaxWait: 2 * time.Hour}})
		require.NoError(t, err)
		start := time.Now()
		_, err = (&http.Client{Transport: tr}).Do(newGet(t, "http://"+addr+"/").WithContext(ctx))
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, int32(1), dials.Load())
		// The wait was 40 minutes; the context ended it after 20 ms. 10 s
		// of slack for a loaded machine still proves it did not wait.
		assert.Less(t, time.Since(start), 10*time.Second)
	})
	t.Run("before the retry", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var dials atomic.Int32
		base := dialWatcher(t, func(int, error) { dials.Add(1); cancel() })
		tr, err := NewTransport(TransportConfig{Base: base, Retry: retry.Policy{Backoff: fastBackoff}})
		require.NoError(t, err)
		_, err = (&http.Client{Transport: tr}).Do(newGet(t, "http://"+addr+"/").WithContext(ctx))
		assert.Error(t, err)
		assert.Equal(t, int32(1), dials.Load())
	})
}

// TestConnFault classifies the errors a base transport returns.
func TestConnFault(t *testing.T) {
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, tc := range []struct {
		err  error
		want int
	}{
		{dial(os.NewSyscallError("connect", syscall.ECONNREFUSED)), faultDial},
		{dial(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), faultDial},
		{dial(&net.DNSError{Err: "timeout", IsTimeout: true}), faultDial},
		{dial(&net.DNSError{Err: "no such host", IsNotFound: true}), faultNone},
		{fmt.Errorf("proxy: %w", syscall.ECONNREFUSED), faultDial},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, faultBroken},
		{&net.OpError{Op: "write", Err: os.NewSyscallError("write", syscall.EPIPE)}, faultBroken},
		{fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", io.ErrUnexpectedEOF), faultBroken},
		{io.EOF, faultBroken},
		{fmt.Errorf("wrapped: %w", errors.New("http: server closed idle connection")), faultBroken},
		{context.Canceled, faultNone},
		{context.DeadlineExceeded, faultNone},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, faultNone},
		{errors.New("unsupported protocol scheme"), faultNone},
	} {
		assert.Equal(t, tc.want, connFault(tc.err), "%v", tc.err)
	}
}
