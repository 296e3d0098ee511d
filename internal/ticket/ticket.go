// Package ticket issues and verifies session tickets: proof that a client
// held a session recently, so that its reconnect rejoins that session
// instead of opening a new one (admission.Gate lets it in without spending
// the new-session budget).
//
// A ticket is 34 characters of base64url (safe in headers, cookies and gRPC
// metadata): a version byte, the expiry (Unix milliseconds) and an
// HMAC-SHA256, truncated to 128 bits, over the expiry and the client ID. The
// client ID is bound by the MAC rather than carried, so a ticket is
// compact, does not echo the ID (an address, a session ID) to whoever sees
// it, and verifies only for the client it was issued to: the verifier
// supplies the ID from the connection. Tickets are bearer credentials for
// that ID until they expire; they are not single-use.
//
// Keys rotate without a flag day: the first key signs, every key verifies.
// To rotate, put the new key first and keep the old one until the longest
// TTL of the tickets it signed has passed.
package ticket

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// Ticket parameters.
const (
	// Len is the length in bytes of every ticket: 25 bytes,
	// base64url-encoded without padding.
	Len = 34
	// MinKeyLen and MaxKeyLen bound the length of a key, in bytes.
	MinKeyLen = 16
	MaxKeyLen = 1024
	// MaxKeys is the most keys a Signer accepts (the signing key and the
	// older keys still accepted during a rotation).
	MaxKeys = 16
	// MaxTTL is the longest a ticket may live.
	MaxTTL = 366 * 24 * time.Hour
	// MaxClientIDLen is the longest client ID herdcap accepts anywhere, in
	// bytes: the one bound of the admission gate (admission.MaxClientIDLen),
	// of the tickets it issues and verifies, and of the transports'
	// client-ID field (wire.MaxClientIDLen), which are all this constant.
	// 256 bytes fit an HTTP header or gRPC metadata value anywhere.
	MaxClientIDLen = 256
)

const (
	version = 1
	macLen  = 16 // HMAC-SHA256 truncated to 128 bits
	rawLen  = 1 + 8 + macLen
)

// domain separates ticket MACs from any other use of the key. Its text
// predates the name "ticket" (these were "resume tokens"): it is part of
// the format, and changing it would invalidate every ticket in use.
const domain = "herdcap resume token v1\x00"

var encoding = base64.RawURLEncoding.Strict()

var (
	// ErrInvalid: a ticket is malformed, was not signed by an accepted key
	// for this client ID, or has expired. The wrapped message says which
	// of the three; tickets are deliberately not more specific (a ticket
	// bound to another client is indistinguishable from a forged one).
	ErrInvalid   = errors.New("invalid ticket")
	errExpired   = fmt.Errorf("%w: expired", ErrInvalid)
	errMalformed = fmt.Errorf("%w: malformed", ErrInvalid)
	errMAC       = fmt.Errorf("%w: bad signature, or issued to another client", ErrInvalid)
)

// Signer issues and verifies tickets. It is safe for concurrent use;
// verification allocates nothing once warm.
type Signer struct {
	keys  [][]byte
	pools []sync.Pool // one pool of *macState per key
}

// macState is a reusable HMAC state with a buffer for its input.
type macState struct {
	h   hash.Hash
	buf [len(domain) + 8 + MaxClientIDLen]byte
	sum [sha256.Size]byte
}

// New returns a signer that signs with keys[0] and accepts tickets signed
// by any of keys. It needs 1 to MaxKeys keys of MinKeyLen to MaxKeyLen
// bytes each (32 random bytes is a good key); the error names the bad key
// as field[i], field being the caller's name for keys. The keys are
// copied.
func New(keys [][]byte, field string) (*Signer, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: at least one key is required", field)
	}
	if len(keys) > MaxKeys {
		return nil, fmt.Errorf("%s: at most %d keys, got %d", field, MaxKeys, len(keys))
	}
	s := &Signer{keys: make([][]byte, len(keys)), pools: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		if len(k) < MinKeyLen || len(k) > MaxKeyLen {
			return nil, fmt.Errorf("%s[%d] is %d bytes; a key must be %d to %d bytes", field, i, len(k), MinKeyLen, MaxKeyLen)
		}
		key := append([]byte(nil), k...)
		s.keys[i] = key
		s.pools[i].New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	}
	return s, nil
}

