package httpmw

import (
	"net/netip"
	"strings"

	"github.com/herdcap/herdcap/internal/wire"
)

// fromForwarded walks the RFC 7239 Forwarded field lines right to left,
// element by element, and returns the "for" address of the first element
// that is not a trusted proxy (or of the left-most one, when all are).
//
// Only the elements it walks are parsed: those appended by trusted proxies
// and the one naming the client. What the client wrote further left is never
// interpreted, so it can neither choose the key nor, by being malformed,
// escape into the peer's bucket. An element on the path that is malformed,
// lacks "for", or names an "unknown" or obfuscated node (RFC 7239 section
// 6) yields bad: there is no address to key by, so the caller falls back to
// the peer.
//
// Quoted strings may not contain quoted-pairs (backslashes): no proxy needs
// them to write an address, and forbidding them is what makes scanning from
// the right unambiguous.
func (c *clientIP) fromForwarded(lines []string) (text string, a netip.Addr, st chainState) {
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		end := len(line)
		for end >= 0 {
			start, ok := elementStart(line[:end])
			if !ok {
				return "", netip.Addr{}, bad
			}
			elem := wire.TrimOWS(line[start:end])
			end = start - 1
			if elem == "" {
				continue
			}
			t, addr, ok := parseForwardedElement(elem)
			if !ok {
				return "", netip.Addr{}, bad
			}
			text, a, st = t, addr, found
			if !c.isTrusted(addr) {
				return text, a, st
			}
		}
	}
	return text, a, st
}

// elementStart returns the index just after the last comma of s that is
// outside a quoted string (0 if none). It reports false when the quotes of
// that last element do not balance.
func elementStart(s string) (int, bool) {
	inQuote := false
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				return i + 1, true
			}
		}
	}
	return 0, !inQuote
}

// Bits for the parameters RFC 7239 forbids repeating within an element.
const (
	paramFor = 1 << iota
	paramBy
	paramHost
	paramProto
)

// parseForwardedElement parses one forwarded-element (pairs separated by
// semicolons, optional whitespace around them tolerated) and returns its
// "for" address.
func parseForwardedElement(s string) (string, netip.Addr, bool) {
	var (
		seen    int
		forText string
	)
	for {
		s = trimOWSLeft(s)
		if s == "" {
			break
		}
		if s[0] == ';' { // empty pair
			s = s[1:]
			continue
		}
		n := tokenLen(s)
		if n == 0 || n == len(s) || s[n] != '=' {
			return "", netip.Addr{}, false
		}
		name := s[:n]
		s = s[n+1:]
		var value string
		if s != "" && s[0] == '"' {
			end := quotedEnd(s)
			if end < 0 {
				return "", netip.Addr{}, false
			}
			value, s = s[1:end], s[end+1:]
		} else {
			m := tokenLen(s)
			if m == 0 {
				return "", netip.Addr{}, false
			}
			value, s = s[:m], s[m:]
		}
		var bit int
		switch {
		case strings.EqualFold(name, "for"):
			bit = paramFor
			forText = value
		case strings.EqualFold(name, "by"):
			bit = paramBy
		case strings.EqualFold(name, "host"):
			bit = paramHost
		case strings.EqualFold(name, "proto"):
			bit = paramProto
		}
		if seen&bit != 0 {
			return "", netip.Addr{}, false
		}
		seen |= bit
		s = trimOWSLeft(s)
		if s != "" {
			if s[0] != ';' {
				return "", netip.Addr{}, false
			}
			s = s[1:]
		}
	}
	if seen&paramFor == 0 {
		return "", netip.Addr{}, false
	}
	return parseNode(forText)
}

// parseNode parses a node (RFC 7239 section 6): an IPv4 address or a
// bracketed IPv6 address, optionally followed by ":" and a port (numeric or
// obfuscated). "unknown" and obfuscated identifiers are reported as not an
// address.
func parseNode(s string) (string, netip.Addr, bool) {
	var host, rest string
	if s != "" && s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", netip.Addr{}, false
		}
		host, rest = s[1:end], s[end+1:]
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, false
		}
		if !validNodePort(rest) {
			return "", netip.Addr{}, false
		}
		return host, a, true
	}
	host = s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, rest = s[:i], s[i:]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() || !validNodePort(rest) {
		return "", netip.Addr{}, false
	}
	return host, a, true
}

// validNodePort reports whether rest is empty or ":" followed by a port of
// 1 to 5 digits or an obfuscated port ("_" then letters, digits, ".", "_",
// "-").
func validNodePort(rest string) bool {
	if rest == "" {
		return true
	}
	if rest[0] != ':' {
		return false
	}
	p := rest[1:]
	if p != "" && p[0] == '_' {
		if len(p) == 1 {
			return false
		}
		for i := 1; i < len(p); i++ {
			ch := p[i]
			if !isAlnum(ch) && ch != '.' && ch != '_' && ch != '-' {
				return false
			}
		}
		return true
	}
	return isPort(p)
}

// quotedEnd returns the index of the quote closing the quoted string that
// s starts with, or -1 when it is unterminated or holds a byte a quoted
// string may not (controls other than tab, DEL) or a backslash (see
// fromForwarded).
func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '"':
			return i
		case ch == '\\', ch == 0x7f, ch < 0x20 && ch != '\t':
			return -1
		}
	}
	return -1
}

// tokenLen returns the length of the RFC 9110 token at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return i
		}
	}
	return len(s)
}

func isTchar(ch byte) bool {
	if isAlnum(ch) {
		return true
	}
	switch ch {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func isAlnum(ch byte) bool {
	return ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z'
}

func trimOWSLeft(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}
