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

// defaultPrefixes are the prefixes PeerIP keys by, as httpmw's default.
var defaultPrefixes = serverside.Prefixes{V4: serverside.DefaultIPv4Prefix, V6: serverside.DefaultIPv6Prefix}

// PeerIP is the default key: the client's address from peer.FromContext,
// without its port, so that every connection from one host shares one
// bucket. An IPv4 client is keyed by its address ("192.0.2.1", an
// IPv4-mapped IPv6 address in its IPv4 form); an IPv6 client by its /64,
// the subnet a single host or home usually gets ("2001:db8:cafe:17::/64",
// without a zone), as package httpmw does by default. The interceptors'
// default key is PeerIP by the prefixes of their config's IPv4Prefix and
// IPv6Prefix fields.
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
func PeerIP(ctx context.Context, _ string) (string, error) { return peerIP(ctx, defaultPrefixes) }

// peerIP is PeerIP keying by the prefixes pre.
func peerIP(ctx context.Context, pre serverside.Prefixes) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", ErrNoPeer
	}
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		return ipKey(a.IP, pre)
	case *net.UDPAddr:
		return ipKey(a.IP, pre)
	}
	s := p.Addr.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return pre.Key("", ap.Addr()), nil
	}
	if s == "" {
		return "", ErrNoPeer
	}
	return p.Addr.Network() + ":" + s, nil
}

// ipKey returns the key of ip by the prefixes pre.
func ipKey(ip net.IP, pre serverside.Prefixes) (string, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return "", ErrNoPeer
	}
	return pre.Key("", a), nil
}
