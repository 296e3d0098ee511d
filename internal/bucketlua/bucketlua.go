// Package bucketlua is the Lua every token-bucket script of herdcap starts
// with (fleet.Strict's and fleet.Leased's bucket script, the admission
// gate's script): the clock and the bucket's storage, so that all of them
// share one layout and one arithmetic.
package bucketlua

import (
	"strconv"
	"time"
)

// Lib defines, for the script that follows it:
//
// clock(arg) is arg in µs since the Unix epoch, or Redis TIME when arg is
// "".
//
// readBucket(key) reads the bucket stored at key, as it was written:
// tokens, ts (the time of its last update, µs) and ext, nil or a table of
// the eight doubles of the bucket's extension (see fleet's bucket script:
// its denial tail and the limit its requests carry). A bucket is 16 bytes
// (two doubles packed with Lua's struct library: one GET and no number
// parsing, which cost more than the rest of a script), or 80 with the
// extension. A bucket that does not exist, or holds anything else (another
// length, a value out of range or not a number), reads as nil: a full
// bucket.
//
// refill(tokens, ts, rate, burst, now) brings a bucket read by readBucket
// to now: a missing one is full (burst, now); time never runs backwards
// for a bucket (an older now than ts adds nothing); it never holds more
// than burst.
//
// loadBucket(key, rate, burst, now) is readBucket then refill.
//
// storeBucket(key, tokens, ts, reset) writes a 16-byte bucket back, or
// deletes it when it is full (reset, the µs until it would be full, is 0):
// the key expires when the bucket would be full again, but not sooner than
// a second after its last write, so idle keys disappear (a missing key and
// a full bucket are the same thing) while busy ones are overwritten rather
// than created anew on every call (which costs Redis a third more time).
const Lib = `
local function clock(arg)
  if arg == "" then
    local t = redis.call("TIME")
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end
local function sane(x)
  return x and x > -1e300 and x < 1e300
end
local function readBucket(key)
  local v = redis.call("GET", key)
  if not v then
    return nil
  end
  local tokens, ts, ext
  if #v == 16 then
    tokens, ts = struct.unpack("dd", v)
  elseif #v == 80 then
    local a, b, c, d, e, f, g, h, i, j = struct.unpack("dddddddddd", v)
    if not (sane(c) and sane(d) and sane(e) and sane(f) and sane(g) and sane(h) and sane(i) and sane(j)) then
      return nil
    end
    tokens, ts, ext = a, b, {c, d, e, f, g, h, i, j}
  end
  if not (sane(tokens) and ts and ts >= 0 and ts < 1e18) then
    return nil
  end
  return tokens, ts, ext
end
local function refill(tokens, ts, rate, burst, now)
  if tokens == nil then
    return burst, now
  end
  if now > ts then
    tokens = tokens + (now - ts) * rate
    ts = now
  end
  if tokens > burst then
    tokens = burst
  end
  return tokens, ts
end
local function loadBucket(key, rate, burst, now)
  local tokens, ts = readBucket(key)
  return refill(tokens, ts, rate, burst, now)
end
local function storeBucket(key, tokens, ts, reset)
  if reset <= 0 then
    redis.call("DEL", key)
  else
    redis.call("SET", key, struct.pack("dd", tokens, ts), "PX", math.max(math.ceil(reset / 1000) + 1, 1000))
  end
end
`

// NowArg is a script's time argument: t in µs since the Unix epoch when
// pass (a clock was injected), or "" for Redis TIME.
func NowArg(t time.Time, pass bool) string {
	if !pass {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}
