package httpmw

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/herdcap/herdcap/internal/wire"
)

// clientIP resolves the address a request is keyed by when no key function
// is configured. See WithTrustedProxies and WithClientIPHeaders for the
// rules; in short, forwarding headers count only from a trusted peer, are
// read right to left past trusted proxies, and anything doubtful yields the
// peer address.
type clientIP struct {
	trusted []netip.Prefix
	useXFF  bool
	useFwd  bool
}

// key returns the client address of r as a string. In the common cases it
// is a substring of r.RemoteAddr or of a header, so it does not allocate.
func (c *clientIP) key(r *http.Request) (string, error) {
	peer := peerHost(r.RemoteAddr)
	if peer == "" {
		return "", fmt.Errorf("%w: the request has no peer address", ErrNoKey)
	}
	if len(c.trusted) == 0 {
		return peer, nil
	}
	return c.resolve(peer, r.Header), nil
}

// resolve returns the client address given the peer host and the request
// headers.
func (c *clientIP) resolve(peer string, h http.Header) string {
	pa, err := netip.ParseAddr(peer)
	if err != nil || !c.isTrusted(pa) {
		return peer
	}
	var (
		xffState, fwdState = absent, absent
		xffText, fwdText   string
		xffAddr, fwdAddr   netip.Addr
	)
	if c.useXFF {
		xffText, xffAddr, xffState = c.fromXFF(h["X-Forwarded-For"])
	}
	if c.useFwd {
		fwdText, fwdAddr, fwdState = c.fromForwarded(h["Forwarded"])
	}
	switch {
	case xffState == bad || fwdState == bad:
		return peer
	case xffState == found && fwdState == found:
		if xffAddr.Unmap().WithZone("") != fwdAddr.Unmap().WithZone("") {
			// One of them was passed through from the client
			// untouched: believe neither.
			return peer
		}
		return addrKey(xffText, xffAddr)
	case xffState == found:
		return addrKey(xffText, xffAddr)
	case fwdState == found:
		return addrKey(fwdText, fwdAddr)
	}
	return peer
}

// isTrusted reports whether a is a trusted proxy.
func (c *clientIP) isTrusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// chainState is the outcome of reading one forwarding header.
type chainState uint8

const (
	absent chainState = iota // no header, or no element in it
	found                    // a client address was found
	bad                      // the part of the chain that matters is malformed
)

// fromXFF walks the X-Forwarded-For field lines right to left, element by
// element, and returns the first address that is not a trusted proxy (or the
// left-most one, when every address is trusted). text is the address as it
// appears in the header.
func (c *clientIP) fromXFF(lines []string) (text string, a netip.Addr, st chainState) {
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		end := len(line)
		for end >= 0 {
			start := strings.LastIndexByte(line[:end], ',') + 1
			elem := wire.TrimOWS(line[start:end])
			end = start - 1
			if elem == "" {
				continue // empty list elements are allowed, and carry nothing
			}
			t, addr, ok := parseXFFElement(elem)
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

// parseXFFElement parses one X-Forwarded-For element: an IPv4 or IPv6
// address, optionally bracketed (IPv6) and optionally followed by a port.
func parseXFFElement(s string) (string, netip.Addr, bool) {
	host, ok := splitHostPort(s)
	if !ok {
		return "", netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", netip.Addr{}, false
	}
	return host, a, true
}

// splitHostPort removes an optional port from s: "[v6]:port", "[v6]",
// "v4:port", "v4" or a bare "v6". It reports false for a malformed port or
// bracket.
func splitHostPort(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", false
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return host, true
		}
		if rest[0] != ':' || !isPort(rest[1:]) {
			return "", false
		}
		return host, true
	}
	colon := strings.LastIndexByte(s, ':')
	if colon < 0 {
		return s, true
	}
	if strings.IndexByte(s, ':') != colon {
		return s, true // several colons and no brackets: a bare IPv6 address
	}
	if !isPort(s[colon+1:]) {
		return "", false
	}
	return s[:colon], true
}

// isPort reports whether s is 1 to 5 decimal digits.
func isPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// peerHost returns the host part of a Request.RemoteAddr without allocating:
// net/http sets it to "ip:port" or "[ipv6]:port". Anything else is returned
// whole (and "" stays "").
func peerHost(remote string) string {
	if remote == "" {
		return ""
	}
	if remote[0] == '[' {
		if end := strings.IndexByte(remote, ']'); end > 1 {
			return remote[1:end]
		}
		return remote
	}
	colon := strings.LastIndexByte(remote, ':')
	if colon > 0 && strings.IndexByte(remote, ':') == colon {
		return remote[:colon]
	}
	return remote
}

// addrKey returns the canonical text of a, which was parsed from text:
// text itself when it already is canonical (no allocation), else a new
// string. Keys are canonical so that one client is one bucket however a
// proxy spells its address (upper-case hex, IPv4-mapped IPv6, zones).
func addrKey(text string, a netip.Addr) string {
	a = a.Unmap().WithZone("")
	var buf [48]byte
	b := a.AppendTo(buf[:0])
	if string(b) == text {
		return text
	}
	return string(b)
}
