package httpmw

import (
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/herdcap/herdcap/internal/serverside"
	"github.com/herdcap/herdcap/internal/wire"
	"github.com/herdcap/herdcap/limiter"
)

// Header field names, in the canonical form net/http uses as map keys
// (header names are case-insensitive). The herdcap fields and the mapping
// of a token bucket onto the IETF fields are documented in doc.go.
const (
	headerPolicy     = "Ratelimit-Policy"
	headerRateLimit  = "Ratelimit"
	headerRetryAfter = "Retry-After"

	headerLegacyLimit     = "X-Ratelimit-Limit"
	headerLegacyRemaining = "X-Ratelimit-Remaining"
	headerLegacyReset     = "X-Ratelimit-Reset"

	headerClient           = "Herdcap-Client"
	headerEpoch            = "Herdcap-Epoch"
	headerInvalidate       = "Herdcap-Invalidate"
	headerTicket           = "Herdcap-Ticket"
	headerRetryAfterMillis = "Herdcap-Retry-After-Ms"
)

// maxClientIDLen is the longest Herdcap-Client value accepted, in bytes:
// the one bound of client IDs, admission.MaxClientIDLen, which
// wire.MaxClientIDLen is.
const maxClientIDLen = wire.MaxClientIDLen

// maxSFInteger is the largest Integer a structured field can carry (RFC
// 9651 section 3.3.1: at most 15 digits).
const maxSFInteger = wire.MaxSFInteger

// sfString serializes s (printable ASCII, checked by
// serverside.CheckPolicyName) as a structured-field String.
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

// policyField caches one policy's RateLimit-Policy member for the last
// limit seen, so that responses share one precomputed string while the
// limit holds still (it changes during a ramp, or per request with a
// Limit function).
type policyField struct {
	name string // serialized policy name, quotes included
	last atomic.Pointer[policyValue]
}

type policyValue struct {
	limit limiter.Limit
	value string
}

// get returns the member for l, or "" when l cannot be described.
func (p *policyField) get(l limiter.Limit) string {
	if v := p.last.Load(); v != nil && v.limit == l {
		return v.value
	}
	w, ok := policyWindow(l)
	if !ok {
		return ""
	}
	b := make([]byte, 0, len(p.name)+40)
	b = append(b, p.name...)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, clampSF(l.Burst), 10)
	b = append(b, ";w="...)
	b = strconv.AppendInt(b, w, 10)
	v := &policyValue{limit: l, value: string(b)}
	p.last.Store(v)
	return v.value
}

// appendRateLimit appends one RateLimit member to b: the serialized name
// then ";r=" remaining ";t=" window.
func appendRateLimit(b []byte, name string, remaining int, window int64) []byte {
	b = append(b, name...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, clampSF(remaining), 10)
	b = append(b, ";t="...)
	return strconv.AppendInt(b, window, 10)
}

// retryAfterValues holds the Retry-After values of the common short waits,
// so that denials under a flood format none. Strings are immutable: a
// response gets the string, never a shared slice.
var retryAfterValues = func() (v [121]string) {
	for i := range v {
		v[i] = strconv.Itoa(i)
	}
	return v
}()

// seconds returns s as a decimal string.
func seconds(s int64) string {
	if s >= 0 && s < int64(len(retryAfterValues)) {
		return retryAfterValues[s]
	}
	return strconv.FormatInt(s, 10)
}

// retryAfter returns the Retry-After value for a wait of d that is not
// held: delay-seconds rounded up, and at least 1, since such a denial must
// never say "retry now".
func retryAfter(d time.Duration) (int64, string) {
	s := max(wire.CeilSeconds(d), 1)
	return s, seconds(s)
}

// setField adds the values vals to field k of h as field lines of this
// response: after those already there (a middleware further out), or
// alone. vals must be a slice this response owns, capped at its length,
// so that neither a later append nor a handler's assignment reaches
// another response.
func setField(h http.Header, k string, vals []string) {
	if old := h[k]; len(old) > 0 {
		h[k] = append(old[:len(old):len(old)], vals...)
		return
	}
	h[k] = vals
}

// report writes the RateLimit-Policy and RateLimit fields (and the
// legacy X-RateLimit fields) of the policies the states answered for:
// every non-shadow one, and shadow ones when m.shadowHeaders. The policy
// that decided a denial (decided; -1 for none) has t = window, the
// Retry-After sent; other refusing policies their own wait; the others
// their time until full.
//
// It makes two allocations: one backing array for the values, and the
// RateLimit string (the RateLimit-Policy members are cached strings).
func (m *rateLimit) report(h http.Header, states []serverside.State, decided int, window int64) {
	reported := 0
	for i := range states {
		if m.reported(states, i) {
			reported++
		}
	}
	if reported == 0 {
		return
	}
	extra := 1
	if m.legacy {
		extra += 3
	}
	vals := make([]string, 0, reported+extra)
	var (
		buf     [128]byte
		line    = buf[:0]
		legacy  = -1 // the most restrictive non-shadow policy
		legacyT int64
	)
	for i := range states {
		if !m.reported(states, i) {
			continue
		}
		d := states[i].Decision
		f := &m.fields[i]
		t := wire.CeilSeconds(d.ResetAfter)
		switch {
		case i == decided:
			t = window
		case !d.Allowed:
			t = wire.CeilSeconds(d.RetryAfter)
		}
		if len(line) > 0 {
			line = append(line, ", "...)
		}
		line = appendRateLimit(line, f.name, d.Remaining, t)
		if p := f.policy.get(d.Limit); p != "" {
			vals = append(vals, p)
		}
		if !f.shadow && (legacy < 0 || i == decided || decided < 0 && d.Remaining < states[legacy].Decision.Remaining) {
			legacy, legacyT = i, t
		}
	}
	np := len(vals)
	vals = append(vals, string(line))
	if np > 0 {
		setField(h, headerPolicy, vals[:np:np])
	}
	setField(h, headerRateLimit, vals[np:np+1:np+1])
	if !m.legacy || legacy < 0 {
		return
	}
	d := states[legacy].Decision
	if old, ok := legacyRemaining(h); ok && old < int64(d.Remaining) && legacy != decided {
		return // a middleware further out reported a tighter policy
	}
	vals = append(vals, strconv.FormatInt(clampSF(d.Limit.Burst), 10), strconv.FormatInt(clampSF(d.Remaining), 10),
		strconv.FormatInt(legacyT, 10))
	h[headerLegacyLimit] = vals[np+1 : np+2 : np+2]
	h[headerLegacyRemaining] = vals[np+2 : np+3 : np+3]
	h[headerLegacyReset] = vals[np+3 : np+4 : np+4]
}

// reported reports whether policy i's state goes in the fields.
func (m *rateLimit) reported(states []serverside.State, i int) bool {
	return states[i].OK && (!m.fields[i].shadow || m.shadowHeaders)
}

// legacyRemaining returns the X-RateLimit-Remaining a middleware further
// out set, if any.
func legacyRemaining(h http.Header) (int64, bool) {
	v := h[headerLegacyRemaining]
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	return n, err == nil
}
