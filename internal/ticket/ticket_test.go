package ticket

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	testKeyA = []byte("key A: 32 random bytes, really!!")
	testKeyB = []byte("key B: 32 random bytes, really!!")
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newSignerForTest(t testing.TB, keys ...[]byte) *Signer {
	t.Helper()
	s, err := New(keys, "keys")
	require.NoError(t, err)
	return s
}

func TestTicketRoundTrip(t *testing.T) {
	s := newSignerForTest(t, testKeyA)
	tok, err := s.Issue("10.0.0.7", t0, time.Minute)
	require.NoError(t, err)
	assert.Len(t, tok, Len)
	assert.NotContains(t, tok, "10.0.0.7", "the client ID is bound, not carried")
	assert.NotContains(t, tok, "=")
	for _, c := range tok {
		assert.True(t, c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'), "base64url: %q", c)
	}
	assert.NoError(t, s.Verify("10.0.0.7", tok, t0))
	assert.NoError(t, s.Verify("10.0.0.7", tok, t0.Add(time.Minute-time.Millisecond)))
	assert.ErrorIs(t, s.Verify("10.0.0.7", tok, t0.Add(time.Minute)), ErrInvalid)
	assert.ErrorContains(t, s.Verify("10.0.0.7", tok, t0.Add(time.Minute)), "expired")
	assert.ErrorContains(t, s.Verify("10.0.0.8", tok, t0), "another client")
	assert.ErrorContains(t, s.Verify("", tok, t0), "another client")
	// Wall-clock times.
	tok, err = s.Issue("c", time.Now(), time.Hour)
	require.NoError(t, err)
	assert.NoError(t, s.Verify("c", tok, time.Now()))
}

func TestTicketTamperingAnyCharacter(t *testing.T) {
	s := newSignerForTest(t, testKeyA)
	tok, err := s.Issue("client", t0, time.Hour)
	require.NoError(t, err)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range tok {
		for _, c := range []byte(alphabet) {
			if c == tok[i] {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			require.ErrorIs(t, s.Verify("client", bad, t0), ErrInvalid, "byte %d -> %q", i, c)
		}
	}
}

func TestTicketKeyRotation(t *testing.T) {
	old := newSignerForTest(t, testKeyA)
	rotated := newSignerForTest(t, testKeyB, testKeyA) // B signs, A still accepted
	retired := newSignerForTest(t, testKeyB)
	fromOld, err := old.Issue("c", t0, time.Hour)
	require.NoError(t, err)
	fromNew, err := rotated.Issue("c", t0, time.Hour)
	require.NoError(t, err)
	assert.NoError(t, rotated.Verify("c", fromOld, t0), "old tokens survive the rotation")
	assert.NoError(t, rotated.Verify("c", fromNew, t0))
	assert.NoError(t, retired.Verify("c", fromNew, t0))
	assert.ErrorIs(t, retired.Verify("c", fromOld, t0), ErrInvalid, "until the old key is retired")
	assert.ErrorIs(t, old.Verify("c", fromNew, t0), ErrInvalid)
}

func TestTicketSignerConfig(t *testing.T) {
	short := []byte("fifteen bytes!!")
	cases := []struct {
		keys [][]byte
		msg  string
	}{
		{nil, "at least one key"},
		{[][]byte{{}}, "keys[0] is 0 bytes"},
		{[][]byte{short}, "keys[0] is 15 bytes"},
		{[][]byte{testKeyA, short}, "keys[1] is 15 bytes"},
		{[][]byte{make([]byte, 1025)}, "keys[0] is 1025 bytes"},
		{make([][]byte, MaxKeys+1), "at most 16 keys"},
	}
	for _, c := range cases {
		_, err := New(c.keys, "keys")
		assert.ErrorContains(t, err, c.msg)
	}
	key := append([]byte(nil), testKeyA...)
	s := newSignerForTest(t, key)
	tok, err := s.Issue("c", t0, time.Hour)
	require.NoError(t, err)
	key[0] ^= 1 // the signer copied its key
	assert.NoError(t, s.Verify("c", tok, t0))

	_, err = s.Issue("", t0, time.Hour)
	assert.ErrorContains(t, err, "client ID")
	_, err = s.Issue(strings.Repeat("x", MaxClientIDLen+1), t0, time.Hour)
	assert.ErrorContains(t, err, "client ID")
	_, err = s.Issue("c", t0, 0)
	assert.ErrorContains(t, err, "TTL")
	_, err = s.Issue("c", t0, 400*24*time.Hour)
	assert.ErrorContains(t, err, "TTL")
	long := strings.Repeat("y", MaxClientIDLen)
	tok, err = s.Issue(long, t0, time.Hour)
	require.NoError(t, err)
	assert.NoError(t, s.Verify(long, tok, t0))
	assert.Error(t, s.Verify(long+"y", tok, t0))
}

func TestTicketVerifyAllocs(t *testing.T) {
	s := newSignerForTest(t, testKeyB, testKeyA)
	tok, err := s.Issue("client-1234", t0, time.Hour)
	require.NoError(t, err)
	require.NoError(t, s.Verify("client-1234", tok, t0))
	if raceEnabled {
		t.Skip("sync.Pool drops entries at random under the race detector")
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = s.Verify("client-1234", tok, t0) }))
	huge := strings.Repeat("A", 5000)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = s.Verify("client-1234", huge, t0) }))
}

// FuzzTicket feeds arbitrary tokens and client IDs to the parser and
// the verifier: they never panic, only the canonical encoding of a parsed
// token is accepted, and nothing verifies that the signer did not issue.
func FuzzTicket(f *testing.F) {
	s := newSignerForTest(f, testKeyA)
	good, err := s.Issue("client", t0, time.Hour)
	require.NoError(f, err)
	f.Add(good, "client")
	f.Add(good[:Len-1], "client")
	f.Add(good+"A", "client")
	f.Add(strings.Repeat("A", Len), "client")
	f.Add(strings.Repeat("_", Len), "")
	f.Add(good[:Len-1]+"B", "client") // non-canonical trailing bits
	f.Add("", "x")
	f.Add(strings.Repeat("=", 100), "x")
	f.Fuzz(func(t *testing.T, token, clientID string) {
		exp, mac, err := parse(token)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid)
			require.Error(t, s.Verify(clientID, token, t0))
			return
		}
		require.Len(t, token, Len)
		require.Positive(t, exp)
		// Only the canonical form parses: re-encoding gives the input.
		raw := []byte{version, 0, 0, 0, 0, 0, 0, 0, 0}
		for i := range 8 {
			raw[1+i] = byte(uint64(exp) >> (56 - 8*i))
		}
		raw = append(raw, mac[:]...)
		require.Equal(t, token, encoding.EncodeToString(raw))
		if s.Verify(clientID, token, t0) == nil {
			// A forgery would need the key: only the issued token, for
			// its own client, verifies.
			require.Equal(t, good, token)
			require.Equal(t, "client", clientID)
		}
	})
}
