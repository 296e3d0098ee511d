package httpmw

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/internal/logtest"
	"github.com/herdcap/herdcap/limiter"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// manualClock moves only when told to, so that the header values in these
// tests are exact.
type manualClock = fakeclock.Clock

func newManualClock() *manualClock { return fakeclock.New(t0) }

// thawingClock stands still at t0 until Thaw, then runs at wall-clock speed
// from t0. A test freezes time while it sets up a decision that must not
// depend on how fast the machine is (two requests "at once"), then lets a
// real wait play out against it.
type thawingClock struct {
	mu     sync.Mutex
	thawed time.Time // zero while frozen
}

// Now returns t0 while frozen, else t0 plus the wall time since Thaw.
func (c *thawingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.thawed.IsZero() {
		return t0
	}
	return t0.Add(time.Since(c.thawed))
}

// AfterFunc makes thawingClock a limiter.Clock; the components under test
// set no timers, and this one runs them in real time.
func (c *thawingClock) AfterFunc(d time.Duration, f func()) limiter.Timer {
	return time.AfterFunc(d, f)
}

// Thaw starts the clock; later calls do nothing.
func (c *thawingClock) Thaw() {
	c.mu.Lock()
	if c.thawed.IsZero() {
		c.thawed = time.Now()
	}
	c.mu.Unlock()
}

// newLocal returns a real Local budget of l on clk.
func newLocal(t *testing.T, l limiter.Limit, clk limiter.Clock) *limiter.Local {
	t.Helper()
	b, err := limiter.NewLocal(l, limiter.Config{Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// countingBudget counts the calls reaching the real budget it wraps.
type countingBudget struct {
	limiter.Budget
	calls atomic.Int64
}

func (c *countingBudget) Take(ctx context.Context, r limiter.Request) (limiter.Decision, error) {
	c.calls.Add(1)
	return c.Budget.Take(ctx, r)
}

// failingBudget always fails with err and a Decision carrying only a
// RetryAfter hint, exactly as the fail-closed Redis backends document: it
// covers error classes a real backend cannot be made to produce on demand.
// TestRedisFailClosedIs503 runs the real fail-closed path.
type failingBudget struct {
	err        error
	retryAfter time.Duration
}

func (f failingBudget) Take(context.Context, limiter.Request) (limiter.Decision, error) {
	return limiter.Decision{RetryAfter: f.retryAfter, Via: limiter.ViaFallback}, f.err
}

// okHandler counts the requests it serves and answers "ok".
type okHandler struct{ served atomic.Int64 }

func (h *okHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.served.Add(1)
	_, _ = io.WriteString(w, "ok")
}

// serve starts an httptest server running next behind RateLimit(cfg,
// policies...).
func serve(t *testing.T, next http.Handler, cfg RateLimitConfig, policies ...Policy) *httptest.Server {
	t.Helper()
	mw, err := RateLimit(cfg, policies...)
	require.NoError(t, err)
	srv := httptest.NewServer(mw(next))
	t.Cleanup(srv.Close)
	return srv
}

// response is what a test needs of one exchange.
type response struct {
	status     int
	body       string
	policy     string
	rateLimit  string
	retryAfter string
	header     http.Header
}

// get sends a GET to srv with the given header lines and reads the answer.
func get(t *testing.T, srv *httptest.Server, header http.Header) response {
	t.Helper()
	return getPath(t, srv, "/", header)
}

// getPath is get for srv.URL+path.
func getPath(t *testing.T, srv *httptest.Server, path string, header http.Header) response {
	t.Helper()
	res, err := fetchPath(srv, path, header)
	require.NoError(t, err)
	return res
}

// fetch is get for a goroutine other than the test's, which must not call
// require: it returns the error for the test to assert on.
func fetch(srv *httptest.Server, header http.Header) (response, error) {
	return fetchPath(srv, "/", header)
}

// fetchPath sends a GET to srv.URL+path with the given header lines and
// reads the answer.
func fetchPath(srv *httptest.Server, path string, header http.Header) (response, error) {
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		return response{}, err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{
		status:     res.StatusCode,
		body:       string(body),
		policy:     res.Header.Get("RateLimit-Policy"),
		rateLimit:  res.Header.Get("RateLimit"),
		retryAfter: res.Header.Get("Retry-After"),
		header:     res.Header,
	}, nil
}

type syncBuffer = logtest.Buffer

var newTextLogger = logtest.NewLogger
