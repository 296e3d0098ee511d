package httpmw

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/coalescetest"
)

// gatedHandler counts its runs and, until release is closed, blocks each
// run in which block returns true.
type gatedHandler struct {
	runs    atomic.Int32
	release chan struct{}
	block   func(run int32) bool
	serve   func(w http.ResponseWriter, r *http.Request, run int32)
}

func newGated(serve func(w http.ResponseWriter, r *http.Request, run int32)) *gatedHandler {
	return &gatedHandler{release: make(chan struct{}), block: func(int32) bool { return true }, serve: serve}
}

func (g *gatedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	run := g.runs.Add(1)
	if g.block(run) {
		<-g.release
	}
	g.serve(w, r, run)
}

// coalesceServer serves h behind Coalesce(cfg) on loopback and returns the
// server and the middleware's state.
func coalesceServer(t *testing.T, cfg CoalesceConfig, h http.Handler) (*httptest.Server, *coalescer) {
	t.Helper()
	mw, err := Coalesce(cfg)
	require.NoError(t, err)
	c := mw(h).(*coalescer)
	srv := httptest.NewUnstartedServer(c)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panic test's panic
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, c
}

// inFlight waits until the middleware has keys in flight and waiters
// waiting on them.
func inFlight(t *testing.T, c *coalescer, keys, waiters int) {
	t.Helper()
	coalescetest.InFlight(t, c.c, keys, waiters)
}

// bodies receives n results, each without error, and counts their bodies.
func bodies(t *testing.T, out <-chan cResult, n int) map[string]int {
	t.Helper()
	count := map[string]int{}
	for range n {
		r := <-out
		require.NoError(t, r.err)
		count[r.body]++
	}
	return count
}

// cResult is one client's response.
type cResult struct {
	status int
	body   string
	marked bool
	err    error
}

// get sends req's and returns the response.
func cGet(req *http.Request) cResult {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return cResult{status: resp.StatusCode, body: string(b), marked: resp.Header.Get(CoalescedHeader) == "1", err: err}
}

// getAll sends the requests concurrently and returns a channel of their
// results.
func getAll(reqs ...*http.Request) <-chan cResult {
	out := make(chan cResult, len(reqs))
	for _, r := range reqs {
		go func() { out <- cGet(r) }()
	}
	return out
}

func cReq(t *testing.T, url string, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

func cRepeat(t *testing.T, n int, url string, hdr ...string) []*http.Request {
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = cReq(t, url, hdr...)
	}
	return reqs
}

func TestCoalesceIdenticalRunOnce(t *testing.T) {
	const n = 20
	h := newGated(func(w http.ResponseWriter, r *http.Request, run int32) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Run", "1")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "hello "+r.URL.RawQuery)
	})
	srv, c := coalesceServer(t, CoalesceConfig{MarkReplays: true}, h)
	out := getAll(cRepeat(t, n, srv.URL+"/a?x=1")...)
	inFlight(t, c, 1, n-1)
	close(h.release)
	marked := 0
	for range n {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusAccepted, r.status)
		assert.Equal(t, "hello x=1", r.body)
		if r.marked {
			marked++
		}
	}
	assert.EqualValues(t, 1, h.runs.Load(), "the handler runs once for the identical requests")
	assert.Equal(t, n-1, marked, "every replay, and only the replays, is marked")
	inFlight(t, c, 0, 0)
}

func TestCoalesceDifferentKeys(t *testing.T) {
	h := newGated(func(w http.ResponseWriter, r *http.Request, _ int32) {
		_, _ = io.WriteString(w, r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("Accept"))
	})
	srv, c := coalesceServer(t, CoalesceConfig{Vary: []string{"accept"}}, h)
	reqs := []*http.Request{
		cReq(t, srv.URL+"/a"), cReq(t, srv.URL+"/b"), cReq(t, srv.URL+"/a?q"),
		cReq(t, srv.URL+"/a", "Accept", "text/html"), cReq(t, srv.URL+"/a", "Accept", "text/plain"),
	}
	head, err := http.NewRequest(http.MethodHead, srv.URL+"/a", nil)
	require.NoError(t, err)
	out := getAll(append(reqs, head)...)
	inFlight(t, c, 6, 0)
	close(h.release)
	got := bodies(t, out, 6)
	assert.EqualValues(t, 6, h.runs.Load())
	assert.Len(t, got, 6, "each GET its own response, and HEAD none: %v", got)
}

