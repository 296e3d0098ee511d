package httpmw

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
)

// ClientIP says how a client's address is found and keyed: by the
// middleware's default key functions (RateLimit's policies without a Key,
// and Admit and Invalidate for clients that send no Herdcap-Client ID).
// The zero value trusts no proxy and keys an IPv4 client by its address,
// an IPv6 client by its /64.
//
// A request whose immediate peer (Request.RemoteAddr) is inside one of
// TrustedProxies is keyed by the right-most address of its forwarding
// headers that is not itself a trusted proxy; any other request by its
// peer address, whatever headers it carries. When both headers are read
// and a request carries both, they must name the same client, or the
// request is keyed by its peer: that keeps a client from choosing its key
// with a header the proxy passes through untouched. Anything malformed on
// the part of the chain that matters also yields the peer.
type ClientIP struct {
	// TrustedProxies are the reverse proxies whose forwarding headers are
	// believed: CIDR prefixes ("10.0.0.0/8") or single addresses
	// ("192.0.2.1"). None: no header is believed.
	TrustedProxies []string
	// Headers are the forwarding headers read from trusted proxies, each
	// "X-Forwarded-For" or "Forwarded" (RFC 7239), in any case. If
	// Headers is empty, both. Name only the header your proxies set (and
	// overwrite or append to) if your clients may send the other one.
	Headers []string
	// IPv4Prefix is the prefix length an IPv4 client is keyed by: all
	// clients in one such prefix share a key. If IPv4Prefix is 0, 32 (the
	// address); otherwise 1 to 32.
	IPv4Prefix int
	// IPv6Prefix is the same for IPv6 clients. If IPv6Prefix is 0, 64: a
	// single host usually owns a whole /64, and could otherwise take a new
	// key for every request. Otherwise 1 to 128. With 32 and 128, a
	// client's address is its key as written (a peer address is not even
	// parsed).
	IPv6Prefix int
}

// isZero reports whether c is the zero ClientIP.
func (c *ClientIP) isZero() bool {
	return len(c.TrustedProxies) == 0 && len(c.Headers) == 0 && c.IPv4Prefix == 0 && c.IPv6Prefix == 0
}

// build checks c and returns its resolver; errors name the field after
// path ("RateLimitConfig.ClientIP").
func (c *ClientIP) build(path string) (*clientIP, error) {
	ip := &clientIP{useXFF: true, useFwd: true}
	for i, s := range c.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s.TrustedProxies[%d]: %w", path, i, err)
		}
		ip.trusted = append(ip.trusted, p)
	}
	if len(c.Headers) > 0 {
		ip.useXFF, ip.useFwd = false, false
	}
	for i, n := range c.Headers {
		switch {
		case strings.EqualFold(n, headerXForwardedFor):
			ip.useXFF = true
		case strings.EqualFold(n, headerForwarded):
			ip.useFwd = true
		default:
			return nil, fmt.Errorf("%s.Headers[%d]: %q is neither %s nor %s", path, i, n, headerXForwardedFor, headerForwarded)
		}
	}
	var err error
	if ip.prefixes, err = serverside.CheckPrefixes(c.IPv4Prefix, c.IPv6Prefix); err != nil {
		return nil, fmt.Errorf("%s.%w", path, err)
	}
	return ip, nil
}

// parsePrefix parses a trusted proxy: a CIDR prefix or one address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			// An IPv4-mapped prefix would never match: addresses
			// are unmapped before the check.
			return netip.Prefix{}, fmt.Errorf("CIDR %q: IPv4-mapped IPv6 prefixes are not supported; write the IPv4 prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: neither a prefix nor an address: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: zoned addresses are not supported", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// The forwarding headers ClientIP.Headers may name.
const (
	headerXForwardedFor = "X-Forwarded-For"
	headerForwarded     = "Forwarded"
)

// clientIP resolves the address a request is keyed by (see ClientIP): in
// short, forwarding headers count only from a trusted peer, are read right
// to left past trusted proxies, and anything doubtful yields the peer
// address.
type clientIP struct {
	trusted  []netip.Prefix
	useXFF   bool
	useFwd   bool
	prefixes serverside.Prefixes
}

// errNoPeer is the error of a request without a peer address.
var errNoPeer = fmt.Errorf("%w: the request has no peer address", ErrNoKey)

// key returns the key of r's client address. In the common cases (an
// IPv4 client) it is a substring of r.RemoteAddr or of a header, so it
// does not allocate.
func (c *clientIP) key(r *http.Request) (string, error) {
	peer := peerHost(r.RemoteAddr)
	if peer == "" {
		return "", errNoPeer
	}
	if len(c.trusted) == 0 {
		return c.peerKey(peer), nil
	}
	return c.resolve(peer, r.Header), nil
}

// peerKey returns the key of the peer address: as written with full
// prefixes, else its prefix (or as written, when it is not an address).
func (c *clientIP) peerKey(peer string) string {
	if c.prefixes.Full() || c.prefixes.V4 == 32 && strings.IndexByte(peer, ':') < 0 {
		// As written: net/http writes an IPv4 peer in canonical form
		// (and a peer without a colon is no IPv6 address).
		return peer
	}
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return peer
	}
	return c.prefixes.Key(peer, a)
}

// resolve returns the key of the client given the peer host and the
// request headers.
func (c *clientIP) resolve(peer string, h http.Header) string {
	pa, err := netip.ParseAddr(peer)
	if err != nil || !c.isTrusted(pa) {
		return c.peerKey(peer)
	}
	var (
		xffState, fwdState = absent, absent
		xffText, fwdText   string
		xffAddr, fwdAddr   netip.Addr
	)
	if c.useXFF {
		xffText, xffAddr, xffState = c.fromXFF(h[headerXForwardedFor])
	}
	if c.useFwd {
		fwdText, fwdAddr, fwdState = c.fromForwarded(h[headerForwarded])
	}
	switch {
	case xffState == bad || fwdState == bad:
		return c.peerKey(peer)
	case xffState == found && fwdState == found:
		if xffAddr.Unmap().WithZone("") != fwdAddr.Unmap().WithZone("") {
			// One of them was passed through from the client
			// untouched: believe neither.
			return c.peerKey(peer)
		}
		return c.prefixes.Key(xffText, xffAddr)
	case xffState == found:
		return c.prefixes.Key(xffText, xffAddr)
	case fwdState == found:
		return c.prefixes.Key(fwdText, fwdAddr)
	}
	return c.peerKey(peer)
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
