package grpcmw

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"google.golang.org/grpc/peer"

	"github.com/herdcap/herdcap/internal/serverside"
)

// ErrNoPeer is returned by PeerIP when the context carries no peer
// address. It wraps ErrNoKey: the call ends with codes.InvalidArgument.
var ErrNoPeer = fmt.Errorf("%w: no peer address in context", ErrNoKey)

// peerPrefixes are the prefixes PeerIP keys by, as httpmw's default.
var peerPrefixes = serverside.Prefixes{V4: serverside.DefaultIPv4Prefix, V6: serverside.DefaultIPv6Prefix}

// PeerIP is the default key: the client's address from peer.FromContext,
// without its port, so that every connection from one host shares one
// bucket. An IPv4 client is keyed by its address ("192.0.2.1", an
// IPv4-mapped IPv6 address in its IPv4 form); an IPv6 client by its /64,
// the subnet a single host or home usually gets ("2001:db8:cafe:17::/64",
// without a zone), as package httpmw does by default.
//
// For a peer whose address is not TCP or UDP (a Unix socket, an in-memory
// listener) it returns the address's network and string form
// ("unix:/run/app.sock"); all clients on such a listener usually share
// that one key. It fails with ErrNoPeer when the context has no peer
// address, which a grpc-go server always sets.
//
// PeerIP does not look at forwarding metadata (x-forwarded-for): behind a
// proxy, every call would share the proxy's bucket; supply a Key that
// trusts what your proxy sets.
func PeerIP(ctx context.Context, _ string) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", ErrNoPeer
	}
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		return ipKey(a.IP)
	case *net.UDPAddr:
		return ipKey(a.IP)
	}
	s := p.Addr.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return peerPrefixes.Key("", ap.Addr()), nil
	}
	if s == "" {
		return "", ErrNoPeer
	}
	return p.Addr.Network() + ":" + s, nil
}

// ipKey returns the key of ip.
func ipKey(ip net.IP) (string, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "", ErrNoPeer
	}
	return peerPrefixes.Key("", a), nil
}