func TestCoalesceNotCoalesced(t *testing.T) {
	// Credentials, ranges and bodies are not coalesced by default: a
	// response that depends on who asks must never reach another client.
	const n = 4
	for _, tc := range []struct {
		name string
		reqs func(url string) []*http.Request
	}{
		{"authorization", func(url string) []*http.Request { return cRepeat(t, n, url, "Authorization", "Bearer x") }},
		{"cookie", func(url string) []*http.Request { return cRepeat(t, n, url, "Cookie", "s=1") }},
		{"range", func(url string) []*http.Request { return cRepeat(t, n, url, "Range", "bytes=0-1") }},
		{"body", func(url string) []*http.Request {
			reqs := make([]*http.Request, n)
			for i := range reqs {
				reqs[i], _ = http.NewRequest(http.MethodGet, url, strings.NewReader("b"))
			}
			return reqs
		}},
		{"post", func(url string) []*http.Request {
			reqs := make([]*http.Request, n)
			for i := range reqs {
				reqs[i], _ = http.NewRequest(http.MethodPost, url, nil)
			}
			return reqs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{}, n)
			h := newGated(func(w http.ResponseWriter, _ *http.Request, _ int32) { _, _ = io.WriteString(w, "ok") })
			h.block = func(int32) bool { entered <- struct{}{}; return true }
			srv, c := coalesceServer(t, CoalesceConfig{}, h)
			out := getAll(tc.reqs(srv.URL + "/a")...)
			for range n {
				<-entered // every request runs the handler, none waits
			}
			k, w := c.c.InFlight()
			assert.Zero(t, k+w)
			close(h.release)
			for range n {
				r := <-out
				require.NoError(t, r.err)
				assert.Equal(t, "ok", r.body)
			}
		})
	}
}

func TestCoalesceCredentialsKeyed(t *testing.T) {
	// With Credentials, requests share a response only with the same
	// credentials.
	h := newGated(func(w http.ResponseWriter, r *http.Request, _ int32) {
		_, _ = io.WriteString(w, "for "+r.Header.Get("Authorization"))
	})
	srv, c := coalesceServer(t, CoalesceConfig{Credentials: true}, h)
	reqs := append(cRepeat(t, 3, srv.URL, "Authorization", "Bearer alice"), cRepeat(t, 3, srv.URL, "Authorization", "Bearer bob")...)
	out := getAll(reqs...)
	inFlight(t, c, 2, 4)
	close(h.release)
	assert.Equal(t, map[string]int{"for Bearer alice": 3, "for Bearer bob": 3}, bodies(t, out, 6))
	assert.EqualValues(t, 2, h.runs.Load())
}

func TestCoalescePrivateResponseNotShared(t *testing.T) {
	for _, hdr := range [][2]string{{"Set-Cookie", "s=1"}, {"Cache-Control", "max-age=1, Private"}, {"Cache-Control", "no-store"}} {
		t.Run(hdr[0]+"="+hdr[1], func(t *testing.T) {
			h := newGated(func(w http.ResponseWriter, _ *http.Request, run int32) {
				w.Header().Set(hdr[0], hdr[1])
				_, _ = io.WriteString(w, "run "+string(rune('0'+run)))
			})
			h.block = func(run int32) bool { return run == 1 }
			srv, c := coalesceServer(t, CoalesceConfig{}, h)
			out := getAll(cRepeat(t, 3, srv.URL)...)
			inFlight(t, c, 1, 2)
			close(h.release)
			assert.Len(t, bodies(t, out, 3), 3, "each request ran the handler itself")
		})
	}
}

