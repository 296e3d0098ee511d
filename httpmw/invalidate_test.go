package httpmw

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// newCoordinator returns a real coordinator on a fresh memory store, driven
// by clk, reading the store on every Due (no cache) so that what a test
// released is what the next request sees.
func newCoordinator(t testing.TB, clk *manualClock) *invalidate.Coordinator {
	t.Helper()
	c, err := invalidate.NewCoordinator(invalidate.NewMemoryStore(),
		invalidate.Config{Clock: clk, CacheTTL: -1, PopulationWindow: -1})
	require.NoError(t, err)
	return c
}

// startRollout starts r on c and returns its epoch.
func startRollout(t testing.TB, c *invalidate.Coordinator, r invalidate.Rollout) uint64 {
	t.Helper()
	st, err := c.Start(context.Background(), r)
	require.NoError(t, err)
	return st.Rollout.Epoch
}

// advance moves clk by d and advances c to it.
func advance(t testing.TB, c *invalidate.Coordinator, clk *manualClock, d time.Duration) {
	t.Helper()
	clk.Add(d)
	require.NoError(t, c.Advance(context.Background()))
}

// serveInvalidate starts an httptest server with next behind Invalidate.
func serveInvalidate(t testing.TB, c *invalidate.Coordinator, next http.Handler, cfg InvalidateConfig) *httptest.Server {
	t.Helper()
	mw, err := Invalidate(c, cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(mw(next))
	t.Cleanup(srv.Close)
	return srv
}

// catalog is an unguarded rollout of 4 cohorts, one per second for 100
// clients (100 / (4 × 25) = 1 s per cohort).
var catalog = invalidate.Rollout{ID: "catalog-v2", Scope: "tag:catalog", Cohorts: 4, Rate: 25,
	Clients: 100, Coverage: 0.1, By: "test"}

func TestInvalidateDeliversReleasedCohorts(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	epoch := startRollout(t, c, catalog)
	next := &okHandler{}
	srv := serveInvalidate(t, c, next, InvalidateConfig{})
	want := fmt.Sprintf(`"tag:catalog";epoch=%d;id="catalog-v2"`, epoch)

	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%03d", i)
	}
	told := func(applied uint64) map[string]bool {
		out := map[string]bool{}
		for _, id := range ids {
			res := get(t, srv, http.Header{headerClient: {id}, headerEpoch: {strconv.FormatUint(applied, 10)}})
			require.Equal(t, http.StatusOK, res.status)
			require.Equal(t, "ok", res.body)
			if v := res.header.Get(headerInvalidate); v != "" {
				assert.Equal(t, want, v)
				assert.Equal(t, strconv.FormatUint(epoch, 10), res.header.Get(headerEpoch))
				out[id] = true
			} else {
				assert.Empty(t, res.header.Values(headerEpoch))
			}
		}
		return out
	}

	assert.Empty(t, told(0), "nothing is released before the first advance")
	for wave := 1; wave <= 4; wave++ {
		advance(t, c, clk, time.Second)
		got := told(0)
		for _, id := range ids {
			cohort := limiter.Cohort(catalog.ID, id, catalog.Cohorts)
			assert.Equal(t, cohort < wave, got[id], "wave %d: %s is in cohort %d", wave, id, cohort)
		}
	}
	assert.Empty(t, told(epoch), "a client that applied the epoch is told nothing")

	// A request without an epoch is from a client that takes no part.
	res := get(t, srv, http.Header{headerClient: {ids[0]}})
	require.Equal(t, http.StatusOK, res.status)
	assert.Empty(t, res.header.Values(headerInvalidate))
	assert.EqualValues(t, 100*6+1, next.served.Load(), "every request reaches the handler")
}

