package httpmw

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/wire"
)

// TestMaxClientHeaderLen checks that the documented limit is the one the
// codec enforces, at the boundary.
func TestMaxClientHeaderLen(t *testing.T) {
	assert.Equal(t, wire.MaxClientIDLen, MaxClientHeaderLen)
	_, err := NewTransport(nil, WithClientID(strings.Repeat("x", MaxClientHeaderLen)))
	assert.NoError(t, err)
	_, err = NewTransport(nil, WithClientID(strings.Repeat("x", MaxClientHeaderLen+1)))
	assert.ErrorIs(t, err, ErrInvalidTransportOption)
}

func TestRetryHint(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"3"}, HeaderRetryAfterMillis: {"2417"}}, 2417 * time.Millisecond},
		{http.Header{"Retry-After": {"3"}, HeaderRetryAfterMillis: {"0"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"3"}, HeaderRetryAfterMillis: {"-5"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"3"}, HeaderRetryAfterMillis: {"1", "2"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"3"}, HeaderRetryAfterMillis: {"99999999999"}}, 3 * time.Second},
		{http.Header{"Retry-After": {"Thu, 01 Jan 2026 00:00:05 GMT"}}, 5 * time.Second},
		{http.Header{"Retry-After": {"Wed, 31 Dec 2025 23:00:00 GMT"}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"1", "2"}}, 0},
		{http.Header{"Retry-After": {"9999999999"}}, math.MaxInt64 / time.Second * time.Second}, // capped, no overflow
	} {
		assert.Equal(t, tc.want, retryHint(tc.h, now), "%v", tc.h)
	}
}

func FuzzRetryHint(f *testing.F) {
	f.Add("3", "2417")
	f.Add("Thu, 01 Jan 2026 00:00:05 GMT", "")
	f.Add("99999999999999999999", "-1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ra, ms string) {
		h := http.Header{"Retry-After": {ra}, HeaderRetryAfterMillis: {ms}}
		require.GreaterOrEqual(t, retryHint(h, now), time.Duration(0))
	})
}
