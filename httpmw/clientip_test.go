package httpmw

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/limiter"
)

// newClientIP builds the default key function's resolver from c, as
// RateLimit does.
func newClientIP(t testing.TB, c ClientIP) *clientIP {
	t.Helper()
	ip, err := c.build("ClientIP")
	require.NoError(t, err)
	return ip
}

// trusting returns a ClientIP trusting proxies that keys every address by
// itself (IPv6Prefix 128), as the resolver did before prefixes: the tests
// of the header rules compare whole addresses.
func trusting(proxies ...string) ClientIP {
	return ClientIP{TrustedProxies: proxies, IPv6Prefix: 128}
}

func keyOf(t *testing.T, c *clientIP, remote string, xff, fwd []string) string {
	t.Helper()
	r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
	if xff != nil {
		r.Header["X-Forwarded-For"] = xff
	}
	if fwd != nil {
		r.Header["Forwarded"] = fwd
	}
	k, err := c.key(r)
	require.NoError(t, err)
	return k
}

const (
	proxy    = "10.0.0.1:5555"       // a trusted proxy (10.0.0.0/8)
	proxy6   = "[2001:db8:ff::1]:80" // a trusted IPv6 proxy (2001:db8:ff::/48)
	stranger = "198.51.100.9:40000"  // an untrusted peer
	client   = "203.0.113.7"
)

func TestClientIPPeer(t *testing.T) {
	c := newClientIP(t, ClientIP{IPv6Prefix: 128})
	for remote, want := range map[string]string{
		"203.0.113.7:1234":       "203.0.113.7",
		"[2001:db8::7]:1234":     "2001:db8::7",
		"[fe80::1%eth0]:1234":    "fe80::1%eth0",
		"203.0.113.7":            "203.0.113.7", // no port
		"2001:db8::7":            "2001:db8::7", // bare IPv6, no port
		"@":                      "@",           // unix socket peers
		"/run/app.sock":          "/run/app.sock",
		"[2001:db8::7":           "[2001:db8::7", // malformed: used whole
		"[::ffff:10.0.0.1]:8080": "::ffff:10.0.0.1",
	} {
		assert.Equal(t, want, keyOf(t, c, remote, []string{"1.1.1.1"}, []string{"for=1.1.1.1"}), "RemoteAddr %q", remote)
	}

	_, err := c.key(&http.Request{RemoteAddr: ""})
	assert.ErrorIs(t, err, ErrNoKey)
}

func TestClientIPXForwardedFor(t *testing.T) {
	c := newClientIP(t, trusting("10.0.0.0/8", "2001:db8:ff::/48", "192.0.2.1"))
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer ignores the header", stranger, []string{client}, "198.51.100.9"},
		{"untrusted peer cannot spoof a trusted chain", stranger, []string{client + ", 10.0.0.5"}, "198.51.100.9"},
		{"trusted peer", proxy, []string{client}, client},
		{"trusted IPv6 peer", proxy6, []string{client}, client},
		{"trusted single-address proxy", "192.0.2.1:1", []string{client}, client},
		{"IPv4-mapped trusted peer", "[::ffff:10.0.0.1]:80", []string{client}, client},
		{"spoofed entries left of the client are ignored", proxy, []string{"1.2.3.4, 5.6.7.8, " + client}, client},
		{"trusted hops are skipped", proxy, []string{"1.2.3.4, " + client + ", 10.0.0.5, 192.0.2.1"}, client},
		{"all hops trusted: the left-most", proxy, []string{"10.0.0.9, 10.0.0.5"}, "10.0.0.9"},
		{"several field lines", proxy, []string{"1.2.3.4", client + ",10.0.0.5", "10.0.0.6"}, client},
		{"client spoofs a trusted hop on its own line", proxy, []string{"10.0.0.7", client}, client},
		{"whitespace and empty elements", proxy, []string{" ,\t" + client + " , ,"}, client},
		{"port", proxy, []string{client + ":8080"}, client},
		{"IPv6", proxy, []string{"2001:db8::7"}, "2001:db8::7"},
		{"IPv6 bracketed with port", proxy, []string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{"IPv6 bracketed without port", proxy, []string{"[2001:db8::7]"}, "2001:db8::7"},
		{"IPv6 is canonicalized", proxy, []string{"2001:DB8:0:0::7"}, "2001:db8::7"},
		{"IPv4-mapped is unmapped", proxy, []string{"::ffff:" + client}, client},
		{"zone is dropped", proxy, []string{"fe80::1%eth0"}, "fe80::1"},
		{"trusted IPv6 hop skipped", proxy, []string{client + ", 2001:db8:ff::9"}, client},
		{"malformed right-most element: peer", proxy, []string{"1.2.3.4, nonsense"}, "10.0.0.1"},
		{"unknown: peer", proxy, []string{"unknown"}, "10.0.0.1"},
		{"malformed port: peer", proxy, []string{client + ":http"}, "10.0.0.1"},
		{"port too long: peer", proxy, []string{client + ":123456"}, "10.0.0.1"},
		{"unterminated bracket: peer", proxy, []string{"[2001:db8::7"}, "10.0.0.1"},
		{"garbage after bracket: peer", proxy, []string{"[2001:db8::7]x"}, "10.0.0.1"},
		{"leading zeros: peer", proxy, []string{"203.000.113.7"}, "10.0.0.1"},
		{"malformed left of the client is not looked at", proxy, []string{"<script>, " + client}, client},
		{"empty header: peer", proxy, []string{""}, "10.0.0.1"},
		{"no header: peer", proxy, nil, "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, keyOf(t, c, tc.remote, tc.xff, nil))
		})
	}
}

