package httpmw

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
)

// The RateLimit-Policy and RateLimit fields follow draft-ietf-httpapi-
// ratelimit-headers-11 ("RateLimit header fields for HTTP", May 2026),
// sections 3 and 4. Both are structured-field Lists (RFC 9651) of one Item
// whose value is the policy name as a String:
//
//	RateLimit-Policy: "default";q=10;w=2
//	RateLimit: "default";r=7;t=1
//
// A token bucket maps onto them as follows.
//
//   - q (quota, section 3.1.1) is the burst: the most a client may spend at
//     once.
//   - w (window, section 3.1.3) is the time the bucket takes to refill
//     from empty to full, burst / rate, rounded up to whole seconds (the
//     draft allows no sub-second precision) and at least 1. Rounding up
//     keeps q/w at or below the sustained rate, so a client that paces
//     itself by the policy is never throttled by it.
//   - r (available quota, section 4.1.1) is Decision.Remaining, the whole
//     tokens left after this request.
//   - t (effective window, section 4.1.2) is, on an allowed response, the
//     time until the bucket is full again (Decision.ResetAfter), rounded up:
//     a conservative window, since the bucket keeps refilling within it. On
//     a 429 it is the Retry-After value, so that Retry-After never points
//     earlier than the end of the effective window (section 6).
//
// The fields use the canonical header keys "Ratelimit-Policy" and
// "Ratelimit" (header names are case-insensitive).
const (
	headerPolicy     = "Ratelimit-Policy"
	headerRateLimit  = "Ratelimit"
	headerRetryAfter = "Retry-After"
)

// maxSFInteger is the largest Integer a structured field can carry (RFC
// 9651 section 3.3.1: at most 15 digits).
const maxSFInteger = wire.MaxSFInteger

// sfString serializes s (printable ASCII, checked by WithPolicyName) as a
// structured-field String.
func sfString(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}

// ceilSeconds returns d in whole seconds, rounded up, capped at
// maxSFInteger; a negative d gives 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return min(s, maxSFInteger)
}

// clampSF clamps n to the range of a non-negative structured-field Integer.
func clampSF(n int) int64 {
	return max(0, min(int64(n), maxSFInteger))
}

// policyWindow returns the w parameter for l, or false when l cannot be
// described (a Budget that reports no limit).
func policyWindow(l limiter.Limit) (int64, bool) {
	ps := l.PerSecond()
	if l.Burst < 1 || !(ps > 0) || math.IsInf(ps, 0) {
		return 0, false
	}
	w := math.Ceil(float64(l.Burst) / ps)
	if w < 1 {
		w = 1
	}
	if w >= maxSFInteger {
		return maxSFInteger, true
	}
	return int64(w), true
}

// policyField caches the RateLimit-Policy value of the last limit seen, so
// that responses share one precomputed value slice while the limit holds
// still (it changes only during a SetLimit ramp).
type policyField struct {
	name string // serialized policy name, quotes included
	last atomic.Pointer[policyValue]
}

type policyValue struct {
	limit limiter.Limit
	value []string // len 1, cap 1, shared by responses: never modified
}

// get returns the field value for l, or nil when l cannot be described.
func (p *policyField) get(l limiter.Limit) []string {
	if v := p.last.Load(); v != nil && v.limit == l {
		return v.value
	}
	w, ok := policyWindow(l)
	if !ok {
		return nil
	}
	b := make([]byte, 0, len(p.name)+40)
	b = append(b, p.name...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, clampSF(l.Burst), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, w, 10)
	v := &policyValue{limit: l, value: []string{string(b)}}
	p.last.Store(v)
	return v.value
}

// rateLimitField returns the RateLimit field value, ready to assign to a
// header map: prefix (the serialized name followed by ";r=") then remaining,
// ";t=" and window. It makes one allocation, holding both the one-element
// slice and the bytes of its string.
func rateLimitField(prefix string, remaining int, window int64) []string {
	f := new(rateLimitBuf)
	b := append(f.b[:0], prefix...) // moves to the heap only for long names
	b = strconv.AppendInt(b, clampSF(remaining), 10)
	b = append(b, ";t="...)
	b = strconv.AppendInt(b, window, 10)
	// Like strings.Builder, view the bytes as a string without copying:
	// nothing writes to them after this point.
	f.v[0] = unsafe.String(unsafe.SliceData(b), len(b))
	return f.v[:]
}

// rateLimitBuf backs one RateLimit field value. 48 bytes fit the default
// policy name with a 15-digit r and t.
type rateLimitBuf struct {
	v [1]string
	b [48]byte
}

// retryAfterValues holds precomputed Retry-After values for the common
// short waits, so that denials under a flood allocate nothing for it.
var retryAfterValues = func() (v [121][]string) {
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

// retryAfter returns the Retry-After value for a wait of d: delay-seconds
// rounded up, and at least 1, since a denial must never say "retry now".
func retryAfter(d time.Duration) (int64, []string) {
	s := max(ceilSeconds(d), 1)
	if s < int64(len(retryAfterValues)) {
		return s, retryAfterValues[s]
	}
	return s, []string{strconv.FormatInt(s, 10)}
}
