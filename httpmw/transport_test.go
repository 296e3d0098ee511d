package httpmw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/retry"
)

// newTransport returns a Transport configured by cfg over the test
// server's own transport.
func newTransport(t testing.TB, srv *httptest.Server, cfg TransportConfig) *Transport {
	t.Helper()
	cfg.Base = srv.Client().Transport
	tr, err := NewTransport(cfg)
	require.NoError(t, err)
	return tr
}

// do sends a request through tr and returns the status and body.
func do(t testing.TB, tr http.RoundTripper, req *http.Request) (int, string) {
	t.Helper()
	res, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

func newGet(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return req
}

// attempts records what the server saw of each request.
type attempts struct {
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	at     time.Time
	header http.Header
	body   string
}

func (a *attempts) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, seenRequest{at: time.Now(), header: r.Header.Clone(), body: string(body)})
		a.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (a *attempts) all() []seenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]seenRequest(nil), a.seen...)
}

// TestTransportEndToEnd runs a Transport against a server with Admit and
// Invalidate over a real Admission and Coordinator.
func TestTransportEndToEnd(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	a := newAdmission(t, limiter.Every(time.Hour, 1), clk, admission.Config{TicketKeys: testTicketKeys, TicketTTL: time.Hour})
	inv, err := Invalidate(c, InvalidateConfig{})
	require.NoError(t, err)
	adm, err := Admit(a, AdmitConfig{})
	require.NoError(t, err)
	var seen attempts
	srv := httptest.NewServer(seen.wrap(adm(inv(&okHandler{}))))
	t.Cleanup(srv.Close)

	var got []invalidate.Notice
	tr := newTransport(t, srv, TransportConfig{ClientID: "client-7", OnInvalidate: func(n invalidate.Notice) { got = append(got, n) }})

	status, body := do(t, tr, newGet(t, srv.URL))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok", body)
	tok := tr.core.Ticket()
	require.Len(t, tok, ticket.Len, "the admission's token is kept")

	e1 := startRollout(t, c, invalidate.Rollout{ID: "r1", Scope: "tag:a", Cohorts: 1, Rate: 1000, Clients: 1, Coverage: 0.1, By: "test"})
	e2 := startRollout(t, c, invalidate.Rollout{ID: "r2", Scope: "caf\xc3\xa9", Cohorts: 1, Rate: 1000, Clients: 1, Coverage: 0.1, By: "test"})
	advance(t, c, clk, time.Second)
	for range 2 {
		status, _ = do(t, tr, newGet(t, srv.URL))
		require.Equal(t, http.StatusOK, status, "rejoined on the ticket: the budget is spent for an hour")
	}
	assert.Equal(t, []invalidate.Notice{{RolloutID: "r1", Scope: "tag:a", Epoch: e1}, {RolloutID: "r2", Scope: "caf\xc3\xa9", Epoch: e2}}, got,
		"each notice applied once, in order")
	assert.Equal(t, e2, tr.Applied())

	s := seen.all()
	require.Len(t, s, 3)
	assert.Equal(t, "client-7", s[0].header.Get(headerClient))
	assert.Equal(t, "0", s[0].header.Get(headerEpoch))
	assert.Empty(t, s[0].header.Values(headerTicket))
	assert.Equal(t, tok, s[1].header.Get(headerTicket))
	assert.Equal(t, strconv.FormatUint(e2, 10), s[2].header.Get(headerEpoch), "the applied epoch is sent")
	assert.NotEqual(t, s[1].header.Get(headerTicket), s[2].header.Get(headerTicket), "the refreshed token is sent")

	tr.ResetSession()
	status, _ = do(t, tr, newGet(t, srv.URL))
	assert.Equal(t, http.StatusServiceUnavailable, status, "after ResetSession the client is a new session, refused until its slot in an hour")
}

