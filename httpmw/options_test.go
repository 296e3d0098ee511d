package httpmw

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/limiter"
)

func TestBadOptions(t *testing.T) {
	key := func(*http.Request) (string, error) { return "k", nil }
	for _, tc := range []struct {
		name string
		opts []Option
		want []string // substrings the error must contain
	}{
		{"zero option", []Option{{}}, []string{"option 0", "zero Option"}},
		{"bad CIDR", []Option{WithTrustedProxies("10.0.0.0/8", "10.0.0.0/33")}, []string{"WithTrustedProxies", `"10.0.0.0/33"`}},
		{"not an address", []Option{WithTrustedProxies("proxy.internal")}, []string{"WithTrustedProxies", `"proxy.internal"`}},
		{"empty CIDR", []Option{WithTrustedProxies("")}, []string{"WithTrustedProxies", `""`}},
		{"IPv4-mapped CIDR", []Option{WithTrustedProxies("::ffff:10.0.0.0/104")}, []string{`"::ffff:10.0.0.0/104"`, "IPv4-mapped"}},
		{"zoned address", []Option{WithTrustedProxies("fe80::1%eth0")}, []string{`"fe80::1%eth0"`, "zone"}},
		{"nil key func", []Option{WithKeyFunc(nil)}, []string{"WithKeyFunc", "nil"}},
		{"key func with trusted proxies", []Option{WithKeyFunc(key), WithTrustedProxies("10.0.0.0/8")}, []string{"WithTrustedProxies", "WithKeyFunc"}},
		{"key func with headers", []Option{WithClientIPHeaders(HeaderForwarded), WithKeyFunc(key)}, []string{"WithClientIPHeaders", "WithKeyFunc"}},
		{"unknown header", []Option{WithClientIPHeaders("X-Real-IP")}, []string{"WithClientIPHeaders", `"X-Real-IP"`}},
		{"no header", []Option{WithClientIPHeaders()}, []string{"WithClientIPHeaders", "no header"}},
		{"nil cost", []Option{WithCost(nil)}, []string{"WithCost", "nil"}},
		{"empty policy name", []Option{WithPolicyName("")}, []string{"WithPolicyName", "1 to 64 bytes"}},
		{"long policy name", []Option{WithPolicyName(strings.Repeat("p", 65))}, []string{"WithPolicyName", "got 65"}},
		{"control byte in policy name", []Option{WithPolicyName("a\nb")}, []string{"WithPolicyName", "printable ASCII"}},
		{"non-ASCII policy name", []Option{WithPolicyName("café")}, []string{"WithPolicyName", "printable ASCII"}},
		{"nil logger", []Option{WithLogger(nil)}, []string{"WithLogger", "nil"}},
		{"nil deny handler", []Option{WithDenyHandler(nil)}, []string{"WithDenyHandler", "nil"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mw, err := RateLimit(newLocal(t, limiter.PerSecond(1, 1), newManualClock()), tc.opts...)
			require.Error(t, err)
			assert.Nil(t, mw)
			assert.ErrorIs(t, err, ErrInvalidOption)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestNilBudget(t *testing.T) {
	mw, err := RateLimit(nil)
	assert.Nil(t, mw)
	assert.ErrorContains(t, err, "budget is nil")
}

func TestGoodOptions(t *testing.T) {
	c, err := buildConfig(forRateLimit, []Option{
		WithTrustedProxies("10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:198.51.100.1", "10.1.2.3/8"),
		WithClientIPHeaders("forwarded"),
		WithPolicyName(`a "quoted" \ name`),
	})
	require.NoError(t, err)
	want := []string{"10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "198.51.100.1/32", "10.0.0.0/8"}
	require.Len(t, c.trusted, len(want))
	for i, p := range c.trusted {
		assert.Equal(t, want[i], p.String())
	}
	assert.False(t, c.useXFF)
	assert.True(t, c.useFwd)
	assert.Equal(t, `"a \"quoted\" \\ name"`, sfString(c.policyName))
}
