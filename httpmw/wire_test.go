package httpmw

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

func TestParseEpoch(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  uint64
		err   error
	}{
		{[]string{"0"}, 0, nil},
		{[]string{"42"}, 42, nil},
		{[]string{" 42\t"}, 42, nil},
		{[]string{"0000000000000042"}, 42, nil},
		{[]string{"9007199254740991"}, invalidate.MaxEpoch, nil},
		{[]string{"9007199254740992"}, 0, errEpochRange},
		{[]string{"9999999999999999"}, 0, errEpochRange},
		{[]string{"18446744073709551616"}, 0, errTooLong}, // 2^64: never parsed far enough to overflow
		{[]string{"12345678901234567"}, 0, errTooLong},
		{[]string{""}, 0, errEmptyValue},
		{[]string{"  "}, 0, errEmptyValue},
		{[]string{"-1"}, 0, errNotDigits},
		{[]string{"+1"}, 0, errNotDigits},
		{[]string{"1.0"}, 0, errNotDigits},
		{[]string{"0x10"}, 0, errNotDigits},
		{[]string{"4 2"}, 0, errNotDigits},
		{[]string{"1,2"}, 0, errNotDigits},
		{[]string{"١٢"}, 0, errNotDigits}, // Arabic-Indic digits
		{[]string{"1", "2"}, 0, errRepeated},
		{[]string{"1", "1"}, 0, errRepeated},
		{[]string{}, 0, errRepeated},
	} {
		t.Run(fmt.Sprintf("%q", tc.lines), func(t *testing.T) {
			got, err := parseEpoch(tc.lines)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseClientID(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
		err   error
	}{
		{[]string{"client-42"}, "client-42", nil},
		{[]string{" user:7@eu "}, "user:7@eu", nil},
		{[]string{strings.Repeat("x", MaxClientHeaderLen)}, strings.Repeat("x", MaxClientHeaderLen), nil},
		{[]string{strings.Repeat("x", MaxClientHeaderLen+1)}, "", errTooLong},
		{[]string{""}, "", errEmptyValue},
		{[]string{"a b"}, "", errClientIDBytes},
		{[]string{"a,b"}, "", errClientIDBytes},
		{[]string{"caf\xc3\xa9"}, "", errClientIDBytes},
		{[]string{"a\x00b"}, "", errClientIDBytes},
		{[]string{"a\x7f"}, "", errClientIDBytes},
		{[]string{"a", "b"}, "", errRepeated},
	} {
		t.Run(fmt.Sprintf("%.40q", tc.lines), func(t *testing.T) {
			got, err := parseClientID(tc.lines)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestResumeTokenShape(t *testing.T) {
	s, err := limiter.NewResumeSigner([]byte("0123456789abcdef0123456789abcdef"))
	require.NoError(t, err)
	tok, err := s.Issue("c", time.Hour)
	require.NoError(t, err)
	assert.Equal(t, tok, resumeToken([]string{tok}))
	for _, bad := range [][]string{
		nil,
		{tok, tok},
		{tok[:len(tok)-1]},
		{tok + "A"},
		{tok[:len(tok)-1] + "="},
		{tok[:len(tok)-1] + "+"},
		{" " + tok[1:]},
	} {
		assert.Empty(t, resumeToken(bad), "%q", bad)
	}
}

func TestNoticeRoundTrip(t *testing.T) {
	notices := []invalidate.Notice{
		{RolloutID: "catalog-v2", Scope: "tag:catalog", Epoch: 1},
		{RolloutID: `q"uo\te`, Scope: `say "hi" \o/`, Epoch: 2},
		{RolloutID: "unicode", Scope: "caf\xc3\xa9", Epoch: 1767225600000},
		{RolloutID: "bin\x00\xff", Scope: "\x00\x01\n\r", Epoch: maxSFInteger},
		{RolloutID: "big", Scope: invalidate.ScopeAll, Epoch: maxSFInteger + 1},
		{RolloutID: "max", Scope: "a,b;c=d", Epoch: invalidate.MaxEpoch},
	}
	v, epoch := noticeField(notices, 100)
	assert.Equal(t, uint64(invalidate.MaxEpoch), epoch)
	assert.True(t, printable(v), "a header value must be printable ASCII: %q", v)
	assert.Contains(t, v, `"tag:catalog";epoch=1;id="catalog-v2"`)
	assert.Contains(t, v, `:Y2Fmw6k=:;epoch=1767225600000;id="unicode"`)
	assert.Contains(t, v, `"*";epoch="1000000000000000";id="big"`)
	got, err := parseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices, got)

	// The same list split over several field lines, as a proxy may send it.
	got, err = parseNotices(nil, strings.SplitN(v, ", ", 3))
	require.NoError(t, err)
	assert.Equal(t, notices, got)
}

func TestNoticeFieldLimits(t *testing.T) {
	big := strings.Repeat("s", invalidate.MaxScopeLen)
	notices := []invalidate.Notice{
		{RolloutID: "a", Scope: big, Epoch: 1},
		{RolloutID: "b", Scope: "x", Epoch: 2},
	}
	// A notice bigger than the 4 KiB field goes alone: the next request
	// gets the next one.
	v, epoch := noticeField(notices, 16)
	assert.EqualValues(t, 1, epoch)
	got, err := parseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices[:1], got)

	// WithMaxNotices caps the count.
	many := make([]invalidate.Notice, 50)
	for i := range many {
		many[i] = invalidate.Notice{RolloutID: "r" + strconv.Itoa(i), Scope: "s", Epoch: uint64(i + 1)}
	}
	v, epoch = noticeField(many, 16)
	assert.EqualValues(t, 16, epoch)
	got, err = parseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Len(t, got, 16)
	assert.LessOrEqual(t, len(v), maxNoticeField)
}

func TestParseNoticesMalformed(t *testing.T) {
	good := `"a";epoch=1;id="r1"`
	for _, tc := range []struct {
		name  string
		lines []string
		keep  int // notices before the fault
	}{
		{"empty", []string{""}, 0},
		{"only spaces", []string{"   "}, 0},
		{"token scope", []string{`a;epoch=1;id="r"`}, 0},
		{"integer scope", []string{`1;epoch=1;id="r"`}, 0},
		{"empty scope", []string{`"";epoch=1;id="r"`}, 0},
		{"no epoch", []string{`"a";id="r"`}, 0},
		{"no id", []string{`"a";epoch=1`}, 0},
		{"bare epoch", []string{`"a";epoch;id="r"`}, 0},
		{"zero epoch", []string{`"a";epoch=0;id="r"`}, 0},
		{"negative epoch", []string{`"a";epoch=-1;id="r"`}, 0},
		{"decimal epoch", []string{`"a";epoch=1.5;id="r"`}, 0},
		{"huge epoch", []string{`"a";epoch=99999999999999999999;id="r"`}, 0},
		{"epoch above MaxEpoch", []string{`"a";epoch="9007199254740992";id="r"`}, 0},
		{"two epochs", []string{`"a";epoch=1;epoch=2;id="r"`}, 0},
		{"token id", []string{`"a";epoch=1;id=r`}, 0},
		{"unterminated string", []string{`"a;epoch=1;id="r"`}, 0},
		{"bad escape", []string{`"a\n";epoch=1;id="r"`}, 0},
		{"control byte", []string{"\"a\x01\";epoch=1;id=\"r\""}, 0},
		{"bad base64", []string{`:!!:;epoch=1;id="r"`}, 0},
		{"unterminated bytes", []string{`:YQ==;epoch=1;id="r"`}, 0},
		{"uppercase key", []string{`"a";Epoch=1;id="r"`}, 0},
		{"trailing comma", []string{good + ","}, 1},
		{"double comma", []string{good + ",," + `"b";epoch=2;id="r2"`}, 1},
		{"no comma", []string{good + ` "b";epoch=2;id="r2"`}, 1},
		{"epochs descending", []string{`"b";epoch=2;id="r2", ` + good}, 1},
		{"epochs repeated", []string{good + ", " + good}, 1},
		{"second line bad", []string{good, `"b";epoch=x;id="r2"`}, 1},
		{"too long", []string{good + ", " + strings.Repeat(" ", maxParsedField)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNotices(nil, tc.lines)
			if tc.name == "empty" || tc.name == "only spaces" {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
			assert.Len(t, got, tc.keep)
		})
	}
}

func TestParseNoticesSkipsUnknownParameters(t *testing.T) {
	v := `"a";v=2;epoch=7;flag;n=-3.25;tok=x/y:z;b=?1;bs=:YQ==:;s="q\"";id="r"`
	got, err := parseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, []invalidate.Notice{{RolloutID: "r", Scope: "a", Epoch: 7}}, got)
}

func TestParseNoticesCountLimit(t *testing.T) {
	var b strings.Builder
	for i := range maxParsedNotices + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"s";epoch=%d;id="r"`, i+1)
	}
	got, err := parseNotices(nil, []string{b.String()})
	assert.ErrorIs(t, err, errNoticeLong)
	assert.Len(t, got, maxParsedNotices)
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

func FuzzEpochHeader(f *testing.F) {
	for _, s := range []string{"0", "42", " 7 ", "9007199254740991", "9007199254740992", "-1", "1e3", "", "00000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseEpoch([]string{s})
		if err != nil {
			require.Zero(t, e)
			return
		}
		require.LessOrEqual(t, e, uint64(invalidate.MaxEpoch))
		back, err := parseEpoch([]string{strconv.FormatUint(e, 10)})
		require.NoError(t, err)
		require.Equal(t, e, back)
		// Only digits (and surrounding whitespace) parse.
		trimmed := strings.Trim(s, " \t")
		require.NotEmpty(t, trimmed)
		require.Empty(t, strings.Trim(trimmed, "0123456789"), "%q parsed", s)
	})
}

func FuzzClientIDHeader(f *testing.F) {
	for _, s := range []string{"client-1", "", "a b", "a,b", strings.Repeat("x", 300), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseClientID([]string{s})
		if err != nil {
			require.Empty(t, id)
			return
		}
		require.NotEmpty(t, id)
		require.LessOrEqual(t, len(id), MaxClientHeaderLen)
		require.True(t, printable(id))
		require.NotContains(t, id, ",")
		require.NotContains(t, id, " ")
	})
}

// FuzzInvalidateHeader feeds arbitrary field lines to the client's parser:
// it must never panic, and what it returns must satisfy the notice rules
// and survive a round trip through the server's encoder.
func FuzzInvalidateHeader(f *testing.F) {
	for _, s := range []string{
		`"tag:catalog";epoch=1767225600000;id="catalog-v2", "*";epoch=1767225600001;id="oops-1"`,
		`:Y2Fmw6k=:;epoch=2;id=:AP8=:`,
		`"a";x=?1;epoch="1000000000000000";y=-1.5;id="r"`,
		`"a";epoch=1;id="r",`,
		`"\"";epoch=1;id="\\"`,
	} {
		f.Add(s, "")
	}
	f.Add(`"a";epoch=1;id="r"`, `"b";epoch=2;id="s"`)
	f.Fuzz(func(t *testing.T, a, b string) {
		got, _ := parseNotices(nil, []string{a, b})
		var last uint64
		for _, n := range got {
			require.Greater(t, n.Epoch, last)
			require.LessOrEqual(t, n.Epoch, uint64(invalidate.MaxEpoch))
			require.NotEmpty(t, n.Scope)
			require.LessOrEqual(t, len(n.Scope), invalidate.MaxScopeLen)
			require.NotEmpty(t, n.RolloutID)
			require.LessOrEqual(t, len(n.RolloutID), invalidate.MaxIDLen)
			last = n.Epoch
		}
		if len(got) == 0 {
			return
		}
		v, epoch := noticeField(got, len(got))
		require.Equal(t, last, epoch)
		again, err := parseNotices(nil, []string{v})
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

// FuzzNoticeRoundTrip encodes any valid notice and parses it back.
func FuzzNoticeRoundTrip(f *testing.F) {
	f.Add("catalog-v2", "tag:catalog", uint64(42))
	f.Add("\x00", "\xff\"\\", uint64(math.MaxUint32))
	f.Fuzz(func(t *testing.T, id, scope string, epoch uint64) {
		if id == "" || len(id) > invalidate.MaxIDLen || scope == "" || len(scope) > invalidate.MaxScopeLen ||
			epoch == 0 || epoch > invalidate.MaxEpoch {
			return
		}
		n := invalidate.Notice{RolloutID: id, Scope: scope, Epoch: epoch}
		v, _ := noticeField([]invalidate.Notice{n}, 1)
		require.True(t, printable(v))
		got, err := parseNotices(nil, []string{v})
		require.NoError(t, err)
		require.Equal(t, []invalidate.Notice{n}, got)
	})
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
