package httpmw_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/httpmw"
	"github.com/herdcap/herdcap/internal/fakeclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/origin"
)

// TestWriteRefusal: a handler whose origin call the guard refuses answers
// a real client 503 with the guard's wait in Retry-After (whole seconds,
// rounded up) and Herdcap-Retry-After-Ms (exact); any other error is left
// to the handler.
func TestWriteRefusal(t *testing.T) {
	clk := fakeclock.New(time.Unix(1_000_000, 0))
	b, err := limiter.NewLocal(limiter.PerSecond(0.8, 1), limiter.Config{Clock: clk})
	require.NoError(t, err)
	defer b.Close()
	g, err := origin.New(origin.Config{Budget: b, Name: "db", MaxWait: origin.NoWait, Clock: clk})
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := g.Do(r.Context(), origin.Foreground, func(context.Context) error { return nil })
		if httpmw.WriteRefusal(w, fmt.Errorf("loading the page: %w", err)) {
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	get := func() (*http.Response, string) {
		res, err := srv.Client().Get(srv.URL)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res, string(body)
	}
	res, body := get()
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "ok", body)
	res, body = get()
	assert.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Equal(t, "Service Unavailable\n", body)
	assert.Equal(t, "2", res.Header.Get("Retry-After"), "a token every 1.25 s: 2 whole seconds")
	assert.Equal(t, "1250", res.Header.Get("Herdcap-Retry-After-Ms"), "the exact wait")
	assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"))

	for _, err := range []error{nil, errors.New("boom"), origin.ErrOverload, context.Canceled} {
		rec := httptest.NewRecorder()
		assert.False(t, httpmw.WriteRefusal(rec, err), "%v", err)
		assert.Empty(t, rec.Header(), "nothing written for %v", err)
		assert.Zero(t, rec.Body.Len())
	}
}
