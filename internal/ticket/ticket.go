package limiter

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

// Resume-token parameters.
const (
	// MinResumeKeyLen is the shortest resume key accepted, in bytes.
	MinResumeKeyLen = 16
	// MaxResumeKeys is the most keys a ResumeSigner accepts (the signing
	// key and the older keys still accepted during a rotation).
	MaxResumeKeys = 16
	// ResumeTokenLen is the length in bytes of every resume token: 25
	// bytes, base64url-encoded without padding.
	ResumeTokenLen = 34
)

const (
	resumeVersion = 1
	resumeMACLen  = 16 // HMAC-SHA256 truncated to 128 bits
	resumeRawLen  = 1 + 8 + resumeMACLen
	maxResumeKey  = 1024
	maxResumeTTL  = 366 * 24 * time.Hour
)

// resumeDomain separates resume-token MACs from any other use of the key.
const resumeDomain = "herdcap resume token v1\x00"

var resumeEncoding = base64.RawURLEncoding.Strict()

var (
	// ErrResumeToken: a resume token is malformed, was not signed by an
	// accepted key for this client ID, or has expired. The wrapped message
	// says which of the three; tokens are deliberately not more specific
	// (a token bound to another client is indistinguishable from a forged
	// one).
	ErrResumeToken     = errors.New("limiter: invalid resume token")
	errResumeExpired   = fmt.Errorf("%w: expired", ErrResumeToken)
	errResumeMalformed = fmt.Errorf("%w: malformed", ErrResumeToken)
	errResumeMAC       = fmt.Errorf("%w: bad signature, or issued to another client", ErrResumeToken)
)

// ResumeSigner issues and verifies resume tokens: proof that a client held
// a session recently, so that its reconnect resumes that session instead of
// opening a new one (Admission lets it in without spending the new-session
// budget).
//
// A token is 34 characters of base64url (safe in headers, cookies and gRPC
// metadata): a version byte, the expiry (Unix milliseconds) and an
// HMAC-SHA256, truncated to 128 bits, over the expiry and the client ID. The
// client ID is bound by the MAC rather than carried, so a token is compact,
// does not echo the ID (an address, a session ID) to whoever sees it, and
// verifies only for the client it was issued to: the verifier supplies the
// ID from the connection. Tokens are bearer credentials for that ID until
// they expire; they are not single-use.
//
// Keys rotate without a flag day: the first key signs, every key verifies.
// To rotate, put the new key first and keep the old one until the longest
// TTL of the tokens it signed has passed. Use distinct keys for distinct
// services.
//
// A ResumeSigner is safe for concurrent use; verification allocates
// nothing once warm.
type ResumeSigner struct {
	keys  [][]byte
	pools []sync.Pool // one pool of *resumeMAC per key
}

// resumeMAC is a reusable HMAC state with a buffer for its input.
type resumeMAC struct {
	h   hash.Hash
	buf [len(resumeDomain) + 8 + MaxClientIDLen]byte
	sum [sha256.Size]byte
}

// NewResumeSigner returns a signer that signs with keys[0] and accepts
// tokens signed by any of keys. It needs 1 to MaxResumeKeys keys of
// MinResumeKeyLen to 1024 bytes each (32 random bytes is a good key); the
// error wraps ErrInvalidOption and names the bad key. The keys are copied.
func NewResumeSigner(keys ...[]byte) (*ResumeSigner, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: resume keys: at least one key is required", ErrInvalidOption)
	}
	if len(keys) > MaxResumeKeys {
		return nil, fmt.Errorf("%w: resume keys: at most %d keys, got %d", ErrInvalidOption, MaxResumeKeys, len(keys))
	}
	s := &ResumeSigner{keys: make([][]byte, len(keys)), pools: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		if len(k) < MinResumeKeyLen || len(k) > maxResumeKey {
			return nil, fmt.Errorf("%w: resume keys[%d] is %d bytes; a key must be %d to %d bytes", ErrInvalidOption, i, len(k), MinResumeKeyLen, maxResumeKey)
		}
		key := append([]byte(nil), k...)
		s.keys[i] = key
		s.pools[i].New = func() any { return &resumeMAC{h: hmac.New(sha256.New, key)} }
	}
	return s, nil
}

