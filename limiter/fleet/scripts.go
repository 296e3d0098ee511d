package fleet

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/bucketlua"
	"github.com/herdcap/herdcap/internal/tail"
	"github.com/herdcap/herdcap/limiter"
)

// bucketScript is one token-bucket decision, atomically, in one round trip:
// Strict's every decision, and Leased's every exchange with the shared
// bucket.
//
// KEYS[1]  the bucket (see bucketlua.Lib)
// ARGV[1]  refill rate in tokens per microsecond
// ARGV[2]  burst (capacity) in tokens
// ARGV[3]  n, the tokens asked for (>= 0)
// ARGV[4]  mode: 0 all-or-nothing, 1 up to n, 2 give n back, 3 reserve n
// ARGV[5]  now in µs since the Unix epoch, or "" to use Redis TIME
// ARGV[6]  mode 3: reserve only if the wait is at most this many µs
// ARGV[7]  "": ARGV[1-2] are the budget's own limit; else ARGV[1-2] are the
//
//	limit the request carries, and this is the ramp window in µs
//	(0: none) over which the key moves to it when it changes
//
// ARGV[8]  "": no denial tail; else the key's fraction (tail.KeyFraction),
//
//	and a refusal in mode 0 or 1 moves the key's denial tail
//
// It returns {allowed (0/1), taken, floor(tokens left) (0 when in debt),
// retry-after µs (for mode 3, the reservation's wait), reset-after µs},
// and, while the key's carried limit ramps, two more: the rate in force
// (tokens per µs, as a string) and the burst in force.
//
// The bucket's extension (bucketlua.Lib) holds, when needed, the denial
// tail (the time from which the next refusal is told to come back, µs,
// and the refusals counted since it last lay in the past) and the limit
// the key's requests carry (rate, burst) with its ramp (from rate, from
// burst, start, end). A limit carried for the first time, or by an idle
// key (full, no ramp under way), applies at once; any other change ramps
// from the limit in force. A refusal writes only the extension, leaving
// the tokens and their time as they were stored, so that it changes no
// later decision's arithmetic. The key lives while the bucket refills, the
// tail lies ahead or the ramp runs; a full bucket with neither is deleted
// (a missing key and a full bucket are the same thing, and a key seen anew
// takes its limit at once: the rule for idle keys above). A reservation
// may leave the bucket in debt (negative tokens): later callers queue
// behind it. Writes are effect-replicated (the Redis 5+ default), so
// reading TIME before writing needs no replicate_commands.
var bucketScript = redis.NewScript(bucketlua.Lib + `
local HORIZON = ` + strconv.FormatInt(int64(tail.MinHorizon/time.Microsecond), 10) + `
local STEP = ` + strconv.FormatFloat(tail.Step, 'g', -1, 64) + `
local function effective(lr, lb, fr, fb, rs, re, now)
  if now >= re then
    return lr, lb
  end
  if now < rs then
    return fr, fb
  end
  local f = (now - rs) / (re - rs)
  local b = math.floor(fb + (lb - fb) * f + 0.5)
  if b < 1 then
    b = 1
  end
  return fr + (lr - fr) * f, b
end
local function store(key, tokens, ts, reset, tl, cnt, lr, lb, fr, fb, rs, re, now)
  local hold = math.max(tl - now, re - now, 0)
  if reset <= 0 and hold <= 0 then
    redis.call("DEL", key)
    return
  end
  local px = math.max(math.ceil(reset / 1000) + 1, 1000, math.ceil(hold / 1000) + 1)
  if lr == 0 and tl <= now then
    redis.call("SET", key, struct.pack("dd", tokens, ts), "PX", px)
  else
    redis.call("SET", key, struct.pack("dddddddddd", tokens, ts, tl, cnt, lr, lb, fr, fb, rs, re), "PX", px)
  end
end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local mode = tonumber(ARGV[4])
local now = clock(ARGV[5])
if rate == nil or burst == nil or n == nil or mode == nil or now == nil then
  return redis.error_reply("herdcap: bad arguments")
end
local tokens0, ts0, ext = readBucket(KEYS[1])
local tl, cnt, lr, lb, fr, fb, rs, re = 0, 0, 0, 0, 0, 0, 0, 0
if ext then
  tl, cnt, lr, lb, fr, fb, rs, re = ext[1], ext[2], ext[3], ext[4], ext[5], ext[6], ext[7], ext[8]
end
local dirty = false
local ramping = false
if ARGV[7] ~= "" then
  local win = tonumber(ARGV[7]) or 0
  if lr ~= rate or lb ~= burst then
    if lr == 0 or win <= 0 then
      fr, fb, rs, re = rate, burst, now, now
    else
      local er, eb = effective(lr, lb, fr, fb, rs, re, now)
      local full = refill(tokens0, ts0, er, eb, now) >= eb
      if full and now >= re then
        fr, fb, rs, re = rate, burst, now, now
      else
        fr, fb, rs, re = er, eb, now, now + win
      end
    end
    lr, lb = rate, burst
    dirty = true
  end
  rate, burst = effective(lr, lb, fr, fb, rs, re, now)
  ramping = now < re
end
local tokens, ts = refill(tokens0, ts0, rate, burst, now)
local allowed = 0
local taken = 0
local retry = 0
if mode == 3 then
  local maxwait = tonumber(ARGV[6]) or 0
  if tokens < n then
    retry = math.min(math.ceil((n - tokens) / rate), 9e15)
  end
  if retry <= maxwait then
    taken = n
    allowed = 1
  end
elseif mode == 2 then
  tokens = math.min(burst, tokens + n)
  allowed = 1
elseif n == 0 then
  allowed = 1
elseif mode == 1 then
  taken = math.min(n, math.floor(tokens))
  if taken >= 1 then allowed = 1 else taken = 0 end
elseif tokens >= n then
  taken = n
  allowed = 1
end
tokens = tokens - taken
local reset = math.min(math.ceil((burst - tokens) / rate), 9e15)
if allowed == 0 and mode ~= 3 then
  local need = n
  if mode == 1 then need = 1 end
  retry = math.min(math.ceil((need - tokens) / rate), 9e15)
  if retry < 1 then retry = 1 end
  if ARGV[8] ~= "" then
    local kf = tonumber(ARGV[8]) or 0
    local h = math.max(burst / rate, HORIZON)
    if tl <= now then cnt = 0 end
    cnt = cnt + 1
    if tl - now >= h then
      local x = kf + cnt * STEP
      x = x - math.floor(x)
      retry = math.max(retry, math.ceil(x * h))
    else
      retry = math.max(retry, math.ceil(tl - now))
      tl = math.min(now + retry + need / rate, now + h)
    end
    dirty = true
  end
end
if taken > 0 or mode == 2 then
  store(KEYS[1], tokens, ts, reset, tl, cnt, lr, lb, fr, fb, rs, re, now)
elseif dirty and tokens0 ~= nil then
  store(KEYS[1], tokens0, ts0, reset, tl, cnt, lr, lb, fr, fb, rs, re, now)
end
local out = {allowed, taken, math.max(0, math.floor(tokens)), retry, reset}
if ramping then
  out[6] = string.format("%.17g", rate)
  out[7] = burst
end
return out
`)

