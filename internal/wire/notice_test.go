package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/rolloutlimit"
	"github.com/herdcap/herdcap/invalidate"
)

func TestNoticeRoundTrip(t *testing.T) {
	notices := []invalidate.Notice{
		{RolloutID: "catalog-v2", Scope: "tag:catalog", Epoch: 1},
		{RolloutID: `q"uo\te`, Scope: `say "hi" \o/`, Epoch: 2},
		{RolloutID: "unicode", Scope: "caf\xc3\xa9", Epoch: 1767225600000},
		{RolloutID: "bin\x00\xff", Scope: "\x00\x01\n\r", Epoch: MaxSFInteger},
		{RolloutID: "big", Scope: invalidate.ScopeAll, Epoch: MaxSFInteger + 1},
		{RolloutID: "max", Scope: "a,b;c=d", Epoch: invalidate.MaxEpoch},
	}
	v, epoch := NoticeField(notices, 100)
	assert.Equal(t, uint64(invalidate.MaxEpoch), epoch)
	assert.True(t, printable(v), "a header or metadata value must be printable ASCII: %q", v)
	assert.Contains(t, v, `"tag:catalog";epoch=1;id="catalog-v2"`)
	assert.Contains(t, v, `:Y2Fmw6k=:;epoch=1767225600000;id="unicode"`)
	assert.Contains(t, v, `"*";epoch="1000000000000000";id="big"`)
	got, err := ParseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices, got)

	// The same list split over several values, as a proxy may send it.
	got, err = ParseNotices(nil, strings.SplitN(v, ", ", 3))
	require.NoError(t, err)
	assert.Equal(t, notices, got)
}

// TestNoticeFieldBytes pins the exact bytes: HTTP and gRPC clients of
// other languages parse them.
func TestNoticeFieldBytes(t *testing.T) {
	notices := []invalidate.Notice{
		{RolloutID: "catalog-v2", Scope: "tag:catalog", Epoch: 1},
		{RolloutID: `q"uo\te`, Scope: `say "hi"`, Epoch: 2},
		{RolloutID: "bin\x00\xff", Scope: "caf\xc3\xa9", Epoch: MaxSFInteger + 1},
	}
	v, epoch := NoticeField(notices, 10)
	assert.Equal(t, uint64(MaxSFInteger+1), epoch)
	assert.Equal(t, `"tag:catalog";epoch=1;id="catalog-v2", "say \"hi\"";epoch=2;id="q\"uo\\te", :Y2Fmw6k=:;epoch="1000000000000000";id=:YmluAP8=:`, v)
	got, err := ParseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices, got)
}

func TestNoticeFieldLimits(t *testing.T) {
	big := strings.Repeat("s", rolloutlimit.MaxScopeLen)
	notices := []invalidate.Notice{
		{RolloutID: "a", Scope: big, Epoch: 1},
		{RolloutID: "b", Scope: "x", Epoch: 2},
	}
	// A notice bigger than MaxNoticeField goes alone: the next request
	// gets the next one.
	v, epoch := NoticeField(notices, 16)
	assert.EqualValues(t, 1, epoch)
	got, err := ParseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, notices[:1], got)

	// limit caps the count.
	many := make([]invalidate.Notice, 50)
	for i := range many {
		many[i] = invalidate.Notice{RolloutID: "r" + strconv.Itoa(i), Scope: "s", Epoch: uint64(i + 1)}
	}
	v, epoch = NoticeField(many, 16)
	assert.EqualValues(t, 16, epoch)
	got, err = ParseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Len(t, got, 16)
	assert.LessOrEqual(t, len(v), MaxNoticeField)
}

