package limiter

import "github.com/redis/go-redis/v9"

// luaBucketLib holds the Lua every bucket script starts with: the clock and
// the bucket's storage, so that bucketScript and admitScript share one
// layout and one arithmetic.
//
// clock(arg) is arg in µs since the Unix epoch, or Redis TIME when arg is "".
// loadBucket reads the bucket at key, refilled to now, as tokens and ts
// (the time of its last update, µs): 16 bytes, two doubles packed with Lua's
// struct library (one GET and no number parsing, which cost more than the
// rest of a script). A bucket that does not exist, or holds anything else,
// is full. Time never runs backwards for a bucket: an older now than ts adds
// nothing. storeBucket writes it back, or deletes it when full (reset, the
// µs until it would be full, is 0): the key expires when the bucket would be
// full again, but not sooner than a second after its last write, so idle
// keys disappear (a missing key and a full bucket are the same thing) while
// busy ones are overwritten rather than created anew on every call (which
// costs Redis a third more time).
const luaBucketLib = `
local function clock(arg)
  if arg == "" then
    local t = redis.call("TIME")
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end
local function loadBucket(key, rate, burst, now)
  local tokens, ts
  local v = redis.call("GET", key)
  if v and #v == 16 then
    tokens, ts = struct.unpack("dd", v)
  end
  if not (tokens and ts and tokens > -1e300 and tokens < 1e300 and ts >= 0 and ts < 1e18) then
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
local function storeBucket(key, tokens, ts, reset)
  if reset <= 0 then
    redis.call("DEL", key)
  else
    redis.call("SET", key, struct.pack("dd", tokens, ts), "PX", math.max(math.ceil(reset / 1000) + 1, 1000))
  end
end
`

// bucketScript is one token-bucket decision, atomically, in one round trip.
//
// KEYS[1]  the bucket (see luaBucketLib)
// ARGV[1]  refill rate in tokens per microsecond
// ARGV[2]  burst (capacity) in tokens
// ARGV[3]  n, the tokens asked for (>= 0)
// ARGV[4]  mode: 0 all-or-nothing, 1 up to n, 2 give n back, 3 reserve n
// ARGV[5]  now in µs since the Unix epoch, or "" to use Redis TIME
// ARGV[6]  mode 3: reserve only if the wait is at most this many µs
//
// It returns {allowed (0/1), taken, floor(tokens left) (0 when in debt),
// retry-after µs (for mode 3, the reservation's wait), reset-after µs}. A
// reservation may leave the bucket in debt (negative tokens): later callers
// queue behind it. Only a change is written. Writes are effect-replicated
// (the Redis 5+ default), so reading TIME before writing needs no
// replicate_commands.
var bucketScript = redis.NewScript(luaBucketLib + `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local mode = tonumber(ARGV[4])
local now = clock(ARGV[5])
if rate == nil or burst == nil or n == nil or mode == nil or now == nil then
  return redis.error_reply("herdcap: bad arguments")
end
local tokens, ts = loadBucket(KEYS[1], rate, burst, now)
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
if taken > 0 or mode == 2 then
  storeBucket(KEYS[1], tokens, ts, reset)
end
if allowed == 0 and mode ~= 3 then
  local need = n
  if mode == 1 then need = 1 end
  retry = math.min(math.ceil((need - tokens) / rate), 9e15)
  if retry < 1 then retry = 1 end
end
return {allowed, taken, math.max(0, math.floor(tokens)), retry, reset}
`)

// heartbeatScript records this node as live and counts the live nodes.
//
// KEYS[1]  the live-node sorted set (score: last heartbeat, ms)
// ARGV[1]  node ID
// ARGV[2]  how long a node counts as live after its last heartbeat, ms
// ARGV[3]  1 to add the node, 0 to remove it (on Close)
//
// It returns the number of live nodes.
var heartbeatScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - ttl)
if ARGV[3] == "1" then
  redis.call("ZADD", KEYS[1], now, ARGV[1])
else
  redis.call("ZREM", KEYS[1], ARGV[1])
end
redis.call("PEXPIRE", KEYS[1], ttl)
return redis.call("ZCARD", KEYS[1])
`)
