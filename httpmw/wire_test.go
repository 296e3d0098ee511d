package httpmw

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter/admission"
)

// TestMaxClientIDLen checks that the documented limit is the one the
// codec enforces, at the boundary.
func TestMaxClientIDLen(t *testing.T) {
	assert.Equal(t, 256, maxClientIDLen, "the documented limit")
	assert.Equal(t, admission.MaxClientIDLen, maxClientIDLen, "one bound for the field and a Key's IDs")
	_, err := NewTransport(TransportConfig{ClientID: strings.Repeat("x", maxClientIDLen)})
	assert.NoError(t, err)
	_, err = NewTransport(TransportConfig{ClientID: strings.Repeat("x", maxClientIDLen+1)})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestRetryHint(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h     http.Header
		want  time.Duration
		exact bool // the millisecond field: a slot the server spread
	}{
		{http.Header{}, 0, false},
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second, false},
		{http.Header{"Retry-After": {"3"}, headerRetryAfterMillis: {"2417"}}, 2417 * time.Millisecond, true},
		{http.Header{headerRetryAfterMillis: {" 12 "}}, 12 * time.Millisecond, true},
		{http.Header{"Retry-After": {"3"}, headerRetryAfterMillis: {"0"}}, 3 * time.Second, false},
		{http.Header{"Retry-After": {"3"}, headerRetryAfterMillis: {"-5"}}, 3 * time.Second, false},
		{http.Header{"Retry-After": {"3"}, headerRetryAfterMillis: {"1", "2"}}, 3 * time.Second, false},
		{http.Header{"Retry-After": {"3"}, headerRetryAfterMillis: {"99999999999"}}, 3 * time.Second, false},
		{http.Header{"Retry-After": {"Thu, 01 Jan 2026 00:00:05 GMT"}}, 5 * time.Second, false},
		{http.Header{"Retry-After": {"Wed, 31 Dec 2025 23:00:00 GMT"}}, 0, false},
		{http.Header{"Retry-After": {"soon"}}, 0, false},
		{http.Header{"Retry-After": {"1", "2"}}, 0, false},
		{http.Header{"Retry-After": {"9999999999"}}, math.MaxInt64 / time.Second * time.Second, false}, // capped, no overflow
	} {
		d, exact := retryHint(tc.h, now)
		assert.Equal(t, tc.want, d, "%v", tc.h)
		assert.Equal(t, tc.exact, exact, "%v", tc.h)
	}
}

func FuzzRetryHint(f *testing.F) {
	f.Add("3", "2417")
	f.Add("Thu, 01 Jan 2026 00:00:05 GMT", "")
	f.Add("99999999999999999999", "-1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ra, ms string) {
		h := http.Header{"Retry-After": {ra}, headerRetryAfterMillis: {ms}}
		d, exact := retryHint(h, now)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.False(t, exact && d == 0, "an exact hint is a positive wait")
	})
}
