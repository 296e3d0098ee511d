package grpcmw

// The codec below mirrors package httpmw's (wire.go), so that both
// transports put the same bytes on the wire; keep the two in step.

import (
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/herdcap/herdcap/invalidate"
	"github.com/herdcap/herdcap/limiter"
)

// The herdcap metadata keys. They carry the same values as the HTTP header
// fields of package httpmw (Herdcap-Client and so on), so that one client
// library or gateway can speak both.
const (
	// MetadataClient (request) carries the client's ID: 1 to
	// MaxClientMetadataLen bytes of visible ASCII (0x21 to 0x7E) other
	// than the comma, one value. The invalidation and admission
	// interceptors use it, when no WithKeyFunc is set, to place the client
	// in cohorts and admission slots; without it they use PeerIP. It is
	// self-asserted: use WithKeyFunc to key by an authenticated identity.
	// A malformed value gets codes.InvalidArgument.
	MetadataClient = "herdcap-client"

	// MetadataEpoch (request) carries the highest invalidation epoch the
	// client has applied, in decimal: 1 to 16 digits, at most
	// invalidate.MaxEpoch, one value. A call without it is from a client
	// that takes no part in invalidation; a malformed one gets
	// codes.InvalidArgument.
	//
	// (response) Sent with MetadataInvalidate: the highest epoch among its
	// notices, which the client records once it has applied them all.
	MetadataEpoch = "herdcap-epoch"

	// MetadataInvalidate (response) tells the client what to drop, in the
	// format of httpmw.HeaderInvalidate: each value a structured-field
	// List of notices in epoch order, an Item per notice whose value is
	// the scope (a String, or a Byte Sequence when it is not printable
	// ASCII) with the parameters epoch and id:
	//
	//	herdcap-invalidate: "tag:catalog";epoch=1767225600000;id="catalog-v2"
	//
	// It comes in the response header when the call succeeds (for a
	// stream, with its first message), else in the trailer, which keeps
	// refusals Trailers-Only.
	MetadataInvalidate = "herdcap-invalidate"

	// MetadataResume carries a resume token (limiter.ResumeSigner): in the
	// response of an admitted call or stream, the token to present next
	// time (header on success, trailer otherwise); in a request, the token
	// the client holds. A missing, malformed, expired or foreign token
	// makes the call a new session; it is never an error.
	MetadataResume = "herdcap-resume"
)

// Limits of the herdcap metadata.
const (
	// MaxClientMetadataLen is the longest MetadataClient value accepted, in
	// bytes.
	MaxClientMetadataLen = 256
	// maxEpochDigits is the most digits an epoch header may have:
	// invalidate.MaxEpoch has 16.
	maxEpochDigits = 16
	// maxNoticeField bounds the MetadataInvalidate value the invalidation
	// interceptors send:
	// notices are added while it stays within this size (but at least
	// one), so that proxies with small header buffers pass it.
	maxNoticeField = 4096
	// maxParsedField bounds the MetadataInvalidate values a Client
	// reads, in bytes all together; maxParsedNotices the notices.
	maxParsedField   = 64 << 10
	maxParsedNotices = 1024
	// maxMillisDigits bounds the pushback trailer: ten digits are more
	// than 100 days.
	maxMillisDigits = 10
	// maxSFInteger is the largest Integer a structured field can carry
	// (RFC 9651 section 3.3.1: at most 15 digits).
	maxSFInteger = 999_999_999_999_999
)

// Errors describing malformed herdcap header values; they say what is
// wrong without echoing the value.
var (
	errRepeated      = errors.New("repeated metadata value")
	errEmptyValue    = errors.New("empty value")
	errNotDigits     = errors.New("value is not a decimal number")
	errTooLong       = errors.New("value too long")
	errEpochRange    = errors.New("epoch above invalidate.MaxEpoch")
	errClientIDBytes = errors.New("client ID holds a byte that is not visible ASCII, or a comma")
)

// parseEpoch parses the MetadataEpoch values of a request. It accepts
// exactly one line of 1 to 16 decimal digits (optional whitespace around
// them) no greater than invalidate.MaxEpoch.
func parseEpoch(lines []string) (uint64, error) {
	if len(lines) != 1 {
		return 0, errRepeated
	}
	return parseDecimal(trimOWS(lines[0]), maxEpochDigits, invalidate.MaxEpoch)
}