func TestInvalidateKeysByClientIPWithoutHeader(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	epoch := startRollout(t, c, invalidate.Rollout{ID: "r", Scope: "s", Cohorts: 1000, Rate: 1000,
		Clients: 1000, Coverage: 0.1, By: "test"})
	srv := serveInvalidate(t, c, &okHandler{}, InvalidateConfig{})
	// Release exactly the cohorts up to the one of 127.0.0.1: its
	// requests are told, those of a client ID in a later cohort are not.
	mine := limiter.Cohort("r", "127.0.0.1", 1000)
	other := ""
	for i := 0; other == ""; i++ {
		if id := fmt.Sprint("c", i); limiter.Cohort("r", id, 1000) > mine {
			other = id
		}
	}
	for {
		st, err := c.Status(t.Context(), "r")
		require.NoError(t, err)
		if st.Released > mine {
			require.LessOrEqual(t, st.Released, limiter.Cohort("r", other, 1000), "advance released past the probe's cohort; pick smaller steps")
			break
		}
		advance(t, c, clk, time.Millisecond)
	}
	res := get(t, srv, http.Header{headerEpoch: {"0"}})
	assert.Equal(t, strconv.FormatUint(epoch, 10), res.header.Get(headerEpoch))
	res = get(t, srv, http.Header{headerEpoch: {"0"}, headerClient: {other}})
	assert.Empty(t, res.header.Get(headerEpoch))
}

func TestInvalidateBadInputIs400(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	startRollout(t, c, catalog)
	next := &okHandler{}
	srv := serveInvalidate(t, c, next, InvalidateConfig{})
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"empty epoch", http.Header{headerEpoch: {""}}},
		{"negative epoch", http.Header{headerEpoch: {"-1"}}},
		{"hex epoch", http.Header{headerEpoch: {"0x2a"}}},
		{"decimal epoch", http.Header{headerEpoch: {"4.2"}}},
		{"epoch above MaxEpoch", http.Header{headerEpoch: {"9007199254740992"}}},
		{"epoch overflowing uint64", http.Header{headerEpoch: {"18446744073709551616"}}},
		{"oversized epoch", http.Header{headerEpoch: {strings.Repeat("9", 8<<10)}}},
		{"repeated epoch", http.Header{headerEpoch: {"1", "2"}}},
		{"two epochs in one line", http.Header{headerEpoch: {"1, 2"}}},
		{"client ID with a space", http.Header{headerEpoch: {"0"}, headerClient: {"a b"}}},
		{"client ID with a comma", http.Header{headerEpoch: {"0"}, headerClient: {"a,b"}}},
		{"oversized client ID", http.Header{headerEpoch: {"0"}, headerClient: {strings.Repeat("c", maxClientIDLen+1)}}},
		{"repeated client ID", http.Header{headerEpoch: {"0"}, headerClient: {"a", "b"}}},
		{"empty client ID", http.Header{headerEpoch: {"0"}, headerClient: {""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, srv, tc.header)
			assert.Equal(t, http.StatusBadRequest, res.status)
			assert.Equal(t, "Bad Request\n", res.body)
			assert.Empty(t, res.header.Values(headerInvalidate))
		})
	}
	assert.Zero(t, next.served.Load(), "a bad request never reaches the handler")
}

// deadRedis returns a client for a loopback port nothing listens on: a real
// store that cannot be reached.
func deadRedis(t testing.TB) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestInvalidateCoordinatorErrorServesWithoutNotices(t *testing.T) {
	store, err := invalidate.NewRedisStore(fleet.Redis{Client: deadRedis(t), Timeout: time.Second})
	require.NoError(t, err)
	c, err := invalidate.NewCoordinator(store, invalidate.Config{})
	require.NoError(t, err)
	var logs syncBuffer
	next := &okHandler{}
	srv := serveInvalidate(t, c, next, InvalidateConfig{Logger: newTextLogger(&logs)})

	res := get(t, srv, http.Header{headerEpoch: {"0"}, headerClient: {"c1"}})
	assert.Equal(t, http.StatusOK, res.status, "a coordinator failure must not fail the request")
	assert.Equal(t, "ok", res.body)
	assert.Empty(t, res.header.Values(headerInvalidate))
	assert.EqualValues(t, 1, next.served.Load())
	assert.Contains(t, logs.String(), "coordinator failed; serving without notices")
	assert.Contains(t, logs.String(), "unavailable=true")
}