func TestParseNoticesMalformed(t *testing.T) {
	good := `"a";epoch=1;id="r1"`
	for _, tc := range []struct {
		name string
		vals []string
		keep int   // notices before the fault
		err  error // nil: any error
	}{
		{"token scope", []string{`a;epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"integer scope", []string{`1;epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"empty scope", []string{`"";epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"no epoch", []string{`"a";id="r"`}, 0, ErrNoticeField},
		{"no id", []string{`"a";epoch=1`}, 0, ErrNoticeField},
		{"bare epoch", []string{`"a";epoch;id="r"`}, 0, ErrNoticeField},
		{"zero epoch", []string{`"a";epoch=0;id="r"`}, 0, ErrNoticeField},
		{"negative epoch", []string{`"a";epoch=-1;id="r"`}, 0, ErrNoticeField},
		{"decimal epoch", []string{`"a";epoch=1.5;id="r"`}, 0, ErrNoticeField},
		{"huge epoch", []string{`"a";epoch=99999999999999999999;id="r"`}, 0, ErrNoticeField},
		{"epoch above MaxEpoch", []string{`"a";epoch="9007199254740992";id="r"`}, 0, ErrNoticeField},
		{"two epochs", []string{`"a";epoch=1;epoch=2;id="r"`}, 0, ErrNoticeField},
		{"token id", []string{`"a";epoch=1;id=r`}, 0, ErrNoticeField},
		{"unterminated string", []string{`"a;epoch=1;id="r"`}, 0, nil},
		{"bad escape", []string{`"a\n";epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"control byte", []string{"\"a\x01\";epoch=1;id=\"r\""}, 0, ErrNoticeSyntax},
		{"bad base64", []string{`:!!:;epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"unterminated bytes", []string{`:YQ==;epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"uppercase key", []string{`"a";Epoch=1;id="r"`}, 0, ErrNoticeSyntax},
		{"trailing comma", []string{good + ","}, 1, ErrNoticeSyntax},
		{"double comma", []string{good + ",," + `"b";epoch=2;id="r2"`}, 1, ErrNoticeSyntax},
		{"no comma", []string{good + ` "b";epoch=2;id="r2"`}, 1, ErrNoticeSyntax},
		{"epochs descending", []string{`"b";epoch=2;id="r2", ` + good}, 1, ErrNoticeOrder},
		{"epochs repeated", []string{good + ", " + good}, 1, ErrNoticeOrder},
		{"second value bad", []string{good, `"b";epoch=x;id="r2"`}, 1, ErrNoticeField},
		{"too long", []string{good + ", " + strings.Repeat(" ", MaxParsedField)}, 0, ErrNoticeLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNotices(nil, tc.vals)
			require.Error(t, err)
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
			}
			assert.Len(t, got, tc.keep)
		})
	}
}

func TestParseNoticesEmpty(t *testing.T) {
	for _, vals := range [][]string{nil, {""}, {"   "}, {"", " \t"}} {
		got, err := ParseNotices(nil, vals)
		assert.NoError(t, err, "%q", vals)
		assert.Empty(t, got, "%q", vals)
	}
}

func TestParseNoticesAppends(t *testing.T) {
	dst := []invalidate.Notice{{RolloutID: "kept", Scope: "s", Epoch: 9}}
	got, err := ParseNotices(dst, []string{`"a";epoch=1;id="r"`})
	require.NoError(t, err)
	assert.Equal(t, []invalidate.Notice{dst[0], {RolloutID: "r", Scope: "a", Epoch: 1}}, got)
}

func TestParseNoticesSkipsUnknownParameters(t *testing.T) {
	v := `"a";v=2;epoch=7;flag;n=-3.25;tok=x/y:z;b=?1;bs=:YQ==:;s="q\"";id="r"`
	got, err := ParseNotices(nil, []string{v})
	require.NoError(t, err)
	assert.Equal(t, []invalidate.Notice{{RolloutID: "r", Scope: "a", Epoch: 7}}, got)
}

func TestParseNoticesCountLimit(t *testing.T) {
	var b strings.Builder
	for i := range MaxParsedNotices + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"s";epoch=%d;id="r"`, i+1)
	}
	got, err := ParseNotices(nil, []string{b.String()})
	assert.ErrorIs(t, err, ErrNoticeLong)
	assert.Len(t, got, MaxParsedNotices)
}

// FuzzParseNotices feeds arbitrary values to the client's parser: it must
// never panic, and what it returns must satisfy the notice rules and
// survive a round trip through the server's encoder.
func FuzzParseNotices(f *testing.F) {
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
		got, _ := ParseNotices(nil, []string{a, b})
		var last uint64
		for _, n := range got {
			require.Greater(t, n.Epoch, last)
			require.LessOrEqual(t, n.Epoch, uint64(invalidate.MaxEpoch))
			require.NotEmpty(t, n.Scope)
			require.LessOrEqual(t, len(n.Scope), rolloutlimit.MaxScopeLen)
			require.NotEmpty(t, n.RolloutID)
			require.LessOrEqual(t, len(n.RolloutID), rolloutlimit.MaxIDLen)
			last = n.Epoch
		}
		if len(got) == 0 {
			return
		}
		v, epoch := NoticeField(got, len(got))
		require.Equal(t, last, epoch)
		again, err := ParseNotices(nil, []string{v})
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

// FuzzNoticeRoundTrip encodes any valid notice and parses it back.
func FuzzNoticeRoundTrip(f *testing.F) {
	f.Add("catalog-v2", "tag:catalog", uint64(42))
	f.Add("\x00", "\xff\"\\", uint64(math.MaxUint32))
	f.Fuzz(func(t *testing.T, id, scope string, epoch uint64) {
		if id == "" || len(id) > rolloutlimit.MaxIDLen || scope == "" || len(scope) > rolloutlimit.MaxScopeLen ||
			epoch == 0 || epoch > invalidate.MaxEpoch {
			return
		}
		n := invalidate.Notice{RolloutID: id, Scope: scope, Epoch: epoch}
		v, _ := NoticeField([]invalidate.Notice{n}, 1)
		require.True(t, printable(v))
		got, err := ParseNotices(nil, []string{v})
		require.NoError(t, err)
		require.Equal(t, []invalidate.Notice{n}, got)
	})
}
