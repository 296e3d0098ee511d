package grpcmw

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herdcap/herdcap/limiter/admission"
)

// TestMaxClientIDLen checks that the documented limit is the one the
// codec enforces, at the boundary.
func TestMaxClientIDLen(t *testing.T) {
	assert.Equal(t, 256, maxClientIDLen, "the documented limit")
	assert.Equal(t, admission.MaxClientIDLen, maxClientIDLen, "one bound for the field and a Key's IDs")
	_, err := NewClient(ClientConfig{ClientID: strings.Repeat("x", maxClientIDLen)})
	assert.NoError(t, err)
	_, err = NewClient(ClientConfig{ClientID: strings.Repeat("x", maxClientIDLen+1)})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestRetryHint(t *testing.T) {
	withInfo := func(d time.Duration) error {
		st, _ := status.New(codes.Unavailable, "x").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		return st.Err()
	}
	plain := status.Error(codes.Unavailable, "x")
	for _, tc := range []struct {
		name    string
		trailer metadata.MD
		err     error
		want    time.Duration
		exact   bool // the pushback: a millisecond the server computed
		ok      bool
	}{
		{"nothing", nil, plain, 0, false, true},
		{"pushback", metadata.Pairs(pushbackTrailer, "250"), plain, 250 * time.Millisecond, true, true},
		{"zero pushback", metadata.Pairs(pushbackTrailer, "0"), plain, 0, false, true},
		{"pushback wins over RetryInfo", metadata.Pairs(pushbackTrailer, "250"), withInfo(time.Second), 250 * time.Millisecond, true, true},
		{"RetryInfo", nil, withInfo(time.Second), time.Second, false, true},
		{"negative RetryInfo ignored", nil, withInfo(-time.Second), 0, false, true},
		{"negative pushback", metadata.Pairs(pushbackTrailer, "-1"), plain, 0, false, false},
		{"garbage pushback", metadata.Pairs(pushbackTrailer, "soon"), plain, 0, false, false},
		{"pushback beyond int32", metadata.Pairs(pushbackTrailer, "2147483648"), plain, 0, false, false},
		{"two pushbacks", metadata.Pairs(pushbackTrailer, "1", pushbackTrailer, "2"), plain, 0, false, false},
	} {
		got, exact, ok := retryHint(tc.trailer, tc.err)
		assert.Equal(t, tc.want, got, tc.name)
		assert.Equal(t, tc.exact, exact, tc.name)
		assert.Equal(t, tc.ok, ok, tc.name)
	}
}

func FuzzPushbackTrailer(f *testing.F) {
	f.Add("250")
	f.Add("-1")
	f.Add("99999999999999999999")
	f.Fuzz(func(t *testing.T, v string) {
		d, exact, ok := retryHint(metadata.Pairs(pushbackTrailer, v), status.Error(codes.Unavailable, "x"))
		require.GreaterOrEqual(t, d, time.Duration(0))
		if !ok {
			require.Zero(t, d)
		}
		require.False(t, exact && d == 0, "an exact hint is a positive wait")
	})
}