func TestClientIPForwarded(t *testing.T) {
	c := newClientIP(t, trusting("10.0.0.0/8", "2001:db8:ff::/48"))
	for _, tc := range []struct {
		name   string
		remote string
		fwd    []string
		want   string
	}{
		{"untrusted peer ignores the header", stranger, []string{"for=" + client}, "198.51.100.9"},
		{"token", proxy, []string{"for=" + client}, client},
		{"quoted", proxy, []string{`for="` + client + `"`}, client},
		{"quoted with port", proxy, []string{`for="` + client + `:47011"`}, client},
		{"IPv6 with port", proxy, []string{`for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"IPv6 obfuscated port", proxy, []string{`for="[2001:db8::7]:_p0rt"`}, "2001:db8::7"},
		{"IPv6 canonicalized", proxy, []string{`for="[2001:DB8::0:7]"`}, "2001:db8::7"},
		{"other parameters, any case, whitespace", proxy, []string{`proto=https; For=` + client + ` ;by=10.0.0.1;host="example.com"`}, client},
		{"empty pairs", proxy, []string{"for=" + client + ";;proto=http"}, client},
		{"spoofed element left of the client", proxy, []string{"for=1.2.3.4, for=" + client}, client},
		{"trusted hops skipped", proxy, []string{"for=1.2.3.4, for=" + client + `, for="[2001:db8:ff::2]", for=10.0.0.5`}, client},
		{"all hops trusted: the left-most", proxy, []string{"for=10.0.0.9,for=10.0.0.5"}, "10.0.0.9"},
		{"several field lines", proxy, []string{"for=1.2.3.4", "for=" + client, "for=10.0.0.5"}, client},
		{"comma inside a quoted string on the left", proxy, []string{`for="a,b", for=` + client}, client},
		{"unterminated quote left of an appended element", proxy, []string{`for="1.2.3.4, for=` + client}, client},
		{"malformed left of the client is not looked at", proxy, []string{`for=="x";;;=, for=` + client}, client},
		{"unknown: peer", proxy, []string{"for=unknown"}, "10.0.0.1"},
		{"obfuscated node: peer", proxy, []string{"for=_hidden"}, "10.0.0.1"},
		{"quoted obfuscated node with port: peer", proxy, []string{`for="_gazonk:_p"`}, "10.0.0.1"},
		{"obfuscated node behind a trusted hop: peer", proxy, []string{"for=_hidden, for=10.0.0.5"}, "10.0.0.1"},
		{"unquoted IPv6 is malformed: peer", proxy, []string{"for=2001:db8::7"}, "10.0.0.1"},
		{"unquoted port is malformed: peer", proxy, []string{"for=" + client + ":80"}, "10.0.0.1"},
		{"IPv6 without brackets: peer", proxy, []string{`for="2001:db8::7"`}, "10.0.0.1"},
		{"IPv4 in brackets: peer", proxy, []string{`for="[` + client + `]"`}, "10.0.0.1"},
		{"unterminated quote: peer", proxy, []string{`for="` + client}, "10.0.0.1"},
		{"quoted-pair: peer", proxy, []string{`for="\` + client + `"`}, "10.0.0.1"},
		{"duplicate for: peer", proxy, []string{"for=1.2.3.4;for=" + client}, "10.0.0.1"},
		{"element without for: peer", proxy, []string{"for=1.2.3.4, proto=https"}, "10.0.0.1"},
		{"space around '=': peer", proxy, []string{"for = " + client}, "10.0.0.1"},
		{"bad port: peer", proxy, []string{`for="` + client + `:99999x"`}, "10.0.0.1"},
		{"bad obfuscated port: peer", proxy, []string{`for="` + client + `:_"`}, "10.0.0.1"},
		{"control byte in quotes: peer", proxy, []string{"for=\"" + client + "\x01\""}, "10.0.0.1"},
		{"junk after the value: peer", proxy, []string{"for=" + client + " proto=http"}, "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, keyOf(t, c, tc.remote, nil, tc.fwd))
		})
	}
}

func TestClientIPBothHeaders(t *testing.T) {
	both := newClientIP(t, trusting("10.0.0.0/8"))
	onlyXFF := newClientIP(t, ClientIP{TrustedProxies: []string{"10.0.0.0/8"}, Headers: []string{"x-forwarded-for"}, IPv6Prefix: 128})
	onlyFwd := newClientIP(t, ClientIP{TrustedProxies: []string{"10.0.0.0/8"}, Headers: []string{headerForwarded}, IPv6Prefix: 128})
	for _, tc := range []struct {
		name                    string
		xff, fwd                []string
		wantBoth, wantXFF, fwd2 string
	}{
		{"agree", []string{client}, []string{"for=" + client}, client, client, client},
		{"agree across spellings", []string{"::ffff:" + client}, []string{`for="` + client + `:1"`}, client, client, client},
		// The proxy appends to X-Forwarded-For and passes the client's
		// Forwarded through: the two disagree, and neither is believed.
		{"disagree", []string{client}, []string{"for=192.0.2.66"}, "10.0.0.1", client, "192.0.2.66"},
		{"one malformed", []string{client}, []string{"for=unknown"}, "10.0.0.1", client, "10.0.0.1"},
		{"only one present", nil, []string{"for=" + client}, client, "10.0.0.1", client},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.wantBoth, keyOf(t, both, proxy, tc.xff, tc.fwd), "both headers")
			assert.Equal(t, tc.wantXFF, keyOf(t, onlyXFF, proxy, tc.xff, tc.fwd), "X-Forwarded-For only")
			assert.Equal(t, tc.fwd2, keyOf(t, onlyFwd, proxy, tc.xff, tc.fwd), "Forwarded only")
		})
	}
}

