package grpcmw

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"google.golang.org/grpc/peer"
)

// ErrNoPeer is returned by PeerIP when the context carries no peer address.
var ErrNoPeer = errors.New("grpcmw: no peer address in context")

// PeerIP is the default KeyFunc: the IP address of the client, from
// peer.FromContext, without its port, so that every connection from one host
// shares one bucket. For an IPv4-mapped IPv6 address it returns the IPv4 form
// ("192.0.2.1"); IPv6 addresses keep their zone ("fe80::1%eth0").
//
// For a peer whose address is not TCP or UDP (a Unix socket, an in-memory
// listener) it returns the address's network and string form
// ("unix:/run/app.sock"); all clients on such a listener usually share that
// one key. It fails with ErrNoPeer when the context has no peer address,
// which a grpc-go server always sets.
//
// PeerIP does not look at forwarding metadata (x-forwarded-for): behind a
// proxy, every call would share the proxy's bucket; supply a KeyFunc that
// trusts what your proxy sets.
func PeerIP(ctx context.Context, _ string) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", ErrNoPeer
	}
	switch a := p.Addr.(type) {
	case *net.TCPAddr:
		return ipString(a.IP, a.Zone)
	case *net.UDPAddr:
		return ipString(a.IP, a.Zone)
	}
	s := p.Addr.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), nil
	}
	if s == "" {
		return "", ErrNoPeer
	}
	return p.Addr.Network() + ":" + s, nil
}

func ipString(ip net.IP, zone string) (string, error) {
	if len(ip) == 0 {
		return "", ErrNoPeer
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String(), nil
	}
	if zone != "" {
		return ip.String() + "%" + zone, nil
	}
	return ip.String(), nil
}
