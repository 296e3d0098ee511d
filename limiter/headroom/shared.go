package headroom

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// sharedStore is a shared controller's link to the fleet's state.
type sharedStore struct {
	link     *remote.Link
	injected bool // pass the clock's time instead of using Redis TIME
	failure  fleet.FailurePolicy
	keys     []string // per origin, in c.origins order
	ttl      int64    // ms the state outlives the last report
	args     []any    // reused by tick, which never runs twice at once

	// local is true while this node controls its share locally
	// (FailLocal), and live the live nodes it divided by; only the timer's
	// goroutine touches them.
	local bool
	live  int64
	via   limiter.Via // the source last logged
}

// argsPerOrigin is the number of script arguments per origin.
const argsPerOrigin = 16

// NewShared returns a controller whose limits are shared by every node
// with the same Redis, Prefix and Name (if Redis.Name is "", "headroom").
// Once per Config.Interval each node sends its reports of every origin in
// one script call, whose keys share one cluster slot, and applies the
// fleet's limits from the reply. Every node must configure the same
// Origins and Interval. Under FailLocal it starts the live-node heartbeat.
// Bad configuration is an error wrapping limiter.ErrInvalidConfig that
// names the field.
func NewShared(r fleet.Redis, cfg SharedConfig) (*Controller, error) {
	c, err := newController(cfg.Config, "headroom.SharedConfig")
	if err != nil {
		return nil, err
	}
	if cfg.Failure > fleet.FailClosed {
		return nil, fmt.Errorf("%w: headroom.SharedConfig.Failure is unknown: %v", limiter.ErrInvalidConfig, cfg.Failure)
	}
	link, err := remote.Open(remote.Config(r), remote.Use{DefaultName: "headroom",
		NoHeartbeat: remote.NoHeartbeatUnder("headroom.SharedConfig.Failure", cfg.Failure.String()),
		Breaker:     c.onBreaker},
		cfg.Clock, cfg.Logger, cfg.Failure.String())
	if err != nil {
		return nil, err
	}
	s := &sharedStore{link: link, injected: cfg.Clock != nil, failure: cfg.Failure, live: 1, via: limiter.ViaRedis,
		ttl: max(2*window*c.interval.Milliseconds(), time.Hour.Milliseconds())}
	base := link.Prefix + ":" + link.Name + ":{h:" + link.Name + "}:"
	for _, o := range c.origins {
		s.keys = append(s.keys, base+o.name)
		o.stats.Via = limiter.ViaRedis
	}
	s.args = make([]any, 0, 3+argsPerOrigin*len(c.origins))
	c.shared = s
	if cfg.Failure == fleet.FailLocal {
		link.StartHeartbeat()
	}
	c.start()
	return c, nil
}

// tick reports this node's interval to Redis and applies the reply, or,
// when Redis cannot answer, the failure policy.
func (s *sharedStore) tick(c *Controller) {
	tallies := make([]tally, len(c.origins))
	for i, o := range c.origins {
		tallies[i] = o.drain()
	}
	var now time.Time
	if s.injected {
		now = c.clock.Now()
	}
	s.args = reportArgs(s.args[:0], now, c.interval, s.ttl, c.origins, tallies)
	v, err := s.link.Eval(context.Background(), reportScript, s.keys, s.args...)
	var replies [][]float64
	if err == nil {
		replies, err = parseReply(v, len(c.origins))
	}
	if err != nil {
		s.failed(c, tallies, err)
		return
	}
	if s.via != limiter.ViaRedis {
		c.logger.Info("herdcap: headroom rejoined the shared limits", "name", s.link.Name)
		s.via = limiter.ViaRedis
	}
	s.local = false
	live := s.link.Live()
	for i, o := range c.origins {
		r := replies[i]
		rate, spare := r[0], r[1]
		var t tally
		copy(t.calls[:], r[3:5])
		copy(t.refused[:], r[5:7])
		copy(t.out[:], r[7:11])
		d := derived{baseline: r[11], sample: r[12], saturated: r[13] != 0, spare: spare}
		o.publish(rate, spare)
		o.setStats(rate, spare, t, d, r[14], live, limiter.ViaRedis, int64(r[2]))
	}
}