// Issue returns a token for clientID that expires ttl from now.
func (s *ResumeSigner) Issue(clientID string, ttl time.Duration) (string, error) {
	return s.IssueAt(clientID, time.Now(), ttl)
}

// IssueAt returns a token for clientID that expires at t+ttl (to the
// millisecond, rounded down). ttl must be between 1 ms and 366 days, and the
// client ID 1 to MaxClientIDLen bytes.
func (s *ResumeSigner) IssueAt(clientID string, t time.Time, ttl time.Duration) (string, error) {
	if err := checkClientID(clientID); err != nil {
		return "", err
	}
	if ttl < time.Millisecond || ttl > maxResumeTTL {
		return "", fmt.Errorf("%w: resume token ttl must be between 1ms and %v, got %v", ErrInvalidOption, maxResumeTTL, ttl)
	}
	var raw [resumeRawLen]byte
	raw[0] = resumeVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(t.Add(ttl).UnixMilli()))
	s.mac(0, raw[1:9], clientID, raw[9:9:resumeRawLen])
	var out [ResumeTokenLen]byte
	resumeEncoding.Encode(out[:], raw[:])
	return string(out[:]), nil
}

// Verify checks token for clientID now. See VerifyAt.
func (s *ResumeSigner) Verify(clientID, token string) error {
	return s.VerifyAt(clientID, token, time.Now())
}

// VerifyAt reports whether token is a token for clientID, signed by one of
// the signer's keys, that has not expired at t. It returns nil or an error
// wrapping ErrResumeToken. Input of the wrong length is rejected before
// anything is decoded, and signatures are compared in constant time.
func (s *ResumeSigner) VerifyAt(clientID, token string, t time.Time) error {
	exp, mac, err := parseResumeToken(token)
	if err != nil {
		return err
	}
	if clientID == "" || len(clientID) > MaxClientIDLen {
		return errResumeMAC
	}
	var expBytes [8]byte
	binary.BigEndian.PutUint64(expBytes[:], uint64(exp))
	var sum [resumeMACLen]byte
	ok := false
	for i := range s.keys {
		// Every key is tried, so the time taken does not say which one
		// matched.
		if hmac.Equal(s.mac(i, expBytes[:], clientID, sum[:0]), mac[:]) {
			ok = true
		}
	}
	if !ok {
		return errResumeMAC
	}
	if t.UnixMilli() >= exp {
		return errResumeExpired
	}
	return nil
}

// mac appends the truncated MAC of (expiry, clientID) under key i to dst.
func (s *ResumeSigner) mac(i int, exp []byte, clientID string, dst []byte) []byte {
	m := s.pools[i].Get().(*resumeMAC)
	n := copy(m.buf[:], resumeDomain)
	n += copy(m.buf[n:], exp)
	n += copy(m.buf[n:], clientID) // callers bound clientID to MaxClientIDLen
	m.h.Reset()
	m.h.Write(m.buf[:n])
	dst = append(dst, m.h.Sum(m.sum[:0])[:resumeMACLen]...)
	s.pools[i].Put(m)
	return dst
}

// parseResumeToken decodes a token into its expiry (Unix ms) and MAC. It
// checks the length before decoding anything, accepts only the canonical
// encoding, and never panics.
func parseResumeToken(token string) (exp int64, mac [resumeMACLen]byte, err error) {
	if len(token) != ResumeTokenLen {
		return 0, mac, errResumeMalformed
	}
	var src [ResumeTokenLen]byte
	copy(src[:], token)
	var raw [resumeRawLen + 2]byte // room for the decoder's worst case
	n, derr := resumeEncoding.Decode(raw[:], src[:])
	if derr != nil || n != resumeRawLen || raw[0] != resumeVersion {
		return 0, mac, errResumeMalformed
	}
	e := binary.BigEndian.Uint64(raw[1:9])
	if e == 0 || e > 1<<62 {
		return 0, mac, errResumeMalformed
	}
	copy(mac[:], raw[9:resumeRawLen])
	return int64(e), mac, nil
}