func TestTransportDoesNotTouchCallersRequest(t *testing.T) {
	var seen attempts
	srv := httptest.NewServer(seen.wrap(&okHandler{}))
	t.Cleanup(srv.Close)
	tr := newTransport(t, srv, TransportConfig{ClientID: "me"})
	req := newGet(t, srv.URL)
	req.Header.Set(headerClient, "someone-else")
	req.Header.Set(headerEpoch, "99")
	req.Header.Set(headerTicket, "stale")
	status, _ := do(t, tr, req)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "someone-else", req.Header.Get(headerClient), "the caller's request is not modified")
	h := seen.all()[0].header
	assert.Equal(t, "me", h.Get(headerClient))
	assert.Empty(t, h.Values(headerEpoch), "no epoch without OnInvalidate")
	assert.Empty(t, h.Values(headerTicket))
}

// TestTransportWaitsForTheSlot checks that a refused client comes back no
// earlier than its admission slot, and is let in then.
func TestTransportWaitsForTheSlot(t *testing.T) {
	// 5 sessions per second, 1 at once: the second client's slot is 200 ms
	// after the first, plus up to 200 ms of the gate's jitter. The clock
	// stands still for the first two requests, so the second is refused
	// however slow the machine (on the wall clock the bucket could refill
	// between them), and runs from the refusal on, so the Transport's real
	// wait plays out against it. The retry is let in when it comes at or
	// after the slot and within the 10 s slot grace: only a stall of 10 s
	// between the refusal and the retry could fail this.
	clk := &thawingClock{}
	a := newAdmission(t, limiter.PerSecond(5, 1), clk, admission.Config{})
	var seen attempts
	mw, err := Admit(a, AdmitConfig{})
	require.NoError(t, err)
	var served atomic.Int32
	srv := httptest.NewServer(seen.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mw(&okHandler{}).ServeHTTP(w, r)
		if served.Add(1) == 2 {
			clk.Thaw() // after the refusal is decided, before the client waits
		}
	})))
	t.Cleanup(srv.Close)

	first := newTransport(t, srv, TransportConfig{ClientID: "first"})
	second := newTransport(t, srv, TransportConfig{ClientID: "second"})
	status, _ := do(t, first, newGet(t, srv.URL))
	require.Equal(t, http.StatusOK, status)
	status, _ = do(t, second, newGet(t, srv.URL))
	require.Equal(t, http.StatusOK, status, "let in on the retry")

	s := seen.all()
	require.Len(t, s, 3, "one refusal, one retry")
	// The slot is at least one interval after the refusal (which the
	// clock put at the first admission). A lower bound only, since load
	// can delay the retry but never advance it.
	assert.GreaterOrEqual(t, s[2].at.Sub(s[1].at), 200*time.Millisecond)
}

// refuser answers 503 to the first n requests (with the given Retry-After
// fields, if any), then 200.
type refuser struct {
	n          int32
	retryAfter string
	millis     string
	count      atomic.Int32
}

func (h *refuser) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if h.count.Add(1) <= h.n {
		if h.retryAfter != "" {
			w.Header().Set("Retry-After", h.retryAfter)
		}
		if h.millis != "" {
			w.Header().Set(headerRetryAfterMillis, h.millis)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "busy")
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func TestTransportFullJitterWithoutHint(t *testing.T) {
	h := &refuser{n: 2}
	var seen attempts
	srv := httptest.NewServer(seen.wrap(h))
	t.Cleanup(srv.Close)
	b := retry.Backoff{Base: 20 * time.Millisecond, Cap: 40 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2)).Float64}
	status, body := do(t, newTransport(t, srv, TransportConfig{Retry: retry.Policy{Backoff: b}}), newGet(t, srv.URL))
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok", body)
	assert.Len(t, seen.all(), 3)
}

func TestTransportHonoursMillisOverSeconds(t *testing.T) {
	// Retry-After says 30 s; the ms field says 50 ms. Waiting for the
	// seconds would exceed the 5 s max wait and return the refusal.
	h := &refuser{n: 1, retryAfter: "30", millis: "50"}
	var seen attempts
	srv := httptest.NewServer(seen.wrap(h))
	t.Cleanup(srv.Close)
	status, _ := do(t, newTransport(t, srv, TransportConfig{Retry: retry.Policy{MaxWait: 5 * time.Second}}), newGet(t, srv.URL))
	assert.Equal(t, http.StatusOK, status)
	s := seen.all()
	require.Len(t, s, 2)
	assert.GreaterOrEqual(t, s[1].at.Sub(s[0].at), 50*time.Millisecond)
}

func TestTransportGivesUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h        *refuser
		retry    retry.Policy
		attempts int
	}{
		{"max attempts", &refuser{n: 100, millis: "1"}, retry.Policy{MaxAttempts: 3}, 3},
		{"one attempt", &refuser{n: 100, millis: "1"}, retry.Policy{MaxAttempts: 1}, 1},
		{"hint beyond max wait", &refuser{n: 100, retryAfter: "60"}, retry.Policy{}, 1},
		{"waits beyond max wait", &refuser{n: 100, millis: "400"}, retry.Policy{MaxWait: time.Second}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen attempts
			srv := httptest.NewServer(seen.wrap(tc.h))
			t.Cleanup(srv.Close)
			start := time.Now()
			status, body := do(t, newTransport(t, srv, TransportConfig{Retry: tc.retry}), newGet(t, srv.URL))
			assert.Equal(t, http.StatusServiceUnavailable, status)
			assert.Equal(t, "busy", body, "the last refusal is returned as it came")
			assert.Len(t, seen.all(), tc.attempts)
			// Nothing here waits more than 1 s; 20 s is for a loaded machine.
			assert.Less(t, time.Since(start), 20*time.Second)
		})
	}
}

func TestTransportRetryBudget(t *testing.T) {
	h := &refuser{n: 1 << 30, millis: "1"}
	var seen attempts
	srv := httptest.NewServer(seen.wrap(h))
	t.Cleanup(srv.Close)
	// 4 tokens: every refusal takes one, and a retry needs more than 2
	// left, so an outage allows exactly one retry (4 → 3 → retry → 2 → stop).
	rb, err := retry.NewBudget(4, 0.5)
	require.NoError(t, err)
	tr := newTransport(t, srv, TransportConfig{Retry: retry.Policy{Budget: rb, MaxAttempts: 100}})
	for range 5 {
		status, _ := do(t, tr, newGet(t, srv.URL))
		assert.Equal(t, http.StatusServiceUnavailable, status)
	}
	assert.Len(t, seen.all(), 5+1, "five first tries and the one retry the budget allows")
}

func TestTransportResendsOnlyWhatIsSafe(t *testing.T) {
	h := &refuser{n: 1 << 30, millis: "1"}
	var seen attempts
	srv := httptest.NewServer(seen.wrap(h))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name     string
		req      func() *http.Request
		attempts int
	}{
		{"GET", func() *http.Request { return newGet(t, srv.URL) }, 3},
		{"PUT with a replayable body", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("payload"))
			return r
		}, 3},
		{"POST", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("payload"))
			return r
		}, 1},
		{"POST with an idempotency key", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte("payload")))
			r.Header.Set("Idempotency-Key", "k1")
			return r
		}, 3},
		{"PUT with a body that cannot be replayed", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, srv.URL, io.NopCloser(strings.NewReader("payload")))
			return r
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(seen.all())
			tr := newTransport(t, srv, TransportConfig{Retry: retry.Policy{MaxAttempts: 3}})
			status, _ := do(t, tr, tc.req())
			assert.Equal(t, http.StatusServiceUnavailable, status)
			s := seen.all()[before:]
			assert.Len(t, s, tc.attempts)
			for _, r := range s {
				if tc.name != "GET" {
					assert.Equal(t, "payload", r.body, "the body is sent whole on every attempt")
				}
			}
		})
	}
}

func TestTransportHonoursCancellation(t *testing.T) {
	h := &refuser{n: 1 << 30, retryAfter: "5"}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req := newGet(t, srv.URL).WithContext(ctx)
	start := time.Now()
	_, err := (&http.Client{Transport: newTransport(t, srv, TransportConfig{})}).Do(req)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	// The wait was 5 s; the context ended it after 0.1 s. 4 s of slack
	// for a loaded machine still proves it did not wait out the hint.
	assert.Less(t, time.Since(start), 4*time.Second)
}

