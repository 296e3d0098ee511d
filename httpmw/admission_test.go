package httpmw

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/redistest"
	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/admission"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// testTicketKeys are the ticket keys of the gates under test.
var testTicketKeys = [][]byte{[]byte("a 32-byte key for herdcap tests!")}

// newAdmission returns a real in-process gate of cfg on clk.
func newAdmission(t testing.TB, l limiter.Limit, clk limiter.Clock, cfg admission.Config) *admission.Gate {
	t.Helper()
	cfg.Clock = clk
	a, err := admission.New(l, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// serveAdmit starts an httptest server with next behind Admit.
func serveAdmit(t testing.TB, a *admission.Gate, next http.Handler, cfg AdmitConfig) *httptest.Server {
	t.Helper()
	mw, err := Admit(a, cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(mw(next))
	t.Cleanup(srv.Close)
	return srv
}

func asClient(id string) http.Header { return http.Header{headerClient: {id}} }

func TestAdmitRefusesWithSlot(t *testing.T) {
	clk := newManualClock()
	// 2 new sessions per second, 1 at once: the gate of
	// admission.ExampleNew, whose numbers these must match.
	a := newAdmission(t, limiter.PerSecond(2, 1), clk, admission.Config{})
	next := &okHandler{}
	srv := serveAdmit(t, a, next, AdmitConfig{})

	res := get(t, srv, asClient("alice"))
	require.Equal(t, http.StatusOK, res.status)
	assert.Empty(t, res.retryAfter)
	assert.Empty(t, res.header.Values(headerTicket), "no tickets unless the gate issues them")

	for _, tc := range []struct {
		id     string
		ms     string
		header string
	}{{"bob", "864", "1"}, {"carol", "1230", "2"}, {"dave", "1572", "2"}} {
		res := get(t, srv, asClient(tc.id))
		require.Equal(t, http.StatusServiceUnavailable, res.status, tc.id)
		assert.Equal(t, "Service Unavailable\n", res.body)
		assert.Equal(t, tc.header, res.retryAfter, "%s: whole seconds, rounded up", tc.id)
		assert.Equal(t, tc.ms, res.header.Get(headerRetryAfterMillis), "%s: the exact slot", tc.id)
	}
	assert.EqualValues(t, 1, next.served.Load(), "refused sessions never reach the handler")

	// Early is refused with the same slot; at the slot, let in.
	clk.Add(300 * time.Millisecond)
	res = get(t, srv, asClient("bob"))
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Equal(t, "564", res.header.Get(headerRetryAfterMillis), "the same slot, 300 ms closer")
	clk.Add(564 * time.Millisecond)
	assert.Equal(t, http.StatusOK, get(t, srv, asClient("bob")).status)
}

func TestAdmitTickets(t *testing.T) {
	clk := newManualClock()
	a := newAdmission(t, limiter.Every(time.Hour, 1), clk, admission.Config{TicketKeys: testTicketKeys, TicketTTL: 10 * time.Minute})
	srv := serveAdmit(t, a, &okHandler{}, AdmitConfig{})

	res := get(t, srv, asClient("ann"))
	require.Equal(t, http.StatusOK, res.status)
	tok := res.header.Get(headerTicket)
	require.Len(t, tok, ticket.Len)

	// The budget is spent for an hour; ann rejoins on her ticket, and
	// is handed a fresh one each time.
	clk.Add(time.Minute)
	res = get(t, srv, http.Header{headerClient: {"ann"}, headerTicket: {tok}})
	require.Equal(t, http.StatusOK, res.status)
	fresh := res.header.Get(headerTicket)
	require.Len(t, fresh, ticket.Len)
	assert.NotEqual(t, tok, fresh, "the ticket is refreshed")

	flip := []byte(fresh)
	flip[10] ^= 'A' ^ 'B'
	if flip[10] == fresh[10] {
		flip[10] = 'C'
	}
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"no token", asClient("ann")},
		{"tampered", http.Header{headerClient: {"ann"}, headerTicket: {string(flip)}}},
		{"another client's", http.Header{headerClient: {"bob"}, headerTicket: {fresh}}},
		{"truncated", http.Header{headerClient: {"ann"}, headerTicket: {fresh[:20]}}},
		{"oversized", http.Header{headerClient: {"ann"}, headerTicket: {strings.Repeat(fresh, 300)}}},
		{"repeated", http.Header{headerClient: {"ann"}, headerTicket: {fresh, fresh}}},
		{"not base64url", http.Header{headerClient: {"ann"}, headerTicket: {strings.Repeat("+", ticket.Len)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, srv, tc.header)
			assert.Equal(t, http.StatusServiceUnavailable, res.status, "a bad token makes a new session, which the spent budget refuses")
			assert.NotEmpty(t, res.retryAfter)
			assert.Empty(t, res.header.Values(headerTicket))
		})
	}

	clk.Add(11 * time.Minute)
	res = get(t, srv, http.Header{headerClient: {"ann"}, headerTicket: {fresh}})
	assert.Equal(t, http.StatusServiceUnavailable, res.status, "an expired token is a new session")
}

func TestAdmitSessionStart(t *testing.T) {
	clk := newManualClock()
	a := newAdmission(t, limiter.Every(time.Hour, 1), clk, admission.Config{})
	next := &okHandler{}
	srv := serveAdmit(t, a, next, AdmitConfig{SessionStart: func(r *http.Request) bool { return r.URL.Path == "/connect" }})

	assert.Equal(t, http.StatusOK, getPath(t, srv, "/connect", asClient("a")).status)
	assert.Equal(t, http.StatusServiceUnavailable, getPath(t, srv, "/connect", asClient("b")).status)
	for range 3 {
		assert.Equal(t, http.StatusOK, getPath(t, srv, "/data", asClient("b")).status, "only /connect starts a session")
	}
	assert.EqualValues(t, 4, next.served.Load())
}

func TestAdmitBadInput(t *testing.T) {
	clk := newManualClock()
	a := newAdmission(t, limiter.Every(time.Hour, 100), clk, admission.Config{})
	var logs syncBuffer
	next := &okHandler{}
	srv := serveAdmit(t, a, next, AdmitConfig{Logger: newTextLogger(&logs)})
	for _, h := range []http.Header{
		{headerClient: {""}},
		{headerClient: {"a", "b"}},
		{headerClient: {strings.Repeat("x", maxClientIDLen+1)}},
		{headerClient: {"caf\xc3\xa9"}},
	} {
		res := get(t, srv, h)
		assert.Equal(t, http.StatusBadRequest, res.status, "%q", h)
		assert.Equal(t, "Bad Request\n", res.body)
	}
	assert.Zero(t, next.served.Load())
	assert.Contains(t, logs.String(), "no usable client ID; answering 400")

	// A key function handing the Admission an ID it cannot take is a
	// server bug: 500, no Retry-After.
	long := func(*http.Request) (string, error) { return strings.Repeat("k", admission.MaxClientIDLen+1), nil }
	srv = serveAdmit(t, a, next, AdmitConfig{Key: long, Logger: newTextLogger(&logs)})
	res := get(t, srv, nil)
	assert.Equal(t, http.StatusInternalServerError, res.status)
	assert.Empty(t, res.retryAfter)
	assert.Contains(t, logs.String(), "rejected the client ID; answering 500")
}

func TestAdmitClosedIs503(t *testing.T) {
	a := newAdmission(t, limiter.PerSecond(10, 10), newManualClock(), admission.Config{})
	require.NoError(t, a.Close())
	var logs syncBuffer
	srv := serveAdmit(t, a, &okHandler{}, AdmitConfig{Logger: newTextLogger(&logs)})
	res := get(t, srv, nil)
	assert.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Equal(t, "1", res.retryAfter, "no hint from the admission: come back in a second")
	assert.Empty(t, res.header.Values(headerRetryAfterMillis), "a wait every caller is told is no slot")
	assert.Contains(t, logs.String(), "admission failed; answering 503")

	// UnavailableRetryAfter changes the wait, which is still no slot.
	srv = serveAdmit(t, a, &okHandler{}, AdmitConfig{UnavailableRetryAfter: 2500 * time.Millisecond})
	res = get(t, srv, nil)
	assert.Equal(t, http.StatusServiceUnavailable, res.status)
	assert.Equal(t, "3", res.retryAfter)
	assert.Empty(t, res.header.Values(headerRetryAfterMillis))
}

// TestAdmitRedisFailClosed runs the real fail-closed path: a Redis
// admission whose server is killed refuses with 503 and a Retry-After
// spread over one to two breaker periods, without leaking the error.
func TestAdmitRedisFailClosed(t *testing.T) {
	s := redistest.Start(t)
	const breakerOpen = 2 * time.Second
	a, err := admission.NewShared(fleet.Redis{Client: s.Client(t), BreakerFailures: 1, BreakerOpen: breakerOpen, Timeout: time.Second}, limiter.PerSecond(100, 100),
		admission.SharedConfig{Failure: fleet.FailClosed})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	var logs syncBuffer
	srv := serveAdmit(t, a, &okHandler{}, AdmitConfig{Logger: newTextLogger(&logs)})
	require.Equal(t, http.StatusOK, get(t, srv, asClient("c1")).status)

	s.Kill(t)
	for i := range 3 {
		res := get(t, srv, asClient(fmt.Sprint("c", i)))
		require.Equal(t, http.StatusServiceUnavailable, res.status)
		assert.Equal(t, "Service Unavailable\n", res.body)
		assert.NotContains(t, res.body, s.Addr())
		ms, err := strconv.Atoi(res.header.Get(headerRetryAfterMillis))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Duration(ms)*time.Millisecond, breakerOpen)
		assert.LessOrEqual(t, time.Duration(ms)*time.Millisecond, 2*breakerOpen)
		secs, err := strconv.Atoi(res.retryAfter)
		require.NoError(t, err)
		assert.Equal(t, (ms+999)/1000, secs)
	}
	assert.Contains(t, logs.String(), "unavailable=true")
}

func TestAdmitConfig(t *testing.T) {
	a := newAdmission(t, limiter.PerSecond(1, 1), newManualClock(), admission.Config{})
	_, err := Admit(nil, AdmitConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.EqualError(t, err, "httpmw: invalid config: Admit's gate is nil")
	for _, tc := range []struct {
		cfg  AdmitConfig
		want string
	}{
		{AdmitConfig{Key: func(*http.Request) (string, error) { return "", nil }, ClientIP: ClientIP{TrustedProxies: []string{"10.0.0.0/8"}}},
			"AdmitConfig.ClientIP configures the default key, which AdmitConfig.Key replaces"},
		{AdmitConfig{ClientIP: ClientIP{TrustedProxies: []string{"10.0.0.300"}}}, "AdmitConfig.ClientIP.TrustedProxies[0]"},
		{AdmitConfig{ClientIP: ClientIP{IPv6Prefix: 129}}, "AdmitConfig.ClientIP.IPv6Prefix"},
		{AdmitConfig{UnavailableRetryAfter: -time.Millisecond}, "httpmw: invalid config: AdmitConfig.UnavailableRetryAfter must be >= 0 (0 means 1s), got -1ms"},
	} {
		_, err := Admit(a, tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, tc.want)
	}
}
