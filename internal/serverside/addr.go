package serverside

import (
	"fmt"
	"net/netip"
)

// The default prefix lengths by which client addresses are keyed: an IPv4
// client by its address, an IPv6 client by its /64 (the subnet a single
// host or home usually gets, which holds more addresses than any limit
// could track one by one).
const (
	DefaultIPv4Prefix = 32
	DefaultIPv6Prefix = 64
)

// Prefixes are the prefix lengths by which client addresses are keyed.
type Prefixes struct {
	V4, V6 int
}

// CheckPrefixes applies the defaults to p (a 0 length is its default)
// and checks the lengths; an error names the field as
// "IPv4Prefix"/"IPv6Prefix".
func CheckPrefixes(v4, v6 int) (Prefixes, error) {
	p := Prefixes{V4: v4, V6: v6}
	if p.V4 == 0 {
		p.V4 = DefaultIPv4Prefix
	}
	if p.V6 == 0 {
		p.V6 = DefaultIPv6Prefix
	}
	if p.V4 < 1 || p.V4 > 32 {
		return p, fmt.Errorf("IPv4Prefix must be 0 (32) or 1 to 32, got %d", v4)
	}
	if p.V6 < 1 || p.V6 > 128 {
		return p, fmt.Errorf("IPv6Prefix must be 0 (64) or 1 to 128, got %d", v6)
	}
	return p, nil
}

// Full reports whether p keys every address by itself (32 and 128).
func (p Prefixes) Full() bool { return p.V4 == 32 && p.V6 == 128 }

// Key returns the key of client address a, which was written as text
// ("" if unknown): an IPv4-mapped address counts as IPv4 and a zone is
// dropped; then, when the family's prefix is its full length, the
// address in canonical form (text itself when it already is, so that the
// common case allocates nothing), else the masked prefix with its length,
// such as "2001:db8:cafe:17::/64".
func (p Prefixes) Key(text string, a netip.Addr) string {
	a = a.Unmap().WithZone("")
	bits := p.V6
	if a.Is4() {
		bits = p.V4
	}
	var buf [64]byte
	if bits < a.BitLen() {
		return string(netip.PrefixFrom(a, bits).Masked().AppendTo(buf[:0]))
	}
	b := a.AppendTo(buf[:0])
	if string(b) == text {
		return text
	}
	return string(b)
}
