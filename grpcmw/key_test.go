package grpcmw

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/peer"
)

// fakeAddr is a net.Addr of a network PeerIP does not know.
type fakeAddr struct{ network, s string }

func (a fakeAddr) Network() string { return a.network }
func (a fakeAddr) String() string  { return a.s }

func TestPeerIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr net.Addr
		want string
	}{
		{"tcp4", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}, "192.0.2.1"},
		{"tcp4 as 4 bytes", &net.TCPAddr{IP: net.IP{10, 0, 0, 1}, Port: 1}, "10.0.0.1"},
		// IPv6 by /64 since issue 10 (it was the whole address, with
		// its zone): one host usually owns the /64.
		{"tcp6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, "2001:db8::/64"},
		{"tcp6 same /64", &net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:1"), Port: 443}, "2001:db8::/64"},
		{"tcp6 other /64", &net.TCPAddr{IP: net.ParseIP("2001:db8:0:1::1"), Port: 443}, "2001:db8:0:1::/64"},
		{"tcp6 zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth0"}, "fe80::/64"},
		{"v4-mapped v6", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.9"), Port: 1}, "192.0.2.9"},
		{"udp", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 3), Port: 53}, "192.0.2.3"},
		{"other network with ip:port", fakeAddr{"quic", "[2001:db8::2]:443"}, "2001:db8::/64"},
		{"other network mapped", fakeAddr{"quic", "[::ffff:192.0.2.4]:443"}, "192.0.2.4"},
		{"unix", &net.UnixAddr{Name: "/run/app.sock", Net: "unix"}, "unix:/run/app.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeerIP(peer.NewContext(context.Background(), &peer.Peer{Addr: tc.addr}), checkMethod)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestPeerIPErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"no peer", context.Background()},
		{"nil addr", peer.NewContext(context.Background(), &peer.Peer{})},
		{"empty tcp ip", peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{Port: 1}})},
		{"empty address string", peer.NewContext(context.Background(), &peer.Peer{Addr: fakeAddr{"unix", ""}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PeerIP(tc.ctx, checkMethod)
			assert.ErrorIs(t, err, ErrNoPeer)
			assert.Empty(t, got)
		})
	}
}
