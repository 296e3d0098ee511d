package grpcmw

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/herdcap/herdcap/limiter"
)

func TestPushbackMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 1},
		{-time.Second, 1},
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{1500 * time.Microsecond, 2},
		{time.Second, 1000},
		{time.Duration(math.MaxInt64), math.MaxInt32},
	} {
		assert.Equal(t, tc.want, pushbackMillis(tc.d), "pushbackMillis(%v)", tc.d)
	}
}

func TestError(t *testing.T) {
	denied := &Error{Code: codes.ResourceExhausted, RetryAfter: 1234500 * time.Microsecond}
	assert.Equal(t, "grpcmw: rate limit exceeded; retry after 1.235s", denied.Error())
	assert.ErrorIs(t, denied, ErrRateLimited)
	assert.NotErrorIs(t, denied, ErrLimiterFailed)
	assert.Equal(t, codes.ResourceExhausted, status.Code(denied))
	assert.Equal(t, denied.RetryAfter, retryInfo(t, denied))
	assert.Equal(t, []string{"1235"}, denied.trailer().Get(pushbackTrailer))

	cause := errors.Join(errors.New("redis 10.1.2.3 down"), limiter.ErrUnavailable)
	failed := &Error{Code: codes.Unavailable, RetryAfter: time.Second, cause: cause}
	assert.Equal(t, "grpcmw: rate limiter unavailable; retry after 1s", failed.Error())
	assert.ErrorIs(t, failed, ErrLimiterFailed)
	assert.ErrorIs(t, failed, limiter.ErrUnavailable)
	assert.NotErrorIs(t, failed, ErrRateLimited)
	st := status.Convert(failed)
	assert.Equal(t, codes.Unavailable, st.Code())
	assert.Equal(t, "rate limiter unavailable; retry after 1s", st.Message())
}