// parseBucketReply turns bucketScript's reply into a Decision under lim,
// the limit asked for; a ramping carried limit's reply says the limit in
// force instead.
func parseBucketReply(v any, lim limiter.Limit, via limiter.Via) (limiter.Decision, error) {
	bad := func(format string, args ...any) (limiter.Decision, error) {
		return limiter.Decision{Limit: lim, Via: via}, fmt.Errorf("%w: "+format, append([]any{ErrUnexpectedReply}, args...)...)
	}
	a, ok := v.([]any)
	if !ok || (len(a) != 5 && len(a) != 7) {
		return bad("want 5 or 7 elements, got %T %v", v, v)
	}
	var x [5]int64
	for i, e := range a[:5] {
		if x[i], ok = e.(int64); !ok || x[i] < 0 {
			return bad("element %d is %T %v", i, e, e)
		}
	}
	if len(a) == 7 {
		s, ok1 := a[5].(string)
		b, ok2 := a[6].(int64)
		perMicro, err := strconv.ParseFloat(s, 64)
		if !ok1 || !ok2 || err != nil || !(perMicro > 0) || b < 1 {
			return bad("want a rate and a burst in elements 5 and 6, got %v %v", a[5], a[6])
		}
		p := lim.Period
		if p == 0 {
			p = time.Second
		}
		lim = limiter.Limit{Rate: perMicro * 1e6 * float64(p) / float64(time.Second), Period: lim.Period, Burst: int(b)}
	}
	return limiter.Decision{
		Allowed:    x[0] == 1,
		Taken:      int(x[1]),
		Remaining:  int(x[2]),
		RetryAfter: time.Duration(x[3]) * time.Microsecond,
		ResetAfter: time.Duration(x[4]) * time.Microsecond,
		Limit:      lim,
		Via:        via,
	}, nil
}
