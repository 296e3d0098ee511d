package invalidate

import "github.com/redis/go-redis/v9"

// The Redis store's scripts. Every key of a namespace carries the same hash
// tag ({inv:namespace}), so each script touches one cluster slot, and every
// operation is one script: one round trip, atomic.
//
//	cfg   hash  rollout ID -> the rollout as started (encodeRollout; opaque here)
//	st    hash  rollout ID -> its state, 16 numbers (state.encode):
//	            1 version (1), 2 phase (1 running, 2 paused, 3 aborted,
//	            4 done), 3 epoch, 4 cohorts, 5 released, 6 rate (clients/s),
//	            7 min duration (µs), 8 clients, 9 population, 10 credit (µs),
//	            11 last (µs), 12 hold until (µs), 13 started, 14 updated,
//	            15 finished (µs, 0 while unfinished), 16 guarded (0/1)
//	meta  hash  seq (highest epoch assigned), ver (changes visible to Due),
//	            gen (random token of the writer that created the hash)
//	seen:W      HyperLogLog of the clients seen in population window W
//	seen:tmp    scratch key for merging a node's sketch
//
// Times are µs since the Unix epoch, passed by the caller or, when the
// argument is "", read from Redis TIME. Every number is a Lua double; the
// formulas are those of state.step, state.control and state.merge, in the
// same order, so both stores compute the same doubles. A state that does not
// decode is skipped (advance), reported (control, start) or replaced
// (restore), never trusted.
const luaPrelude = `
local function dec(s)
  if type(s) ~= "string" then return nil end
  local t = {}
  for w in string.gmatch(s, "%S+") do
    local x = tonumber(w)
    if x == nil or x ~= x or x == math.huge or x == -math.huge then return nil end
    t[#t + 1] = x
  end
  if #t ~= 16 or t[1] ~= 1 then return nil end
  local ph, co, re = t[2], t[4], t[5]
  if ph ~= 1 and ph ~= 2 and ph ~= 3 and ph ~= 4 then return nil end
  if t[3] < 1 or co < 1 or co > 1048576 or co ~= math.floor(co) then return nil end
  if re < 0 or re > co or re ~= math.floor(re) then return nil end
  if (ph == 4) ~= (re == co) then return nil end
  if t[6] <= 0 or t[7] < 0 or t[8] < 0 or t[9] < 0 or t[10] < 0 then return nil end
  if t[16] ~= 0 and t[16] ~= 1 then return nil end
  return t
end
local function enc(t)
  return string.format("1 %d %.0f %d %d %.17g %.0f %.0f %.0f %.17g %.0f %.0f %.0f %.0f %.0f %d",
    t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15], t[16])
end
local function clock(arg)
  if arg == "" then
    local t = redis.call("TIME")
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return tonumber(arg)
end
local function bump(meta, gen)
  redis.call("HSETNX", meta, "gen", gen)
  redis.call("HINCRBY", meta, "ver", 1)
end
local function expired(t, now, retention)
  return (t[2] == 3 or t[2] == 4) and t[15] + retention <= now
end
local function snap(out, cfg, st, meta, kver, kgen)
  local m = redis.call("HMGET", meta, "ver", "gen")
  local ver, gen = m[1] or "0", m[2] or ""
  out[#out + 1] = ver
  out[#out + 1] = gen
  if ver == kver and gen == kgen then
    out[#out + 1] = 0
    return out
  end
  out[#out + 1] = 1
  local all = redis.call("HGETALL", cfg)
  for i = 1, #all, 2 do
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
    out[#out + 1] = redis.call("HGET", st, all[i]) or ""
  end
  return out
end
`

