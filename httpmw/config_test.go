package httpmw

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/limiter"
)

func TestBadConfig(t *testing.T) {
	key := func(*http.Request) (string, error) { return "k", nil }
	b := newLocal(t, limiter.PerSecond(1, 1), newManualClock())
	ok := Policy{Budget: b}
	for _, tc := range []struct {
		name     string
		cfg      RateLimitConfig
		policies []Policy
		want     []string // substrings the error must contain
	}{
		{"no policy", RateLimitConfig{}, nil, []string{"no Policy"}},
		{"bad CIDR", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"10.0.0.0/8", "10.0.0.0/33"}}}, []Policy{ok},
			[]string{"RateLimitConfig.ClientIP.TrustedProxies[1]", `"10.0.0.0/33"`}},
		{"not an address", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"proxy.internal"}}}, []Policy{ok},
			[]string{"TrustedProxies[0]", `"proxy.internal"`}},
		{"empty CIDR", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{""}}}, []Policy{ok}, []string{"TrustedProxies[0]", `""`}},
		{"IPv4-mapped CIDR", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"::ffff:10.0.0.0/104"}}}, []Policy{ok},
			[]string{`"::ffff:10.0.0.0/104"`, "IPv4-mapped"}},
		{"zoned address", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"fe80::1%eth0"}}}, []Policy{ok},
			[]string{`"fe80::1%eth0"`, "zone"}},
		{"key func with trusted proxies", RateLimitConfig{ClientIP: ClientIP{TrustedProxies: []string{"10.0.0.0/8"}}},
			[]Policy{{Budget: b, Key: key}}, []string{"RateLimitConfig.ClientIP", "every Policy has its own Key"}},
		{"key func with headers", RateLimitConfig{ClientIP: ClientIP{Headers: []string{headerForwarded}}},
			[]Policy{{Budget: b, Key: key}}, []string{"RateLimitConfig.ClientIP", "Key"}},
		{"unknown header", RateLimitConfig{ClientIP: ClientIP{Headers: []string{"X-Real-IP"}}}, []Policy{ok},
			[]string{"RateLimitConfig.ClientIP.Headers[0]", `"X-Real-IP"`}},
		{"IPv4 prefix too long", RateLimitConfig{ClientIP: ClientIP{IPv4Prefix: 33}}, []Policy{ok},
			[]string{"RateLimitConfig.ClientIP.IPv4Prefix", "got 33"}},
		{"negative IPv6 prefix", RateLimitConfig{ClientIP: ClientIP{IPv6Prefix: -1}}, []Policy{ok},
			[]string{"RateLimitConfig.ClientIP.IPv6Prefix", "got -1"}},
		{"nil budget", RateLimitConfig{}, []Policy{ok, {Name: "b"}}, []string{"Policy[1].Budget is nil"}},
		{"typed nil budget", RateLimitConfig{}, []Policy{{Budget: (*limiter.Local)(nil)}}, []string{"Policy[0].Budget is nil"}},
		{"duplicate name (\"\" is \"default\")", RateLimitConfig{}, []Policy{ok, {Name: "default", Budget: b}}, []string{"Policy[1].Name", "unique"}},
		{"long policy name", RateLimitConfig{}, []Policy{{Name: strings.Repeat("p", 65), Budget: b}}, []string{"Policy[0].Name", "got 65"}},
		{"control byte in policy name", RateLimitConfig{}, []Policy{{Name: "a\nb", Budget: b}}, []string{"Policy[0].Name", "printable ASCII"}},
		{"non-ASCII policy name", RateLimitConfig{}, []Policy{{Name: "café", Budget: b}}, []string{"Policy[0].Name", "printable ASCII"}},
		{"negative unavailable wait", RateLimitConfig{UnavailableRetryAfter: -time.Second}, []Policy{ok},
			[]string{"httpmw: invalid config: RateLimitConfig.UnavailableRetryAfter must be >= 0 (0 means 1s), got -1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw, err := RateLimit(tc.cfg, tc.policies...)
			require.Error(t, err)
			assert.Nil(t, mw)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.True(t, strings.HasPrefix(err.Error(), "httpmw: invalid config: "), err.Error())
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNilBudget(t *testing.T) {
	mw, err := RateLimit(RateLimitConfig{}, Policy{})
	assert.Nil(t, mw)
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "Policy[0].Budget is nil")
}

func TestGoodConfig(t *testing.T) {
	ip, err := (&ClientIP{
		TrustedProxies: []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:198.51.100.1", "10.1.2.3/8"},
		Headers:        []string{"forwarded"},
	}).build("ClientIP")
	require.NoError(t, err)
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "198.51.100.1/32", "10.0.0.0/8"}
	require.Len(t, ip.trusted, len(want))
	for i, p := range ip.trusted {
		assert.Equal(t, want[i], p.String())
	}
	assert.False(t, ip.useXFF)
	assert.True(t, ip.useFwd)
	assert.Equal(t, serverside.Prefixes{V4: 32, V6: 64}, ip.prefixes)
	assert.Equal(t, `"a \"quoted\" \\ name"`, sfString(`a "quoted" \ name`))
	assert.True(t, errors.Is(errNoPeer, ErrNoKey))
}