// Issue returns a ticket for clientID that expires at t+ttl (to the
// millisecond, rounded down). ttl must be between 1 ms and MaxTTL, and the
// client ID 1 to MaxClientIDLen bytes.
func (s *Signer) Issue(clientID string, t time.Time, ttl time.Duration) (string, error) {
	if clientID == "" || len(clientID) > MaxClientIDLen {
		return "", fmt.Errorf("client ID must be 1 to %d bytes, got %d", MaxClientIDLen, len(clientID))
	}
	if ttl < time.Millisecond || ttl > MaxTTL {
		return "", fmt.Errorf("ticket TTL must be between 1ms and %v, got %v", MaxTTL, ttl)
	}
	var raw [rawLen]byte
	raw[0] = version
	binary.BigEndian.PutUint64(raw[1:9], uint64(t.Add(ttl).UnixMilli()))
	s.mac(0, raw[1:9], clientID, raw[9:9:rawLen])
	var out [Len]byte
	encoding.Encode(out[:], raw[:])
	return string(out[:]), nil
}

// Verify reports whether ticket is a ticket for clientID, signed by one of
// the signer's keys, that has not expired at t. It returns nil or an error
// wrapping ErrInvalid. Input of the wrong length is rejected before
// anything is decoded, and signatures are compared in constant time.
func (s *Signer) Verify(clientID, ticket string, t time.Time) error {
	exp, mac, err := parse(ticket)
	if err != nil {
		return err
	}
	if clientID == "" || len(clientID) > MaxClientIDLen {
		return errMAC
	}
	var expBytes [8]byte
	binary.BigEndian.PutUint64(expBytes[:], uint64(exp))
	var sum [macLen]byte
	ok := false
	for i := range s.keys {
		// Every key is tried, so the time taken does not say which one
		// matched.
		if hmac.Equal(s.mac(i, expBytes[:], clientID, sum[:0]), mac[:]) {
			ok = true
		}
	}
	if !ok {
		return errMAC
	}
	if t.UnixMilli() >= exp {
		return errExpired
	}
	return nil
}

// mac appends the truncated MAC of (expiry, clientID) under key i to dst.
func (s *Signer) mac(i int, exp []byte, clientID string, dst []byte) []byte {
	m := s.pools[i].Get().(*macState)
	n := copy(m.buf[:], domain)
	n += copy(m.buf[n:], exp)
	n += copy(m.buf[n:], clientID) // callers bound clientID to MaxClientIDLen
	m.h.Reset()
	m.h.Write(m.buf[:n])
	dst = append(dst, m.h.Sum(m.sum[:0])[:macLen]...)
	s.pools[i].Put(m)
	return dst
}

// parse decodes a ticket into its expiry (Unix ms) and MAC. It checks the
// length before decoding anything, accepts only the canonical encoding, and
// never panics.
func parse(ticket string) (exp int64, mac [macLen]byte, err error) {
	if len(ticket) != Len {
		return 0, mac, errMalformed
	}
	var src [Len]byte
	copy(src[:], ticket)
	var raw [rawLen + 2]byte // room for the decoder's worst case
	n, derr := encoding.Decode(raw[:], src[:])
	if derr != nil || n != rawLen || raw[0] != version {
		return 0, mac, errMalformed
	}
	e := binary.BigEndian.Uint64(raw[1:9])
	if e == 0 || e > 1<<62 {
		return 0, mac, errMalformed
	}
	copy(mac[:], raw[9:rawLen])
	return int64(e), mac, nil
}
