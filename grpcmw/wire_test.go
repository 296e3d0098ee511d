package grpcmw

import (
	"strconv"
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

	"github.com/herdcap/herdcap/invalidate"
)

func TestNoticeCodec(t *testing.T) {
	notices := []invalidate.Notice{
		{RolloutID: "catalog-v2", Scope: "tag:catalog", Epoch: 1},
		{RolloutID: `q"uo\te`, Scope: `say "hi"`, Epoch: 2},
		{RolloutID: "bin\x00\xff", Scope: "caf\xc3\xa9", Epoch: maxSFInteger + 1},
	}
	v, epoch := noticeField(notices, 10)
	assert.Equal(t, uint64(maxSFInteger+1), epoch)
	assert.Equal(t, `"tag:catalog";epoch=1;id="catalog-v2", "say \"hi\"";epoch=2;id="q\"uo\\te", :Y2Fmw6k=:;epoch="1000000000000000";id=:YmluAP8=:`, v)
	got, err := parseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices, got)

	_, err = parseEpoch([]string{"1", "2"})
	assert.ErrorIs(t, err, errRepeated)
	_, err = parseEpoch([]string{"9007199254740992"})
	assert.ErrorIs(t, err, errEpochRange)
	_, err = parseClientID([]string{"a,b"})
	assert.ErrorIs(t, err, errClientIDBytes)
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
		ok      bool
	}{
		{"nothing", nil, plain, 0, true},
		{"pushback", metadata.Pairs(PushbackTrailer, "250"), plain, 250 * time.Millisecond, true},
		{"pushback wins over RetryInfo", metadata.Pairs(PushbackTrailer, "250"), withInfo(time.Second), 250 * time.Millisecond, true},
		{"RetryInfo", nil, withInfo(time.Second), time.Second, true},
		{"negative RetryInfo ignored", nil, withInfo(-time.Second), 0, true},
		{"negative pushback", metadata.Pairs(PushbackTrailer, "-1"), plain, 0, false},
		{"garbage pushback", metadata.Pairs(PushbackTrailer, "soon"), plain, 0, false},
		{"pushback beyond int32", metadata.Pairs(PushbackTrailer, "2147483648"), plain, 0, false},
		{"two pushbacks", metadata.Pairs(PushbackTrailer, "1", PushbackTrailer, "2"), plain, 0, false},
	} {
		got, ok := retryHint(tc.trailer, tc.err)
		assert.Equal(t, tc.want, got, tc.name)
		assert.Equal(t, tc.ok, ok, tc.name)
	}
}

func FuzzEpochMetadata(f *testing.F) {
	for _, s := range []string{"0", "42", "9007199254740991", "9007199254740992", "-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseEpoch([]string{s})
		if err != nil {
			return
		}
		require.LessOrEqual(t, e, uint64(invalidate.MaxEpoch))
		trimmed := strings.Trim(s, " \t")
		require.Empty(t, strings.Trim(trimmed, "0123456789"))
		back, err := parseEpoch([]string{strconv.FormatUint(e, 10)})
		require.NoError(t, err)
		require.Equal(t, e, back)
	})
}

// FuzzInvalidateMetadata feeds arbitrary values to the Client's parser: it
// must never panic, and what it returns must follow the notice rules and
// survive a round trip through the server's encoder.
func FuzzInvalidateMetadata(f *testing.F) {
	f.Add(`"tag:catalog";epoch=1767225600000;id="catalog-v2", "*";epoch=1767225600001;id="oops-1"`)
	f.Add(`:Y2Fmw6k=:;epoch=2;id=:AP8=:`)
	f.Add(`"a";x=?1;epoch="1000000000000000";y=-1.5;id="r"`)
	f.Fuzz(func(t *testing.T, v string) {
		got, _ := parseNotices(nil, []string{v})
		var last uint64
		for _, n := range got {
			require.Greater(t, n.Epoch, last)
			require.NotEmpty(t, n.Scope)
			require.NotEmpty(t, n.RolloutID)
			last = n.Epoch
		}
		if len(got) == 0 {
			return
		}
		enc, _ := noticeField(got, len(got))
		again, err := parseNotices(nil, []string{enc})
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

func FuzzPushbackTrailer(f *testing.F) {
	f.Add("250")
	f.Add("-1")
	f.Add("99999999999999999999")
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := retryHint(metadata.Pairs(PushbackTrailer, v), status.Error(codes.Unavailable, "x"))
		require.GreaterOrEqual(t, d, time.Duration(0))
		if !ok {
			require.Zero(t, d)
		}
	})
}
