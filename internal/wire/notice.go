package wire

import (
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/herdcap/herdcap/internal/rolloutlimit"
	"github.com/herdcap/herdcap/invalidate"
)

// NoticeField returns the notice list for the first notices (at most
// limit, within MaxNoticeField bytes, at least one) and the highest epoch
// among them.
//
// A notice list is a structured-field List (RFC 9651) of notices in epoch
// order, each an Item whose value is the scope, with the parameters epoch
// (an Integer) and id (the rollout ID):
//
//	"tag:catalog";epoch=1767225600000;id="catalog-v2", "*";epoch=1767225600001;id="oops-1"
//
// A scope or ID that is printable ASCII is a String, anything else a Byte
// Sequence (:base64:), so the list is printable ASCII, fit for an HTTP
// header or a gRPC metadata value. An epoch above MaxSFInteger, which an
// Integer cannot carry, is a String of its digits. Parameters other than
// epoch and id are reserved: ParseNotices skips them.
func NoticeField(notices []invalidate.Notice, limit int) (string, uint64) {
	size, n := 0, 0
	for _, x := range notices[:min(len(notices), limit)] {
		l := noticeLen(x) + 2
		if n > 0 && size+l > MaxNoticeField {
			break
		}
		size += l
		n++
	}
	b := make([]byte, 0, size)
	var epoch uint64
	for i, x := range notices[:n] {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendNotice(b, x)
		epoch = max(epoch, x.Epoch)
	}
	return string(b), epoch
}

// appendNotice appends one notice as a structured-field Item: the scope,
// then the epoch and id parameters.
func appendNotice(b []byte, n invalidate.Notice) []byte {
	b = appendSFText(b, n.Scope)
	b = append(b, ";epoch="...)
	if n.Epoch <= MaxSFInteger {
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

// Errors of ParseNotices.
var (
	ErrNoticeSyntax = errors.New("malformed notice list")
	ErrNoticeField  = errors.New("notice lacks a valid epoch or id parameter")
	ErrNoticeLong   = errors.New("notice list too long")
	ErrNoticeOrder  = errors.New("notice epochs not ascending")
)

// ParseNotices appends to dst the notices of the values of a response's
// notice-list field, in order; an empty value is an empty list. On malformed
// input it returns the notices before the first bad one and an error: since
// notices come in epoch order, a client applies that prefix and misses
// nothing. It checks the limits (MaxParsedField bytes, MaxParsedNotices
// notices, the rollouts' limits on scope and ID lengths and on epochs,
// package rolloutlimit) and that epochs strictly ascend.
func ParseNotices(dst []invalidate.Notice, vals []string) ([]invalidate.Notice, error) {
	total := 0
	for _, v := range vals {
		total += len(v)
	}
	if total > MaxParsedField {
		return dst, ErrNoticeLong
	}
	var last uint64
	count := 0
	for _, v := range vals {
		p := sfParser{s: v}
		p.skipOWS()
		if p.done() {
			continue // an empty value is an empty list
		}
		for {
			if count == MaxParsedNotices {
				return dst, ErrNoticeLong
			}
			n, err := p.notice()
			if err != nil {
				return dst, err
			}
			if n.Epoch <= last {
				return dst, ErrNoticeOrder
			}
			last = n.Epoch
			dst = append(dst, n)
			count++
			p.skipOWS()
			if p.done() {
				break
			}
			if !p.eat(',') {
				return dst, ErrNoticeSyntax
			}
			p.skipOWS()
			if p.done() {
				return dst, ErrNoticeSyntax // a trailing comma
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
	if !ok || scope == "" || len(scope) > rolloutlimit.MaxScopeLen {
		return n, ErrNoticeSyntax
	}
	n.Scope = scope
	haveEpoch, haveID := false, false
	for p.eat(';') {
		p.skipOWS()
		key, ok := p.key()
		if !ok {
			return n, ErrNoticeSyntax
		}
		if !p.eat('=') { // a bare key is Boolean true
			if key == "epoch" || key == "id" {
				return n, ErrNoticeField
			}
			continue
		}
		switch key {
		case "epoch":
			e, ok := p.epoch()
			if !ok || haveEpoch {
				return n, ErrNoticeField
			}
			n.Epoch, haveEpoch = e, true
		case "id":
			id, ok := p.text()
			if !ok || haveID || id == "" || len(id) > rolloutlimit.MaxIDLen {
				return n, ErrNoticeField
			}
			n.RolloutID, haveID = id, true
		default:
			if !p.skipBareItem() {
				return n, ErrNoticeSyntax
			}
		}
	}
	if !haveEpoch || !haveID {
		return n, ErrNoticeField
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
	e, err := ParseDecimal(digits, MaxEpochDigits, invalidate.MaxEpoch)
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
