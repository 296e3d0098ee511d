package httpmw

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// TestShadowRefusalsAreObserved: a shadow policy's refusal lets the
// request through and is reported as observe.Shadow, named by the policy.
func TestShadowRefusalsAreObserved(t *testing.T) {
	var got []observe.Decision
	key := func(*http.Request) (string, error) { return "k", nil }
	b, err := limiter.NewLocal(limiter.PerMinute(1, 1), limiter.Config{})
	require.NoError(t, err)
	mw, err := RateLimit(RateLimitConfig{Observe: &observe.Hooks{Decision: func(e observe.Decision) { got = append(got, e) }}},
		Policy{Name: "trial", Budget: b, Key: key, Shadow: true})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		assert.Equal(t, http.StatusOK, rec.Code)
	}
	assert.Equal(t, []observe.Decision{{Policy: "trial", Outcome: observe.Shadow, Source: observe.SourceLocal, Tokens: 1}}, got)
}