func TestTransportConcurrentNoticesAppliedOnceInOrder(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	const rollouts = 20
	for i := range rollouts {
		startRollout(t, c, invalidate.Rollout{ID: fmt.Sprint("r", i), Scope: fmt.Sprint("s", i), Cohorts: 1, Rate: 1000,
			Clients: 1, Coverage: 0.1, By: "test"})
	}
	advance(t, c, clk, time.Second)
	srv := serveInvalidate(t, c, &okHandler{}, InvalidateConfig{MaxNotices: 3})

	var (
		inFlight, maxInFlight atomic.Int32
		mu                    sync.Mutex
		got                   []string
	)
	tr := newTransport(t, srv, TransportConfig{ClientID: "c", OnInvalidate: func(n invalidate.Notice) {
		f := inFlight.Add(1)
		for m := maxInFlight.Load(); f > m && !maxInFlight.CompareAndSwap(m, f); m = maxInFlight.Load() {
		}
		time.Sleep(time.Millisecond) // give an overlap the chance to show
		mu.Lock()
		got = append(got, n.Scope)
		mu.Unlock()
		inFlight.Add(-1)
	}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				status, _ := do(t, tr, newGet(t, srv.URL))
				assert.Equal(t, http.StatusOK, status)
			}
		})
	}
	wg.Wait()
	// Concurrent requests may carry an epoch the applier has not reached
	// yet and be told the same notices again (which the Transport skips);
	// requests one at a time collect the rest.
	for range rollouts {
		status, _ := do(t, tr, newGet(t, srv.URL))
		require.Equal(t, http.StatusOK, status)
	}
	want := make([]string, rollouts)
	for i := range want {
		want[i] = fmt.Sprint("s", i)
	}
	assert.Equal(t, want, got, "every notice once, in epoch order")
	assert.EqualValues(t, 1, maxInFlight.Load(), "the callback never runs twice at once")
}

func TestTransportMalformedNotices(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(headerInvalidate, `"a";epoch=5;id="r5", "b";epoch=oops;id="r6", "c";epoch=7;id="r7"`)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	var logs syncBuffer
	var got []string
	tr := newTransport(t, srv, TransportConfig{OnInvalidate: func(n invalidate.Notice) { got = append(got, n.Scope) },
		Logger: newTextLogger(&logs)})
	status, _ := do(t, tr, newGet(t, srv.URL))
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, []string{"a"}, got, "the notices before the fault are applied, none after")
	assert.EqualValues(t, 5, tr.Applied())
	assert.Contains(t, logs.String(), "malformed Herdcap-Invalidate")
}

func TestTransportConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg   TransportConfig
		want  string
		retry bool // a Retry field: retry.ErrInvalidConfig is wrapped too
	}{
		{TransportConfig{ClientID: " "}, "TransportConfig.ClientID must be 1 to 256 bytes of visible ASCII", false},
		{TransportConfig{ClientID: "a b"}, `TransportConfig.ClientID must be 1 to 256 bytes of visible ASCII other than the comma, got "a b"`, false},
		{TransportConfig{ClientID: strings.Repeat("x", maxClientIDLen+1)}, "TransportConfig.ClientID must be 1 to 256 bytes", false},
		{TransportConfig{Applied: invalidate.MaxEpoch + 1}, "TransportConfig.Applied must be at most invalidate.MaxEpoch", false},
		{TransportConfig{Retry: retry.Policy{Backoff: retry.Backoff{Base: -time.Second}}}, "TransportConfig.Retry.Backoff.Base must be >= 0, got -1s", true},
		{TransportConfig{Retry: retry.Policy{MaxAttempts: -1}}, "TransportConfig.Retry.MaxAttempts must be >= 0, got -1", true},
		{TransportConfig{Retry: retry.Policy{MaxWait: -time.Second}}, "TransportConfig.Retry.MaxWait", true},
	} {
		_, err := NewTransport(tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, "httpmw: invalid config: "+tc.want)
		if tc.retry {
			assert.ErrorIs(t, err, retry.ErrInvalidConfig)
		}
	}
	tr, err := NewTransport(TransportConfig{Applied: 42})
	require.NoError(t, err)
	assert.EqualValues(t, 42, tr.Applied())
	assert.Equal(t, http.DefaultTransport, tr.base)
}
