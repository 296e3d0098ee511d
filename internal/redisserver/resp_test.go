package redisserver

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func read(s string) (any, error) {
	return readReply(bufio.NewReaderSize(strings.NewReader(s), 16), 0)
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"+PONG\r\n", "PONG"},
		{":42\r\n", int64(42)},
		{"$5\r\nhello\r\n", "hello"},
		{"$0\r\n\r\n", ""},
		{"$-1\r\n", nil},
		{"*-1\r\n", nil},
		{"*2\r\n+a\r\n:1\r\n", []any{"a", int64(1)}},
		{"*1\r\n-ERR x\r\n", []any{errReply("ERR x")}},
		{"+" + strings.Repeat("x", 100) + "\r\n", strings.Repeat("x", 100)}, // longer than the buffer
	} {
		got, err := read(tc.in)
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}

	_, err := read("-ERR unknown command\r\n")
	assert.Equal(t, errReply("ERR unknown command"), err)

	for _, bad := range []string{
		"", "\r\n", "+no crlf\n", "?x\r\n", ":x\r\n", "$-2\r\n", "$3\r\nab", "$2\r\nabc\r\n",
		"*2\r\n+a\r\n", "$99999999999\r\n", "*99999999999\r\n",
		strings.Repeat("*1\r\n", maxDepth+2) + "+a\r\n",
		"+" + strings.Repeat("x", 70<<10) + "\r\n",
	} {
		_, err := read(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestInfoField(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nprocess_id:123\r\n"
	v, ok := InfoField(info, "process_id")
	assert.True(t, ok)
	assert.Equal(t, "123", v)
	_, ok = InfoField(info, "process")
	assert.False(t, ok)
}

// FuzzReadReply checks that no input makes the reply reader panic or
// return a reply and an error at once.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", ":1\r\n", "$3\r\nabc\r\n", "*2\r\n$1\r\na\r\n*1\r\n:2\r\n", "-ERR x\r\n", "$-1\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := read(s)
		if err != nil && v != nil {
			t.Fatalf("reply %v with error %v", v, err)
		}
	})
}