// TestTrustedProxiesEndToEnd drives real requests through an httptest
// server, whose peer address is always 127.0.0.1, and observes which bucket
// each one drew from in the RateLimit field.
func TestTrustedProxiesEndToEnd(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	t.Run("trusted", func(t *testing.T) {
		b := newLocal(t, limiter.PerSecond(1, 5), newManualClock())
		srv := serve(t, &okHandler{}, RateLimitConfig{ClientIP: trusting("127.0.0.0/8", "::1/128")}, Policy{Budget: b})
		assert.Equal(t, `"default";r=4;t=1`, get(t, srv, xff("203.0.113.1")).rateLimit)
		assert.Equal(t, `"default";r=4;t=1`, get(t, srv, xff("203.0.113.2")).rateLimit, "another client, another bucket")
		assert.Equal(t, `"default";r=3;t=2`, get(t, srv, xff("198.51.100.1, 203.0.113.1")).rateLimit, "spoofed prefix ignored")
		assert.Equal(t, `"default";r=4;t=1`, get(t, srv, nil).rateLimit, "no header: the peer's bucket")
		assert.Equal(t, `"default";r=3;t=2`, get(t, srv, xff("nonsense")).rateLimit, "malformed: the peer's bucket")
	})
	t.Run("untrusted", func(t *testing.T) {
		b := newLocal(t, limiter.PerSecond(1, 5), newManualClock())
		srv := serve(t, &okHandler{}, RateLimitConfig{ClientIP: trusting("10.0.0.0/8")}, Policy{Budget: b})
		assert.Equal(t, `"default";r=4;t=1`, get(t, srv, xff("203.0.113.1")).rateLimit)
		assert.Equal(t, `"default";r=3;t=2`, get(t, srv, xff("203.0.113.2")).rateLimit, "spoofing does not buy a new bucket")
		assert.Equal(t, `"default";r=2;t=3`, get(t, srv, http.Header{"Forwarded": {"for=203.0.113.3"}}).rateLimit)
	})
}

