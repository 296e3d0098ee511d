package httpmw_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/slowstarttest"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/retry"
	"github.com/herdcap/herdcap/warmup/slowstart"
)

var ssT0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// attempt is what the server saw and answered of one request.
type attempt struct {
	at     time.Time
	status int
	waitMs int64
}

// recorder wraps a handler and records every attempt.
type recorder struct {
	clk  *fakeclock.Clock
	next http.Handler
	mu   sync.Mutex
	seen []attempt
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	r.next.ServeHTTP(rw, req)
	ms, _ := strconv.ParseInt(w.Header().Get("Herdcap-Retry-After-Ms"), 10, 64)
	r.mu.Lock()
	r.seen = append(r.seen, attempt{at: r.clk.Now(), status: rw.status, waitMs: ms})
	r.mu.Unlock()
}

func (r *recorder) attempts() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.seen...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) { w.status = s; w.ResponseWriter.WriteHeader(s) }

// TestSlowStartTransportHonoursHint: a Transport shed by a cold node's
// SlowStart comes back when told (the exact wait, plus at most the
// client's few milliseconds of slot jitter), and is served once the share
// has grown past its place, not before and without a busy loop.
func TestSlowStartTransportHonoursHint(t *testing.T) {
	clk := fakeclock.New(ssT0)
	g, err := slowstart.New(slowstart.Config{Window: 10 * time.Second, Clock: clk})
	require.NoError(t, err)
	mw, err := httpmw.SlowStart(g, httpmw.SlowStartConfig{})
	require.NoError(t, err)
	rec := &recorder{clk: clk, next: mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))}
	srv := httptest.NewServer(rec)
	defer srv.Close()

	id := slowstarttest.ClientAt(t, 0.6, 0.7) // admitted at 6 to 7 s into the 10 s window
	tr, err := httpmw.NewTransport(httpmw.TransportConfig{Base: srv.Client().Transport, ClientID: id, Clock: clk,
		Retry: retry.Policy{MaxAttempts: 20, MaxWait: time.Minute}})
	require.NoError(t, err)
	defer tr.CloseIdleConnections()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		res, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err != nil {
			done <- result{err: err}
			return
		}
		_ = res.Body.Close()
		done <- result{status: res.StatusCode}
	}()
	got := slowstarttest.Drive(t, clk, done)
	require.NoError(t, got.err)
	assert.Equal(t, http.StatusOK, got.status)

	seen := rec.attempts()
	require.GreaterOrEqual(t, len(seen), 2, "a client at place 0.6 is shed at first")
	assert.LessOrEqual(t, len(seen), 6, "the hints bring it back a few times, not in a busy loop")
	for i, a := range seen[:len(seen)-1] {
		require.Equal(t, http.StatusServiceUnavailable, a.status, "attempt %d", i)
		require.Positive(t, a.waitMs, "attempt %d is told an exact wait", i)
		gap := seen[i+1].at.Sub(a.at)
		assert.GreaterOrEqual(t, gap, time.Duration(a.waitMs)*time.Millisecond, "attempt %d: back no sooner than told", i)
		// the client's slot jitter is under 5 ms; the clock moves in 1 ms steps
		assert.LessOrEqual(t, gap, time.Duration(a.waitMs+6)*time.Millisecond, "attempt %d: back when told", i)
	}
	last := seen[len(seen)-1]
	assert.Equal(t, http.StatusOK, last.status)
	assert.GreaterOrEqual(t, last.at.Sub(ssT0), time.Duration(slowstarttest.Place(id)*float64(10*time.Second)),
		"served once the share passed its place")
	st := g.Stats()
	assert.Equal(t, uint64(1), st.Admitted)
	assert.Equal(t, uint64(len(seen)-1), st.ShedShare)
}

func TestSlowStartAnswers(t *testing.T) {
	clk := fakeclock.New(ssT0)
	g, err := slowstart.New(slowstart.Config{Clock: clk, MinShare: 0.5})
	require.NoError(t, err)
	mw, err := httpmw.SlowStart(g, httpmw.SlowStartConfig{Skip: func(r *http.Request) bool { return r.URL.Path == "/health" }})
	require.NoError(t, err)
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})))
	defer srv.Close()
	do := func(path, client string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		if client != "" {
			req.Header.Set("Herdcap-Client", client)
		}
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		return res
	}
	in, out := slowstarttest.ClientAt(t, 0, 0.4), slowstarttest.ClientAt(t, 0.6, 1)
	assert.Equal(t, http.StatusOK, do("/", in).StatusCode)
	res := do("/", out)
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	ms, err := strconv.ParseInt(res.Header.Get("Herdcap-Retry-After-Ms"), 10, 64)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, ms, int64(100))
	assert.LessOrEqual(t, ms, int64(5000))
	secs, err := strconv.ParseInt(res.Header.Get("Retry-After"), 10, 64)
	require.NoError(t, err)
	assert.Equal(t, (ms+999)/1000, secs, "Retry-After is the wait in whole seconds, rounded up")
	assert.Equal(t, http.StatusOK, do("/health", out).StatusCode, "Skip")

	// a malformed Herdcap-Client is decided without a key: about half pass
	ok := 0
	for range 100 {
		if do("/", "bad,id").StatusCode == http.StatusOK {
			ok++
		}
	}
	assert.InDelta(t, 50, ok, 3, "the key-less sequence admits the share")

	// a Key that panics is a server bug
	mw, err = httpmw.SlowStart(g, httpmw.SlowStartConfig{Key: func(*http.Request) (string, error) { panic("bug") }})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	mw(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
	assert.Empty(t, w.Header().Get("Retry-After"))

	// a failing fleet budget: 503 with a coarse Retry-After only
	gb, err := slowstart.New(slowstart.Config{Clock: clk, MinShare: 1.0 / 2, Budget: brokenBudget{}})
	require.NoError(t, err)
	mw, err = httpmw.SlowStart(gb, httpmw.SlowStartConfig{})
	require.NoError(t, err)
	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Herdcap-Client", in)
	mw(http.NotFoundHandler()).ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "5", w.Header().Get("Retry-After"))
	assert.Empty(t, w.Header().Get("Herdcap-Retry-After-Ms"))
}

type brokenBudget struct{}

func (brokenBudget) Take(_ context.Context, _ limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{}, limiter.ErrUnavailable
}

func TestSlowStartBadConfig(t *testing.T) {
	_, err := httpmw.SlowStart(nil, httpmw.SlowStartConfig{})
	assert.ErrorIs(t, err, httpmw.ErrInvalidConfig)
	assert.ErrorContains(t, err, "gate is nil")
	g, err := slowstart.New(slowstart.Config{})
	require.NoError(t, err)
	_, err = httpmw.SlowStart(g, httpmw.SlowStartConfig{Key: func(*http.Request) (string, error) { return "", nil },
		ClientIP: httpmw.ClientIP{IPv4Prefix: 24}})
	assert.ErrorIs(t, err, httpmw.ErrInvalidConfig)
	assert.ErrorContains(t, err, "SlowStartConfig.ClientIP")
	_, err = httpmw.SlowStart(g, httpmw.SlowStartConfig{ClientIP: httpmw.ClientIP{IPv4Prefix: 40}})
	assert.ErrorContains(t, err, "SlowStartConfig.ClientIP.IPv4Prefix")
}