func TestInvalidateKeyFunc(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	epoch := startRollout(t, c, invalidate.Rollout{ID: "all-at-once", Scope: "s", Cohorts: 1, Rate: 1000,
		Clients: 1, Coverage: 0.1, By: "test"})
	advance(t, c, clk, time.Second)
	key := func(r *http.Request) (string, error) {
		switch u := r.Header.Get("X-User"); u {
		case "":
			return "", fmt.Errorf("not logged in: %w", ErrNoKey)
		case "broken":
			return "", io.ErrUnexpectedEOF
		default:
			return "user:" + u, nil
		}
	}
	var logs syncBuffer
	srv := serveInvalidate(t, c, &okHandler{}, InvalidateConfig{Key: key, Logger: newTextLogger(&logs)})
	res := get(t, srv, http.Header{headerEpoch: {"0"}, "X-User": {"ann"}})
	assert.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, strconv.FormatUint(epoch, 10), res.header.Get(headerEpoch))
	assert.Equal(t, http.StatusBadRequest, get(t, srv, http.Header{headerEpoch: {"0"}}).status)
	assert.Equal(t, http.StatusInternalServerError, get(t, srv, http.Header{headerEpoch: {"0"}, "X-User": {"broken"}}).status)
	assert.Contains(t, logs.String(), "unexpected EOF")
	// A client that takes no part is not keyed at all.
	assert.Equal(t, http.StatusOK, get(t, srv, nil).status)
}

func TestInvalidateMaxNotices(t *testing.T) {
	clk := newManualClock()
	c := newCoordinator(t, clk)
	var epochs []uint64
	for i := range 5 {
		epochs = append(epochs, startRollout(t, c, invalidate.Rollout{ID: fmt.Sprint("r", i), Scope: fmt.Sprint("s", i),
			Cohorts: 1, Rate: 1000, Clients: 1, Coverage: 0.1, By: "test"}))
	}
	advance(t, c, clk, time.Second)
	srv := serveInvalidate(t, c, &okHandler{}, InvalidateConfig{MaxNotices: 2})
	var applied uint64
	var scopes []string
	for range 4 {
		res := get(t, srv, http.Header{headerEpoch: {strconv.FormatUint(applied, 10)}})
		got, err := wire.ParseNotices(nil, res.header.Values(headerInvalidate))
		require.NoError(t, err)
		require.LessOrEqual(t, len(got), 2)
		for _, n := range got {
			scopes = append(scopes, n.Scope)
			applied = n.Epoch
		}
		if len(got) > 0 {
			assert.Equal(t, strconv.FormatUint(applied, 10), res.header.Get(headerEpoch))
		}
	}
	assert.Equal(t, []string{"s0", "s1", "s2", "s3", "s4"}, scopes, "in epoch order, each once")
	assert.Equal(t, epochs[4], applied)
}

func TestInvalidateConfig(t *testing.T) {
	c := newCoordinator(t, newManualClock())
	_, err := Invalidate(nil, InvalidateConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.EqualError(t, err, "httpmw: invalid config: Invalidate's coordinator is nil")
	for _, tc := range []struct {
		cfg  InvalidateConfig
		want string
	}{
		{InvalidateConfig{MaxNotices: -1}, "InvalidateConfig.MaxNotices must be >= 0, got -1"},
		{InvalidateConfig{Key: func(*http.Request) (string, error) { return "", nil }, ClientIP: ClientIP{IPv4Prefix: 24}},
			"InvalidateConfig.ClientIP configures the default key"},
		{InvalidateConfig{ClientIP: ClientIP{Headers: []string{"Via"}}}, "InvalidateConfig.ClientIP.Headers[0]"},
	} {
		_, err := Invalidate(c, tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig)
		assert.ErrorContains(t, err, tc.want)
	}
}
