// Package wire encodes herdcap's client fields and invalidation notices, the
// same bytes in HTTP headers and gRPC metadata.
package wire

import (
	"errors"
	"time"

	"github.com/herdcap/herdcap/internal/ticket"
	"github.com/herdcap/herdcap/invalidate"
)

// Limits of the herdcap fields. A field's values are the field lines of an
// HTTP header or the values of a gRPC metadata key.
const (
	// MaxClientIDLen is the longest client ID accepted, in bytes: the
	// admission gate's bound (admission.MaxClientIDLen), defined once in
	// package ticket.
	MaxClientIDLen = ticket.MaxClientIDLen
	// MaxEpochDigits is the most digits an epoch field may have:
	// invalidate.MaxEpoch has 16.
	MaxEpochDigits = 16
	// MaxNoticeField bounds the notice list NoticeField writes, in bytes:
	// notices are added while it stays within this size (but at least
	// one), so that proxies with small header buffers pass it.
	MaxNoticeField = 4096
	// MaxParsedField bounds the notice-list values ParseNotices reads, in
	// bytes all together; MaxParsedNotices the notices.
	MaxParsedField   = 64 << 10
	MaxParsedNotices = 1024
	// MaxMillisDigits bounds a retry hint in milliseconds: ten digits are
	// more than 100 days.
	MaxMillisDigits = 10
	// MaxSFInteger is the largest Integer a structured field can carry
	// (RFC 9651 section 3.3.1: at most 15 digits).
	MaxSFInteger = 999_999_999_999_999
)

// Errors describing malformed herdcap field values; they say what is wrong
// without echoing the value. The caller adds the field's name.
var (
	ErrRepeated      = errors.New("repeated value (want exactly one)")
	ErrEmptyValue    = errors.New("empty value")
	ErrNotDigits     = errors.New("value is not a decimal number")
	ErrTooLong       = errors.New("value too long")
	ErrTooLarge      = errors.New("number above the field's limit (for an epoch, invalidate.MaxEpoch)")
	ErrClientIDBytes = errors.New("client ID holds a byte that is not visible ASCII, or a comma")
)

// ParseEpoch parses the values of a request's epoch field. It accepts
// exactly one value of 1 to MaxEpochDigits decimal digits (optional spaces
// and tabs around them) no greater than invalidate.MaxEpoch.
func ParseEpoch(vals []string) (uint64, error) {
	if len(vals) != 1 {
		return 0, ErrRepeated
	}
	return ParseDecimal(TrimOWS(vals[0]), MaxEpochDigits, invalidate.MaxEpoch)
}

// ParseDecimal parses s, 1 to maxDigits decimal digits (maxDigits at most
// 19), as a number no greater than limit. It never overflows: 19 digits
// fit a uint64.
func ParseDecimal(s string, maxDigits int, limit uint64) (uint64, error) {
	if s == "" {
		return 0, ErrEmptyValue
	}
	if len(s) > maxDigits {
		return 0, ErrTooLong
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, ErrNotDigits
		}
		n = n*10 + uint64(c-'0')
	}
	if n > limit {
		return 0, ErrTooLarge
	}
	return n, nil
}

// ParseClientID checks the values of a request's client-ID field: one value
// of 1 to MaxClientIDLen visible ASCII bytes (0x21 to 0x7E) other than the
// comma (intermediaries may join repeated HTTP field lines with commas,
// which would make a comma ambiguous), with optional spaces and tabs
// around it.
func ParseClientID(vals []string) (string, error) {
	if len(vals) != 1 {
		return "", ErrRepeated
	}
	s := TrimOWS(vals[0])
	switch {
	case s == "":
		return "", ErrEmptyValue
	case len(s) > MaxClientIDLen:
		return "", ErrTooLong
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return "", ErrClientIDBytes
		}
	}
	return s, nil
}

// Ticket returns the ticket of a request's ticket field values, or ""
// when there is none or it is not shaped like a ticket (one value for
// which TokenShaped holds). A ticket of the right shape may still be
// forged or expired: the admission.Gate checks that.
func Ticket(vals []string) string {
	if len(vals) != 1 || !TokenShaped(vals[0]) {
		return ""
	}
	return vals[0]
}

// TokenShaped reports whether s is ticket.Len base64url characters: shaped
// like an admission ticket.
func TokenShaped(s string) bool {
	if len(s) != ticket.Len {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// TrimOWS removes the spaces and tabs around s (HTTP's optional
// whitespace).
func TrimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// CeilSeconds returns d in whole seconds, rounded up, capped at
// MaxSFInteger; a negative d gives 0. HTTP's Retry-After carries a wait
// so (at least 1: a refusal never says "now").
func CeilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return min(s, MaxSFInteger)
}

// CeilMillis returns d in whole milliseconds, rounded up, at least 1: an
// exact wait as Herdcap-Retry-After-Ms carries it.
func CeilMillis(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return max(ms, 1)
}