// startScript registers a rollout unless its ID exists.
//
// KEYS  cfg, st, meta
// ARGV  1 ID, 2 encoded rollout, 3 requested epoch (0: assign), 4 now,
//
//	5 epoch floor, 6 most rollouts, 7 retention µs, 8 gen token,
//	9 cohorts, 10 rate, 11 min duration µs, 12 clients, 13 guarded,
//	14 initial population, 15 epoch jump, 16 hold µs (warm-up, 0: none),
//	17 dry run (1: check only)
//
// Returns {0, state} created; {1, rollout, state} the ID exists; {3, seq}
// the epoch would go backwards; {4} too many rollouts; {5} a dry run
// passed every check; {6, seq, ceiling} the explicit epoch is above
// max(seq + 1, now in ms + jump).
var startScript = redis.NewScript(luaPrelude + `
local cfg, st, meta = KEYS[1], KEYS[2], KEYS[3]
local id = ARGV[1]
local now = clock(ARGV[4])
local old = redis.call("HGET", cfg, id)
if old then
  return {1, old, redis.call("HGET", st, id) or ""}
end
local most, retention = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call("HLEN", cfg) >= most then
  local all = redis.call("HGETALL", st)
  local purged = false
  for i = 1, #all, 2 do
    local t = dec(all[i + 1])
    if t and expired(t, now, retention) then
      redis.call("HDEL", cfg, all[i])
      redis.call("HDEL", st, all[i])
      purged = true
    end
  end
  if purged then bump(meta, ARGV[8]) end
  if redis.call("HLEN", cfg) >= most then return {4} end
end
local seq = tonumber(redis.call("HGET", meta, "seq") or "0") or 0
local base = math.max(seq, tonumber(ARGV[5]))
local epoch = tonumber(ARGV[3])
local nowMs = math.floor(now / 1000)
if epoch == 0 then
  epoch = math.max(base + 1, nowMs)
elseif epoch <= base then
  return {3, string.format("%.0f", base)}
else
  local ceil = math.max(base + 1, nowMs + tonumber(ARGV[15]))
  if epoch > ceil then return {6, string.format("%.0f", base), string.format("%.0f", ceil)} end
end
if epoch > 9007199254740991 then return {3, string.format("%.0f", base)} end
if ARGV[17] == "1" then return {5} end
local clients = tonumber(ARGV[12])
local hold = 0
if tonumber(ARGV[16]) > 0 then hold = now + tonumber(ARGV[16]) end
local s = enc({1, 1, epoch, tonumber(ARGV[9]), 0, tonumber(ARGV[10]), tonumber(ARGV[11]),
  clients, math.max(clients, tonumber(ARGV[14])), 0, now, hold, now, now, 0, tonumber(ARGV[13])})
redis.call("HSET", cfg, id, ARGV[2])
redis.call("HSET", st, id, s)
redis.call("HSET", meta, "seq", string.format("%.0f", epoch))
bump(meta, ARGV[8])
return {0, s}
`)

// getScript reads one rollout.
//
// KEYS  cfg, st
// ARGV  1 ID
//
// Returns {rollout or nil, state or nil}.
var getScript = redis.NewScript(`
return {redis.call("HGET", KEYS[1], ARGV[1]), redis.call("HGET", KEYS[2], ARGV[1])}
`)

// controlScript pauses (1), resumes (2) or aborts (3) a rollout.
//
// KEYS  cfg, st, meta
// ARGV  1 ID, 2 action, 3 now, 4 gen token
//
// Returns {0, rollout, state} changed; {1, rollout, state} already so; {2}
// unknown ID; {3, rollout, state} finished; {5, rollout, state} the state
// does not decode.
var controlScript = redis.NewScript(luaPrelude + `
local cfg, st, meta = KEYS[1], KEYS[2], KEYS[3]
local id, act = ARGV[1], tonumber(ARGV[2])
local now = clock(ARGV[3])
local b = redis.call("HGET", cfg, id)
if not b then return {2} end
local s = redis.call("HGET", st, id) or ""
local t = dec(s)
if not t then return {5, b, s} end
local ph = t[2]
if (act == 3 and ph == 3) or (act == 1 and ph == 2) or (act == 2 and ph == 1) then return {1, b, s} end
if ph == 3 or ph == 4 then return {3, b, s} end
if act == 1 then
  t[2] = 2
elseif act == 2 then
  t[2] = 1
  t[11] = math.max(t[11], now)
else
  t[2] = 3
  t[15] = now
  t[10] = 0
end
t[14] = now
s = enc(t)
redis.call("HSET", st, id, s)
bump(meta, ARGV[4])
return {0, b, s}
`)