func TestCoalesceLargeBodyNotTruncated(t *testing.T) {
	const n, size = 5, 64 << 10
	body := strings.Repeat("0123456789abcdef", size/16)
	h := newGated(func(w http.ResponseWriter, _ *http.Request, _ int32) {
		for i := 0; i < size; i += 1000 {
			_, _ = io.WriteString(w, body[i:min(i+1000, size)])
		}
	})
	h.block = func(run int32) bool { return run == 1 }
	srv, c := coalesceServer(t, CoalesceConfig{MaxBody: 4096, MarkReplays: true}, h)
	out := getAll(cRepeat(t, n, srv.URL)...)
	inFlight(t, c, 1, n-1)
	close(h.release)
	for range n {
		r := <-out
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusOK, r.status)
		assert.Len(t, r.body, size)
		assert.True(t, r.body == body, "the body is whole")
		assert.False(t, r.marked, "no replay")
	}
	assert.EqualValues(t, n, h.runs.Load(), "the waiters ran the handler themselves")
}

func TestCoalesceWaiterCancel(t *testing.T) {
	h := newGated(func(w http.ResponseWriter, _ *http.Request, _ int32) { _, _ = io.WriteString(w, "ok") })
	srv, c := coalesceServer(t, CoalesceConfig{}, h)
	leader := getAll(cReq(t, srv.URL))
	inFlight(t, c, 1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	quitter := getAll(cReq(t, srv.URL).WithContext(ctx))
	inFlight(t, c, 1, 1)
	other := getAll(cReq(t, srv.URL))
	inFlight(t, c, 1, 2)
	cancel()
	r := <-quitter
	require.ErrorIs(t, r.err, context.Canceled)
	close(h.release)
	for _, ch := range []<-chan cResult{leader, other} {
		r := <-ch
		require.NoError(t, r.err)
		assert.Equal(t, "ok", r.body)
	}
	assert.EqualValues(t, 1, h.runs.Load())
}

func TestCoalesceLeaderClientGone(t *testing.T) {
	// The leader's client goes away while its handler runs: the handler's
	// context stays live, and the waiters get its response.
	var handlerErr atomic.Value
	h := newGated(func(w http.ResponseWriter, r *http.Request, _ int32) {
		handlerErr.Store(fmtErr(r.Context().Err()))
		_, _ = io.WriteString(w, "ok")
	})
	mw, err := Coalesce(CoalesceConfig{})
	require.NoError(t, err)
	c := mw(h).(*coalescer)
	leaderCtx := make(chan context.Context, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Leader") != "" {
			leaderCtx <- r.Context()
		}
		c.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	leader := getAll(cReq(t, srv.URL, "X-Leader", "1").WithContext(ctx))
	serverSide := <-leaderCtx
	inFlight(t, c, 1, 0)
	waiters := getAll(cRepeat(t, 3, srv.URL)...)
	inFlight(t, c, 1, 3)
	cancel()
	require.ErrorIs(t, (<-leader).err, context.Canceled)
	<-serverSide.Done() // the server saw the leader's client go
	close(h.release)
	for range 3 {
		r := <-waiters
		require.NoError(t, r.err)
		assert.Equal(t, "ok", r.body)
	}
	assert.Equal(t, "<nil>", handlerErr.Load())
	assert.EqualValues(t, 1, h.runs.Load())
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestCoalesceLeaderTimeout(t *testing.T) {
	// The leader's handler is bounded by Timeout, the waiters get what it
	// answers then.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		w.WriteHeader(http.StatusGatewayTimeout)
	})
	srv, _ := coalesceServer(t, CoalesceConfig{Timeout: 50 * time.Millisecond}, h)
	r := cGet(cReq(t, srv.URL))
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusGatewayTimeout, r.status)
}

func TestCoalescePanic(t *testing.T) {
	h := newGated(func(http.ResponseWriter, *http.Request, int32) { panic("boom") })
	srv, c := coalesceServer(t, CoalesceConfig{}, h)
	leader := getAll(cReq(t, srv.URL))
	inFlight(t, c, 1, 0)
	waiters := getAll(cRepeat(t, 3, srv.URL)...)
	inFlight(t, c, 1, 3)
	close(h.release)
	assert.Error(t, (<-leader).err, "net/http aborts the leader's response")
	for range 3 {
		r := <-waiters
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusInternalServerError, r.status)
	}
	assert.EqualValues(t, 1, h.runs.Load())
	inFlight(t, c, 0, 0)
}