// reportArgs appends to dst reportScript's arguments: the time now (the
// zero time: Redis TIME), the interval, the state's TTL in ms, and each
// origin's bounds and reports.
func reportArgs(dst []any, now time.Time, iv time.Duration, ttl int64, origins []*Origin, tallies []tally) []any {
	at := ""
	if !now.IsZero() {
		at = strconv.FormatInt(now.UnixMicro(), 10)
	}
	dst = append(dst, at, iv.Microseconds(), ttl)
	for i, o := range origins {
		b, t := &o.b, &tallies[i]
		// A fleet state that is missing (the first report, or a Redis that
		// lost its data) starts at the reporter's current limit: Initial,
		// or what it applies now.
		start := math.Float64frombits(o.rate.Load())
		for _, v := range [argsPerOrigin]float64{b.Floor, b.Ceiling, start, b.MaxRise, b.MaxFall, b.Tolerance,
			t.calls[0], t.calls[1], t.refused[0], t.refused[1], t.out[0], t.out[1], t.out[2], t.out[3], t.latSum, t.latMin} {
			dst = append(dst, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return dst
}

// failed applies the failure policy to an interval Redis did not answer.
func (s *sharedStore) failed(c *Controller, tallies []tally, err error) {
	if s.via != limiter.ViaFallback {
		c.logger.Info("herdcap: headroom controls locally while Redis cannot answer",
			"name", s.link.Name, "policy", s.failure.String(), "err", err)
		s.via = limiter.ViaFallback
	}
	if s.failure == fleet.FailLocal && !s.local {
		// Take over this node's share of the limit last applied.
		s.local = true
		s.live = max(1, s.link.Live())
		for _, o := range c.origins {
			o.st = newState(math.Float64frombits(o.rate.Load()) / float64(s.live))
		}
	}
	for i, o := range c.origins {
		t := tallies[i]
		var rate, capacity float64
		var d derived
		live := s.live
		switch s.failure {
		case fleet.FailOpen, fleet.FailClosed:
			rate = o.b.Ceiling
			if s.failure == fleet.FailClosed {
				rate = o.b.Floor
			}
			live = max(1, s.link.Live())
			d.spare = math.Max(0, rate-(t.calls[0]+t.refused[0])/c.secs*float64(live))
		default:
			n := float64(s.live)
			share := o.b
			share.Floor, share.Ceiling = o.b.Floor/n, o.b.Ceiling/n
			step(&share, &o.st, t, c.secs)
			rate, d, capacity = o.st.limit*n, o.st.derive, o.st.cap*n
			d.spare *= n
		}
		o.publish(rate, d.spare)
		o.setStats(rate, d.spare, t, d, capacity, live, limiter.ViaFallback, o.st.n)
	}
}

// parseReply turns reportScript's reply into one row of figures per
// origin (see reportScript). A reply the script cannot produce is
// fleet.ErrUnexpectedReply.
func parseReply(v any, n int) ([][]float64, error) {
	rows, ok := v.([]any)
	if !ok || len(rows) != n {
		return nil, fmt.Errorf("%w: headroom: want %d rows, got %T %v", fleet.ErrUnexpectedReply, n, v, v)
	}
	out := make([][]float64, n)
	for i, row := range rows {
		cells, ok := row.([]any)
		if !ok || len(cells) != replyFields {
			return nil, fmt.Errorf("%w: headroom: want %d figures, got %v", fleet.ErrUnexpectedReply, replyFields, row)
		}
		out[i] = make([]float64, replyFields)
		for j, cell := range cells {
			str, ok := cell.(string)
			f, err := strconv.ParseFloat(str, 64)
			if !ok || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("%w: headroom: figure %d is %v", fleet.ErrUnexpectedReply, j, cell)
			}
			out[i][j] = f
		}
	}
	return out, nil
}

// replyFields is the number of figures per origin in reportScript's reply.
const replyFields = 15

// reportScript adds one node's reports of an interval to the fleet's,
// finalising the interval before when the report is the first of a new
// one, and returns every origin's figures.
//
// KEYS[i]  origin i's hash (all keys share the controller's hash tag)
// ARGV[1]  now in µs since the Unix epoch, or "" to use Redis TIME
// ARGV[2]  the control interval, µs
// ARGV[3]  how long the state outlives the last report, ms
// then per origin i, 16 arguments from ARGV[4+16(i-1)]: its bounds
// (floor, ceiling, start, max rise, max fall, tolerance: start is the
// limit a missing state starts at) and the node's
// reports (calls foreground, background, refused foreground, background,
// success, overload, timeout, failure, latency sum ns, latency min ns).
//
// The report is tagged with interval k = round(now/interval) - 1, the one
// that just ended. A hash holds the current interval k (field k), the sums
// of its reports (a1..a10), the state of step (limit, prev, peak, gain, cap, probe, n, pos,
// m0..m59) and the last finalised interval's figures (t1..t10, base,
// sample, sat, spare). A report for an interval after k finalises k (runs
// step) before it is added; a report for k or one of the two intervals
// before (late) is added to k. A report for an interval further back means
// that the reporters' time stepped back (or the state outlived a clock
// that was ahead): it too finalises k, and its interval becomes the
// current one, so that a fleet never waits for time to catch up. Numbers are stored with 17 significant digits, so every
// double survives. It returns, per origin, {limit, spare, n, t1..t8, base,
// sample, sat, cap} as strings.
var reportScript = redis.NewScript(stepLua + `
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local iv = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if iv == nil or iv <= 0 or ttl == nil then
  return redis.error_reply("herdcap: bad arguments")
end
local secs = iv / 1e6
local k = math.floor(now / iv + 0.5) - 1
local out = {}
for i = 1, #KEYS do
  local a = 3 + (i - 1) * 16
  local v = {}
  for j = 1, 16 do
    v[j] = tonumber(ARGV[a + j])
    if v[j] == nil then
      return redis.error_reply("herdcap: bad arguments")
    end
  end
  local b = {floor = v[1], ceil = v[2], rise = v[4], fall = v[5], tol = v[6]}
  local h = {}
  local raw = redis.call("HGETALL", KEYS[i])
  for j = 1, #raw, 2 do
    h[raw[j]] = tonumber(raw[j + 1])
  end
  if h.k == nil then
    h = {k = k, limit = v[3], prev = v[3], peak = 0, gain = 1, cap = 0, probe = 0, n = 0, pos = 0,
      base = 0, sample = 0, sat = 0, spare = 0}
    for j = 1, 10 do
      h["a" .. j] = 0
      h["t" .. j] = 0
    end
    for j = 0, 59 do
      h["m" .. j] = 0
    end
  elseif k > h.k or k < h.k - 2 then
    local t = {}
    for j = 1, 10 do
      t[j] = h["a" .. j]
      h["a" .. j] = 0
    end
    step(b, h, t, secs)
    h.k = k
  end
  for j = 1, 9 do
    h["a" .. j] = h["a" .. j] + v[6 + j]
  end
  local m = v[16]
  if m > 0 and (h.a10 == 0 or m < h.a10) then
    h.a10 = m
  end
  local flat = {}
  for f, x in pairs(h) do
    flat[#flat + 1] = f
    flat[#flat + 1] = string.format("%.17g", x)
  end
  redis.call("HSET", KEYS[i], unpack(flat))
  redis.call("PEXPIRE", KEYS[i], ttl)
  local row = {}
  for _, x in ipairs({h.limit, h.spare, h.n, h.t1, h.t2, h.t3, h.t4, h.t5, h.t6, h.t7, h.t8,
      h.base, h.sample, h.sat, h.cap}) do
    row[#row + 1] = string.format("%.17g", x)
  end
  out[i] = row
end
return out
`)

// stepLua is step in Lua, operation for operation (see step), on a hash
// h of the fields reportScript describes, the bounds b and the
// interval's reports t (t[1..10], in reportScript's order).
const stepLua = `
local function step(b, h, t, secs)
  h.n = h.n + 1
  for j = 1, 10 do
    h["t" .. j] = t[j]
  end
  h["m" .. h.pos] = t[10]
  h.pos = (h.pos + 1) % 60
  local base = 0
  for j = 0, 59 do
    local m = h["m" .. j]
    if m > 0 and (base == 0 or m < base) then
      base = m
    end
  end
  local answered = t[5] + t[6] + t[7] + t[8]
  local sample = 0
  if t[5] > 0 then
    sample = t[9] / t[5]
  end
  local bad = t[6] + t[7] + t[8]
  local failing = answered > 0 and bad > 0.01 * answered
  local saturated = failing or (sample > 0 and base > 0 and sample > base * (1 + b.tol))
  local draining = saturated and not failing and h.sat == 1 and sample < h.sample
  local cold = sample == 0 or base == 0 or sample <= base * (1 + 0.15 * b.tol)
  local l = h.limit
  local prev = h.prev or l
  local peak = h.peak or 0
  local gain = h.gain or 1
  local inforce = math.min(l, prev)
  local offered = (t[1] + t[2] + t[3] + t[4]) / secs
  local nxt = l
  if draining then
    h.probe = 0
  elseif saturated then
    local c = t[5] / secs
    if h.cap > 0 and c > 0.9 * h.cap and c < h.cap / 0.9 then
      c = (c + 3 * h.cap) / 4
    elseif h.cap > 0 and c <= 0.9 * h.cap and not failing and h.sat ~= 1 then
      c = h.cap
    end
    h.cap = c
    if c >= 0.9 * peak then
      peak = c
    end
    h.probe = 0
    local target = 0.97 * c
    if not failing then
      target = math.max(target, c - c * (sample - base) / 1e9 / (2 * secs))
    end
    nxt = math.max(l * (1 - b.fall), math.min(l, target))
  elseif offered < 0.9 * inforce then
    -- demand-limited: hold
  elseif cold and h.cap > 0 and l < h.cap then
    nxt = l + math.min(math.sqrt(l), math.max(0.02 * l, h.cap - l))
    h.probe = 0
  elseif cold and not (h.sample > h.base * (1 + 0.15 * b.tol)) then
    local need = 0
    local p = h.probe
    if p == 0 then
      p = math.sqrt(l)
    end
    local grow = true
    if l >= peak then
      need = l
      if l > prev then
        need = math.huge
      end
      if sample > base * (1 + 0.05 * b.tol) then
        p = math.min(p, 0.02 * l)
        grow = false
      end
    end
    if (t[1] + t[2]) / secs >= 0.9 * need then
      nxt = l + p
      if l < peak then
        nxt = math.min(nxt, peak)
      end
      h.probe = 0
      if grow then
        h.probe = math.min(2 * p, b.rise * l)
      end
    end
  elseif not cold and sample > base * (1 + 0.5 * b.tol) then
    h.probe = 0
  elseif h.cap > 0 and l < h.cap / 0.9 then
    local up = math.min(l + math.min(math.sqrt(l), 0.02 * l), h.cap)
    nxt = math.max(up, l + math.min(math.sqrt(l), 0.005 * l))
    h.probe = 0
  elseif l > prev then
    h.probe = 0
  else
    nxt = l + math.min(math.sqrt(l), 0.02 * l)
    h.probe = 0
  end
  nxt = math.min(math.max(nxt, l * (1 - b.fall)), l * (1 + b.rise))
  nxt = math.min(math.max(nxt, b.floor), b.ceil)
  local bg = (t[2] + t[4]) / secs
  if bg == 0 then
    gain = 1
  elseif saturated or t[4] > 0 and offered >= 0.9 * inforce then
    gain = math.max(1, gain / 1.03)
  elseif offered < 0.9 * inforce then
    gain = math.min(4, gain * 1.03)
  end
  h.prev = l
  h.peak = peak
  h.gain = gain
  h.limit = nxt
  h.base = base
  h.sample = sample
  h.sat = saturated and 1 or 0
  h.spare = gain * math.max(0, nxt - (t[1] + t[3]) / secs)
end
`