// parseDecimal parses s, 1 to maxDigits decimal digits, as a number no
// greater than limit. It never overflows: 19 digits fit a uint64.
func parseDecimal(s string, maxDigits int, limit uint64) (uint64, error) {
	if s == "" {
		return 0, errEmptyValue
	}
	if len(s) > maxDigits {
		return 0, errTooLong
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errNotDigits
		}
		n = n*10 + uint64(c-'0')
	}
	if n > limit {
		return 0, errEpochRange
	}
	return n, nil
}

// parseClientID checks the MetadataClient values of a request: one line
// of 1 to MaxClientMetadataLen visible ASCII bytes other than the comma
// (intermediaries may join repeated lines with commas, which would make a
// comma ambiguous).
func parseClientID(lines []string) (string, error) {
	if len(lines) != 1 {
		return "", errRepeated
	}
	s := trimOWS(lines[0])
	switch {
	case s == "":
		return "", errEmptyValue
	case len(s) > MaxClientMetadataLen:
		return "", errTooLong
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return "", errClientIDBytes
		}
	}
	return s, nil
}

// tokenShaped reports whether s is limiter.ResumeTokenLen base64url
// characters.
func tokenShaped(s string) bool {
	if len(s) != limiter.ResumeTokenLen {
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

// appendNotice appends one notice as a structured-field Item: the scope,
// then the epoch and id parameters.
func appendNotice(b []byte, n invalidate.Notice) []byte {
	b = appendSFText(b, n.Scope)
	b = append(b, ";epoch="...)
	if n.Epoch <= maxSFInteger {
		b = strconv.AppendUint(b, n.Epoch, 10)
	} else {
		b = append(b, '"')
		b = strconv.AppendUint(b, n.Epoch, 10)
		b = append(b, '"')
	}
	b = append(b, ";id="...)
	return appendSFText(b, n.RolloutID)
}

// noticeLen is an upper bound of the bytes appendNotice writes for n.
func noticeLen(n invalidate.Notice) int {
	return sfTextLen(n.Scope) + sfTextLen(n.RolloutID) + len(";epoch=;id=") + 18
}

// appendSFText appends s as a structured-field String when it is printable
// ASCII, else as a Byte Sequence.
func appendSFText(b []byte, s string) []byte {
	if !printable(s) {
		b = append(b, ':')
		b = base64.StdEncoding.AppendEncode(b, []byte(s))
		return append(b, ':')
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// sfTextLen is an upper bound of the bytes appendSFText writes for s.
func sfTextLen(s string) int {
	if !printable(s) {
		return base64.StdEncoding.EncodedLen(len(s)) + 2
	}
	return 2*len(s) + 2
}

// printable reports whether s is printable ASCII (0x20 to 0x7E).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Errors of the MetadataInvalidate parser.
var (
	errNoticeSyntax = errors.New("malformed notice list")
	errNoticeField  = errors.New("notice lacks a valid epoch or id parameter")
	errNoticeLong   = errors.New("notice list too long")
	errNoticeOrder  = errors.New("notice epochs not ascending")
)

// parseNotices appends to dst the notices of a response's MetadataInvalidate
// values, in order. On malformed input it returns the notices before
// the first bad one and an error: since notices come in epoch order, a
// client applies that prefix and misses nothing. It checks the limits
// (maxParsedField bytes, maxParsedNotices notices, invalidate's limits on
// scope and ID lengths and on epochs) and that epochs strictly ascend.
func parseNotices(dst []invalidate.Notice, lines []string) ([]invalidate.Notice, error) {
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	if total > maxParsedField {
		return dst, errNoticeLong
	}
	var last uint64
	count := 0
	for _, line := range lines {
		p := sfParser{s: line}
		p.skipOWS()
		if p.done() {
			continue // an empty line is an empty list
		}
		for {
			if count == maxParsedNotices {
				return dst, errNoticeLong
			}
			n, err := p.notice()
			if err != nil {
				return dst, err
			}
			if n.Epoch <= last {
				return dst, errNoticeOrder
			}
			last = n.Epoch
			dst = append(dst, n)
			count++
			p.skipOWS()
			if p.done() {
				break
			}
			if !p.eat(',') {
				return dst, errNoticeSyntax
			}
			p.skipOWS()
			if p.done() {
				return dst, errNoticeSyntax // a trailing comma
			}
		}
	}
	return dst, nil
}

// sfParser reads the subset of RFC 9651 structured fields that notices use:
// Items whose value is a String or Byte Sequence, with parameters. Unknown
// parameters are skipped if well formed.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *sfParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// notice reads one notice Item.
func (p *sfParser) notice() (invalidate.Notice, error) {
	var n invalidate.Notice
	scope, ok := p.text()
	if !ok || scope == "" || len(scope) > invalidate.MaxScopeLen {
		return n, errNoticeSyntax
	}
	n.Scope = scope
	haveEpoch, haveID := false, false
	for p.eat(';') {
		p.skipOWS()
		key, ok := p.key()
		if !ok {
			return n, errNoticeSyntax
		}
		if !p.eat('=') { // a bare key is Boolean true
			if key == "epoch" || key == "id" {
				return n, errNoticeField
			}
			continue
		}
		switch key {
		case "epoch":
			e, ok := p.epoch()
			if !ok || haveEpoch {
				return n, errNoticeField
			}
			n.Epoch, haveEpoch = e, true
		case "id":
			id, ok := p.text()
			if !ok || haveID || id == "" || len(id) > invalidate.MaxIDLen {
				return n, errNoticeField
			}
			n.RolloutID, haveID = id, true
		default:
			if !p.skipBareItem() {
				return n, errNoticeSyntax
			}
		}
	}
	if !haveEpoch || !haveID {
		return n, errNoticeField
	}
	return n, nil
}

// key reads a parameter key: lcalpha or "*", then lcalpha, digits, "_",
// "-", "." or "*".
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.done() || !(isLCAlpha(p.s[p.i]) || p.s[p.i] == '*') {
		return "", false
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !(isLCAlpha(c) || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }

// epoch reads an epoch: an Integer, or a String of digits (for epochs too
// large for an Integer), 1 to invalidate.MaxEpoch.
func (p *sfParser) epoch() (uint64, bool) {
	var digits string
	if p.i < len(p.s) && p.s[p.i] == '"' {
		s, ok := p.str()
		if !ok {
			return 0, false
		}
		digits = s
	} else {
		start := p.i
		for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
			p.i++
		}
		digits = p.s[start:p.i]
		if p.i < len(p.s) && p.s[p.i] == '.' {
			return 0, false // a Decimal is not an epoch
		}
	}
	e, err := parseDecimal(digits, maxEpochDigits, invalidate.MaxEpoch)
	if err != nil || e == 0 {
		return 0, false
	}
	return e, true
}

// text reads a String or a Byte Sequence.
func (p *sfParser) text() (string, bool) {
	if p.done() {
		return "", false
	}
	switch p.s[p.i] {
	case '"':
		return p.str()
	case ':':
		return p.bytes()
	}
	return "", false
}

// str reads a String: printable ASCII between quotes, with \" and \\ as
// the only escapes. It returns a substring when nothing was escaped.
func (p *sfParser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	var b []byte // nil until an escape is seen
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			if b == nil {
				return p.s[start : p.i-1], true
			}
			return string(b), true
		case c == '\\':
			if p.i+1 >= len(p.s) || (p.s[p.i+1] != '"' && p.s[p.i+1] != '\\') {
				return "", false
			}
			if b == nil {
				b = append([]byte(nil), p.s[start:p.i]...)
			}
			b = append(b, p.s[p.i+1])
			p.i += 2
		case c < 0x20 || c > 0x7e:
			return "", false
		default:
			if b != nil {
				b = append(b, c)
			}
			p.i++
		}
	}
	return "", false // unterminated
}

// bytes reads a Byte Sequence: standard base64 (padding optional, as RFC
// 9651 allows parsers) between colons.
func (p *sfParser) bytes() (string, bool) {
	if !p.eat(':') {
		return "", false
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ':' {
		c := p.s[p.i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return "", false
		}
		p.i++
	}
	if p.done() {
		return "", false
	}
	enc := p.s[start:p.i]
	p.i++ // the closing colon
	for len(enc) > 0 && enc[len(enc)-1] == '=' {
		enc = enc[:len(enc)-1]
	}
	out, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	return string(out), true
}

// skipBareItem skips the value of an unknown parameter: an Integer or
// Decimal, a String, a Token, a Byte Sequence or a Boolean.
func (p *sfParser) skipBareItem() bool {
	if p.done() {
		return false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == ':':
		_, ok := p.bytes()
		return ok
	case c == '?':
		p.i++
		return p.eat('0') || p.eat('1')
	case c == '-' || '0' <= c && c <= '9':
		p.i++
		n := 0
		for p.i < len(p.s) && ('0' <= p.s[p.i] && p.s[p.i] <= '9' || p.s[p.i] == '.') {
			p.i++
			n++
		}
		return n <= 20
	case 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '*':
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			if c <= 0x20 || c >= 0x7f || c == ',' || c == ';' || c == '"' || c == '=' || c == '(' || c == ')' {
				break
			}
			p.i++
		}
		return true
	}
	return false
}

// trimOWS removes spaces and tabs around s.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