func TestCoalesceBounds(t *testing.T) {
	t.Run("MaxWaiters", func(t *testing.T) {
		entered := make(chan struct{}, 5)
		h := newGated(func(w http.ResponseWriter, _ *http.Request, _ int32) { _, _ = io.WriteString(w, "ok") })
		h.block = func(int32) bool { entered <- struct{}{}; return true }
		srv, c := coalesceServer(t, CoalesceConfig{MaxWaiters: 2}, h)
		out := getAll(cRepeat(t, 5, srv.URL)...)
		for range 3 {
			<-entered // the leader and the two past the bound
		}
		inFlight(t, c, 1, 2)
		close(h.release)
		for range 5 {
			r := <-out
			require.NoError(t, r.err)
			assert.Equal(t, "ok", r.body)
		}
		assert.EqualValues(t, 3, h.runs.Load())
	})
	t.Run("MaxKeys", func(t *testing.T) {
		entered := make(chan struct{}, 5)
		h := newGated(func(w http.ResponseWriter, _ *http.Request, _ int32) { _, _ = io.WriteString(w, "ok") })
		h.block = func(int32) bool { entered <- struct{}{}; return true }
		srv, c := coalesceServer(t, CoalesceConfig{MaxKeys: 1}, h)
		a := getAll(cReq(t, srv.URL+"/a"))
		<-entered
		inFlight(t, c, 1, 0)
		b := getAll(cRepeat(t, 2, srv.URL+"/b")...)
		<-entered
		<-entered // both run uncoalesced
		close(h.release)
		for _, ch := range []<-chan cResult{a, b, b} {
			r := <-ch
			require.NoError(t, r.err)
		}
		assert.EqualValues(t, 3, h.runs.Load())
	})
}

func TestCoalesceKeyFunc(t *testing.T) {
	h := newGated(func(w http.ResponseWriter, r *http.Request, _ int32) { _, _ = io.WriteString(w, r.URL.Path) })
	srv, c := coalesceServer(t, CoalesceConfig{Key: func(r *http.Request) string {
		switch r.URL.Path {
		case "/panic":
			panic("key")
		case "/none":
			return ""
		}
		return "one" // every other path shares
	}}, h)
	h.block = func(run int32) bool { return run == 1 }
	first := getAll(cReq(t, srv.URL+"/x"))
	inFlight(t, c, 1, 0)
	second := getAll(cReq(t, srv.URL+"/y"))
	inFlight(t, c, 1, 1)
	for _, p := range []string{"/panic", "/none"} {
		r := cGet(cReq(t, srv.URL+p))
		require.NoError(t, r.err)
		assert.Equal(t, p, r.body, "not coalesced")
	}
	close(h.release)
	assert.Equal(t, "/x", (<-first).body)
	assert.Equal(t, "/x", (<-second).body, "shared by the key")
}

func TestCoalesceConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   CoalesceConfig
		field string
	}{
		{CoalesceConfig{MaxBody: -1}, "httpmw.CoalesceConfig.MaxBody"},
		{CoalesceConfig{Timeout: -time.Second}, "httpmw.CoalesceConfig.Timeout"},
		{CoalesceConfig{MaxKeys: -1}, "httpmw.CoalesceConfig.MaxKeys"},
		{CoalesceConfig{MaxWaiters: -1}, "httpmw.CoalesceConfig.MaxWaiters"},
		{CoalesceConfig{Bodies: true}, "httpmw.CoalesceConfig.Bodies"},
		{CoalesceConfig{Vary: []string{"Accept", ""}}, "httpmw.CoalesceConfig.Vary[1]"},
	} {
		_, err := Coalesce(tc.cfg)
		require.Error(t, err, tc.field)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), tc.field)
	}
	_, err := Coalesce(CoalesceConfig{Bodies: true, Key: func(*http.Request) string { return "" }})
	assert.NoError(t, err)
}

// TestCoalesceRace runs rounds of concurrent requests of a few keys through
// the middleware, for the race detector: every client gets its key's body.
func TestCoalesceRace(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Path", r.URL.Path)
		_, _ = io.WriteString(w, r.URL.Path)
	})
	srv, _ := coalesceServer(t, CoalesceConfig{MarkReplays: true}, h)
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := "/" + string(rune('a'+i%3))
			r := cGet(cReq(t, srv.URL+p))
			if r.err != nil || r.body != p {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, bad.Load())
}
