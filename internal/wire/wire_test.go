package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/invalidate"
)

func TestParseEpoch(t *testing.T) {
	for _, tc := range []struct {
		vals []string
		want uint64
		err  error
	}{
		{[]string{"0"}, 0, nil},
		{[]string{"42"}, 42, nil},
		{[]string{" 42\t"}, 42, nil},
		{[]string{"0000000000000042"}, 42, nil},
		{[]string{"9007199254740991"}, invalidate.MaxEpoch, nil},
		{[]string{"9007199254740992"}, 0, ErrTooLarge},
		{[]string{"9999999999999999"}, 0, ErrTooLarge},
		{[]string{"18446744073709551616"}, 0, ErrTooLong}, // 2^64: never parsed far enough to overflow
		{[]string{"12345678901234567"}, 0, ErrTooLong},
		{[]string{""}, 0, ErrEmptyValue},
		{[]string{"  "}, 0, ErrEmptyValue},
		{[]string{"-1"}, 0, ErrNotDigits},
		{[]string{"+1"}, 0, ErrNotDigits},
		{[]string{"1.0"}, 0, ErrNotDigits},
		{[]string{"0x10"}, 0, ErrNotDigits},
		{[]string{"4 2"}, 0, ErrNotDigits},
		{[]string{"1,2"}, 0, ErrNotDigits},
		{[]string{"١٢"}, 0, ErrNotDigits}, // Arabic-Indic digits
		{[]string{"1", "2"}, 0, ErrRepeated},
		{[]string{"1", "1"}, 0, ErrRepeated},
		{[]string{}, 0, ErrRepeated},
	} {
		t.Run(fmt.Sprintf("%q", tc.vals), func(t *testing.T) {
			got, err := ParseEpoch(tc.vals)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct {
		s         string
		maxDigits int
		limit     uint64
		want      uint64
		err       error
	}{
		{"250", MaxMillisDigits, math.MaxInt32, 250, nil},
		{"2147483647", MaxMillisDigits, math.MaxInt32, math.MaxInt32, nil},
		{"2147483648", MaxMillisDigits, math.MaxInt32, 0, ErrTooLarge},
		{"9999999999", MaxMillisDigits, math.MaxUint64, 9999999999, nil},
		{"10000000000", MaxMillisDigits, math.MaxUint64, 0, ErrTooLong},
		{"9999999999999999999", 19, math.MaxUint64, 9999999999999999999, nil}, // 19 nines fit a uint64
		{" 1", MaxMillisDigits, math.MaxUint64, 0, ErrNotDigits},              // callers trim
		{"", MaxMillisDigits, math.MaxUint64, 0, ErrEmptyValue},
	} {
		got, err := ParseDecimal(tc.s, tc.maxDigits, tc.limit)
		assert.ErrorIs(t, err, tc.err, "%q", tc.s)
		assert.Equal(t, tc.want, got, "%q", tc.s)
	}
}

func TestParseClientID(t *testing.T) {
	for _, tc := range []struct {
		vals []string
		want string
		err  error
	}{
		{[]string{"client-42"}, "client-42", nil},
		{[]string{" user:7@eu "}, "user:7@eu", nil},
		{[]string{strings.Repeat("x", MaxClientIDLen)}, strings.Repeat("x", MaxClientIDLen), nil},
		{[]string{strings.Repeat("x", MaxClientIDLen+1)}, "", ErrTooLong},
		{[]string{""}, "", ErrEmptyValue},
		{[]string{"a b"}, "", ErrClientIDBytes},
		{[]string{"a,b"}, "", ErrClientIDBytes},
		{[]string{"caf\xc3\xa9"}, "", ErrClientIDBytes},
		{[]string{"a\x00b"}, "", ErrClientIDBytes},
		{[]string{"a\x7f"}, "", ErrClientIDBytes},
		{[]string{"a", "b"}, "", ErrRepeated},
		{nil, "", ErrRepeated},
	} {
		t.Run(fmt.Sprintf("%.40q", tc.vals), func(t *testing.T) {
			got, err := ParseClientID(tc.vals)
			assert.ErrorIs(t, err, tc.err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestTicketShape(t *testing.T) {
	s, err := ticket.New([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, "keys")
	require.NoError(t, err)
	tok, err := s.Issue("c", time.Now(), time.Hour)
	require.NoError(t, err)
	assert.Equal(t, tok, Ticket([]string{tok}))
	assert.True(t, TokenShaped(tok))
	for _, bad := range [][]string{
		nil,
		{tok, tok},
		{tok[:len(tok)-1]},
		{tok + "A"},
		{tok[:len(tok)-1] + "="},
		{tok[:len(tok)-1] + "+"},
		{" " + tok[1:]},
	} {
		assert.Empty(t, Ticket(bad), "%q", bad)
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{
		"":          "",
		" \t ":      "",
		"a":         "a",
		"\t a b \t": "a b",
		"\na\r":     "\na\r", // only spaces and tabs are optional whitespace
	} {
		assert.Equal(t, want, TrimOWS(in), "%q", in)
	}
}

func FuzzParseEpoch(f *testing.F) {
	for _, s := range []string{"0", "42", " 7 ", "9007199254740991", "9007199254740992", "-1", "1e3", "", "00000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEpoch([]string{s})
		if err != nil {
			require.Zero(t, e)
			return
		}
		require.LessOrEqual(t, e, uint64(invalidate.MaxEpoch))
		back, err := ParseEpoch([]string{strconv.FormatUint(e, 10)})
		require.NoError(t, err)
		require.Equal(t, e, back)
		// Only digits (and surrounding whitespace) parse.
		trimmed := strings.Trim(s, " \t")
		require.NotEmpty(t, trimmed)
		require.Empty(t, strings.Trim(trimmed, "0123456789"), "%q parsed", s)
	})
}

func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{"client-1", "", "a b", "a,b", strings.Repeat("x", 300), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseClientID([]string{s})
		if err != nil {
			require.Empty(t, id)
			return
		}
		require.NotEmpty(t, id)
		require.LessOrEqual(t, len(id), MaxClientIDLen)
		require.True(t, printable(id))
		require.NotContains(t, id, ",")
		require.NotContains(t, id, " ")
	})
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		-time.Second:                  0,
		0:                             0,
		time.Nanosecond:               1,
		time.Second:                   1,
		time.Second + time.Nanosecond: 2,
		2500 * time.Millisecond:       3,
		math.MaxInt64:                 9223372037, // 292 years, well under the cap
	} {
		assert.Equal(t, want, CeilSeconds(d), "CeilSeconds(%v)", d)
	}
}

func TestCeilMillis(t *testing.T) {
	for d, want := range map[time.Duration]int64{
		-time.Second:                             1, // never "now"
		0:                                        1,
		time.Nanosecond:                          1,
		time.Millisecond:                         1,
		time.Millisecond + time.Nanosecond:       2,
		1500*time.Millisecond + time.Microsecond: 1501,
	} {
		assert.Equal(t, want, CeilMillis(d), "CeilMillis(%v)", d)
	}
}