func TestPeerHost(t *testing.T) {
	for in, want := range map[string]string{
		"":              "",
		"1.2.3.4:5":     "1.2.3.4",
		"[::1]:5":       "::1",
		"[]:5":          "[]:5",
		":5":            ":5",
		"host":          "host",
		"a:b:c":         "a:b:c",
		"[::1":          "[::1",
		"1.2.3.4:":      "1.2.3.4",
		"[fe80::1%x]:1": "fe80::1%x",
	} {
		assert.Equal(t, want, peerHost(in), "peerHost(%q)", in)
	}
}

// addrsIn returns every address that appears in s, the oracle of
// FuzzClientIP: each maximal run of address-like bytes that parses as an
// address, with or without a trailing ":port", unmapped and without zone.
func addrsIn(s string) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	// Runs end at the separators of the two headers' syntax; anything
	// else may be part of an address (a zone holds any byte but those).
	runs := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(",;\"=[] \t\n", r) })
	for _, run := range runs {
		for _, cand := range []string{run, run[:max(0, strings.LastIndexByte(run, ':'))]} {
			if a, err := netip.ParseAddr(cand); err == nil {
				out[a.Unmap().WithZone("")] = true
			}
		}
	}
	return out
}

// FuzzClientIP feeds arbitrary forwarding headers from trusted and
// untrusted peers to the default key function and checks that it never
// panics, that untrusted peers are always keyed by their own address, and
// that every key is the peer or an address the headers contain.
func FuzzClientIP(f *testing.F) {
	for _, seed := range []struct{ remote, xff, fwd string }{
		{proxy, client, ""},
		{proxy, "1.2.3.4, " + client + ", 10.0.0.5", ""},
		{proxy, "[2001:db8::7]:443", `for="[2001:db8::7]:443"`},
		{proxy, "", `for=1.2.3.4, for="` + client + `:80";proto=https, for=10.0.0.5`},
		{proxy, "", `for="a,b", for=_hidden`},
		{proxy, "::ffff:1.2.3.4", `for="\"`},
		{proxy6, "fe80::1%eth0", "For=unknown;by=10.0.0.1"},
		{stranger, client, "for=" + client},
		{"[::ffff:10.0.0.1]:1", client + ":80", `for="[::1]"`},
	} {
		f.Add(seed.remote, seed.xff, seed.fwd)
	}
	cs := []*clientIP{
		newClientIP(f, trusting("10.0.0.0/8", "2001:db8:ff::/48", "1.2.3.4")),
		newClientIP(f, trusting("0.0.0.0/0", "::/0")),
		newClientIP(f, ClientIP{TrustedProxies: []string{"10.0.0.0/8"}, Headers: []string{headerForwarded}, IPv6Prefix: 128}),
	}
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{
			"X-Forwarded-For": strings.Split(xff, "\n"),
			"Forwarded":       strings.Split(fwd, "\n"),
		}}
		peer := peerHost(remote)
		pa, perr := netip.ParseAddr(peer)
		for _, c := range cs {
			key, err := c.key(r)
			// The same resolver with the default prefixes keys the same
			// client by its prefix: an IPv6 client by its /64.
			byPrefix := *c
			byPrefix.prefixes = serverside.Prefixes{V4: 32, V6: 64}
			if pkey, perr2 := byPrefix.key(r); err == nil && perr2 == nil {
				want := key
				if a, err := netip.ParseAddr(key); err == nil {
					want = byPrefix.prefixes.Key("", a)
				}
				if pkey != want {
					t.Fatalf("keyed %q by address but %q by prefix, want %q", key, pkey, want)
				}
			}
			if peer == "" {
				if err == nil {
					t.Fatalf("empty peer: got key %q and no error", key)
				}
				continue
			}
			if err != nil {
				t.Fatalf("key(%q, %q, %q): %v", remote, xff, fwd, err)
			}
			if key == peer {
				continue
			}
			if perr != nil || !c.isTrusted(pa) {
				t.Fatalf("untrusted peer %q keyed as %q", remote, key)
			}
			a, err := netip.ParseAddr(key)
			if err != nil {
				t.Fatalf("key %q is neither the peer %q nor an address", key, peer)
			}
			if a != a.Unmap().WithZone("") || a.String() != key {
				t.Fatalf("key %q is not canonical", key)
			}
			if !addrsIn(xff + "\n" + fwd)[a] {
				t.Fatalf("key %q does not appear in the headers %q / %q", key, xff, fwd)
			}
		}
	})
}