// advanceScript releases what the pace allows in every running rollout.
//
// KEYS  cfg, st, meta, seen:W, seen:W-1, seen:tmp
// ARGV  1 now, 2 hold µs (> 0: a health hold), 3 wave µs, 4 retention µs,
//
//	5 counting (1/0), 6 dense HyperLogLog to merge or "", 7 window TTL ms,
//	8 known ver, 9 known gen, 10 gen token, 11 pace (clients/s, >= 0;
//	"": none)
//
// It merges the sketch into seen:W, counts seen:W ∪ seen:W-1 (a foreign
// value there is dropped: it is only an estimate), purges rollouts finished
// at least the retention ago, steps every running rollout, and returns
// {population, ver, gen, 0} or {population, ver, gen, 1, ID, rollout,
// state, ...} when (ver, gen) differs from the known one. A pace below a
// rollout's rate slows it as state.step says.
var advanceScript = redis.NewScript(luaPrelude + `
local cfg, st, meta, cur, prev, tmp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now = clock(ARGV[1])
local hold, wave, retention = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pace = nil
if ARGV[11] ~= "" then pace = tonumber(ARGV[11]) end
local fleet = 0
if ARGV[5] == "1" then
  if ARGV[6] ~= "" then
    redis.call("SET", tmp, ARGV[6])
    local r = redis.pcall("PFMERGE", cur, cur, tmp)
    redis.call("DEL", tmp)
    if type(r) == "table" and r.err then redis.call("DEL", cur) end
    redis.call("PEXPIRE", cur, tonumber(ARGV[7]))
  end
  local c = redis.pcall("PFCOUNT", cur, prev)
  if type(c) == "number" then
    fleet = c
  else
    redis.call("DEL", cur, prev)
  end
end
local changed = false
local all = redis.call("HGETALL", st)
for i = 1, #all, 2 do
  local id = all[i]
  local t = dec(all[i + 1])
  if t and expired(t, now, retention) then
    redis.call("HDEL", cfg, id)
    redis.call("HDEL", st, id)
    changed = true
  elseif t and t[2] == 1 then
    t[9] = math.max(t[8], fleet, t[9], 1)
    if hold > 0 then
      t[12] = math.max(t[12], now + hold)
      t[11] = math.max(t[11], now)
    else
      local from = math.max(t[11], t[12])
      if now > from then
        local iv = math.max(t[9] * 1e6 / (t[4] * t[6]), t[7] / t[4])
        local gain, ceil = now - from, iv + wave
        if pace and pace < t[6] then
          local ivp = math.max(t[9] * 1e6 / (t[4] * pace), t[7] / t[4])
          if ivp > iv then
            gain = gain * iv / ivp
            ceil = iv + wave * iv / ivp
          end
        end
        local credit = math.min(t[10] + gain, ceil)
        t[11] = now
        local n = math.floor(credit / iv)
        local left = t[4] - t[5]
        if n > left then n = left end
        t[10] = math.max(0, credit - n * iv)
        if n > 0 then
          t[5] = t[5] + n
          t[14] = now
          if t[5] == t[4] then
            t[2] = 4
            t[15] = now
            t[10] = 0
          end
          changed = true
        end
      end
    end
    redis.call("HSET", st, id, enc(t))
  end
end
if changed then bump(meta, ARGV[10]) end
return snap({fleet}, cfg, st, meta, ARGV[8], ARGV[9])
`)

// snapshotScript returns the released-wave state.
//
// KEYS  cfg, st, meta
// ARGV  1 known ver, 2 known gen
//
// Returns {0, ver, gen, 0} or {0, ver, gen, 1, ID, rollout, state, ...}
// when (ver, gen) differs from the known one.
var snapshotScript = redis.NewScript(luaPrelude + `
return snap({0}, KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
`)

// restoreScript re-registers rollouts a node knows after the store lost
// them: an absent ID is written as known (its pace restarting now and, when
// unfinished, held for the grace), a present one with the same rollout and
// epoch merged (the released count only grows, an abort is kept), one whose
// state does not decode replaced, and a different rollout under the same
// ID left alone.
//
// KEYS  cfg, st, meta
// ARGV  1 now, 2 gen token, 3 grace µs, then (ID, rollout, state) triples
//
// Returns the number of rollouts written.
var restoreScript = redis.NewScript(luaPrelude + `
local cfg, st, meta = KEYS[1], KEYS[2], KEYS[3]
local now = clock(ARGV[1])
local grace = tonumber(ARGV[3])
local seq = tonumber(redis.call("HGET", meta, "seq") or "0") or 0
local n = 0
for i = 4, #ARGV - 2, 3 do
  local id, b, k = ARGV[i], ARGV[i + 1], dec(ARGV[i + 2])
  if k then
    local ob = redis.call("HGET", cfg, id)
    local t = nil
    if ob then t = dec(redis.call("HGET", st, id)) end
    if not ob or (ob == b and not t) then
      k[11] = now
      k[10] = 0
      if grace > 0 and k[2] ~= 3 and k[2] ~= 4 then k[12] = math.max(k[12], now + grace) end
      redis.call("HSET", cfg, id, b)
      redis.call("HSET", st, id, enc(k))
      seq = math.max(seq, k[3])
      n = n + 1
    elseif ob == b and t and t[3] == k[3] then
      local ch = false
      if k[5] > t[5] then
        t[5] = k[5]
        t[14] = now
        ch = true
      end
      if k[2] == 3 and t[2] ~= 3 and t[2] ~= 4 then
        t[2] = 3
        t[15] = now
        t[10] = 0
        t[14] = now
        ch = true
      end
      if t[5] == t[4] and t[2] ~= 4 then
        t[2] = 4
        t[10] = 0
        t[14] = now
        if t[15] == 0 then t[15] = now end
        ch = true
      end
      if ch then
        redis.call("HSET", st, id, enc(t))
        n = n + 1
      end
    end
  end
end
if n > 0 then
  redis.call("HSET", meta, "seq", string.format("%.0f", seq))
  bump(meta, ARGV[2])
end
return n
`)
