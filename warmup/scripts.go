package warmup

import "github.com/redis/go-redis/v9"

// The Lua twins of MemoryStore's methods. Every key of a namespace shares
// the hash tag {warm:name}, so each script touches one cluster slot. Times
// are µs since the Unix epoch; a negative now means Redis TIME. Numbers
// are written with %.0f: Lua's tostring would write 1.7e+15.
const luaPrelude = `
local function s(x) return string.format('%.0f', x) end
local function now_of(a)
  local n = tonumber(a)
  if n < 0 then
    local t = redis.call('TIME')
    n = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return n
end
local function num(k, f) return tonumber(redis.call('HGET', k, f) or '0') end
local function chunks(k)
  local keys, size = num(k, 'keys'), num(k, 'size')
  return math.floor((keys + size - 1) / size)
end
local function running(k, now)
  local run = num(k, 'runUs')
  if num(k, 'phase') == 1 and now > num(k, 'resumedUs') then
    run = run + now - num(k, 'resumedUs')
  end
  return run
end
-- finish marks the warm done once every chunk is (KEYS[1] meta, [2] claims, [3] owners).
local function finish(now)
  local p = num(KEYS[1], 'phase')
  if num(KEYS[1], 'doneChunks') >= chunks(KEYS[1]) and (p == 1 or p == 2) then
    redis.call('HSET', KEYS[1], 'runUs', s(running(KEYS[1], now)), 'phase', 4, 'finishedUs', s(now), 'updatedUs', s(now))
    redis.call('DEL', KEYS[2], KEYS[3])
  end
end
local function dump()
  return {redis.call('HGETALL', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('LRANGE', KEYS[5], 0, -1)}
end
`

// KEYS: meta claims owners done failed items stage. ARGV: keys size by
// now gen staged.
var scriptRegister = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DEL', KEYS[7])
  return {0, dump()}
end
local now = now_of(ARGV[4])
redis.call('DEL', KEYS[6])
if ARGV[6] == '1' and redis.call('EXISTS', KEYS[7]) == 1 then redis.call('RENAME', KEYS[7], KEYS[6]) end
redis.call('HSET', KEYS[1], 'phase', 1, 'keys', ARGV[1], 'size', ARGV[2], 'startedBy', ARGV[3], 'staged', ARGV[6],
  'next', 0, 'doneChunks', 0, 'lastDone', 0, 'failed', 0, 'startedUs', s(now), 'updatedUs', s(now),
  'finishedUs', 0, 'runUs', 0, 'resumedUs', s(now), 'holdUs', 0, 'gen', ARGV[5])
finish(now)
return {1, dump()}
`)

// KEYS: meta claims owners done failed.
var scriptGet = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
return {0, dump()}
`)

// KEYS: meta claims owners done. ARGV: node now ttl.
var scriptClaim = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local now = now_of(ARGV[2])
local phase, gen = num(KEYS[1], 'phase'), redis.call('HGET', KEYS[1], 'gen')
if phase ~= 1 or now < num(KEYS[1], 'holdUs') then return {phase, -1, gen} end
local chunk = -1
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', s(now))) do
  if redis.call('GETBIT', KEYS[4], c) == 1 then
    -- done by another node after this claim was taken over: drop it
    redis.call('ZREM', KEYS[2], c)
    redis.call('HDEL', KEYS[3], c)
  else
    c = tonumber(c)
    if chunk < 0 or c < chunk then chunk = c end
  end
end
if chunk < 0 then
  local n, total = num(KEYS[1], 'next'), chunks(KEYS[1])
  while n < total and redis.call('GETBIT', KEYS[4], n) == 1 do n = n + 1 end
  if n < total then
    chunk = n
    n = n + 1
  end
  redis.call('HSET', KEYS[1], 'next', s(n))
end
if chunk >= 0 then
  redis.call('ZADD', KEYS[2], s(now + tonumber(ARGV[3])), s(chunk))
  redis.call('HSET', KEYS[3], s(chunk), ARGV[1])
end
return {phase, chunk, gen}
`)

// KEYS: meta claims owners. ARGV: node now ttl chunk.
var scriptRenew = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local now = now_of(ARGV[2])
local held = 0
if redis.call('HGET', KEYS[3], ARGV[4]) == ARGV[1] and redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  redis.call('ZADD', KEYS[2], s(now + tonumber(ARGV[3])), ARGV[4])
  held = 1
end
return {num(KEYS[1], 'phase'), held, redis.call('HGET', KEYS[1], 'gen')}
`)

// KEYS: meta claims owners done failed. ARGV: node now chunk nFailed
// maxFailed failedKeys...
var scriptComplete = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local now = now_of(ARGV[2])
local c = tonumber(ARGV[3])
if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[1] then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('HDEL', KEYS[3], ARGV[3])
end
local total = chunks(KEYS[1])
if c >= 0 and c < total and redis.call('SETBIT', KEYS[4], c, 1) == 0 then
  redis.call('HINCRBY', KEYS[1], 'doneChunks', 1)
  if c == total - 1 then redis.call('HSET', KEYS[1], 'lastDone', 1) end
  redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
  local max = tonumber(ARGV[5])
  for i = 6, #ARGV do redis.call('LPUSH', KEYS[5], ARGV[i]) end
  if max > 0 then redis.call('LTRIM', KEYS[5], 0, max - 1) else redis.call('DEL', KEYS[5]) end
  redis.call('HSET', KEYS[1], 'updatedUs', s(now))
  finish(now)
end
return {num(KEYS[1], 'phase'), c, redis.call('HGET', KEYS[1], 'gen')}
`)

// KEYS: meta claims owners done failed. ARGV: act who reason now.
// Reply: {code, dump}: 0 unchanged, 1 changed, 2 finished; {-2} missing.
var scriptControl = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local now = now_of(ARGV[4])
local act, p = tonumber(ARGV[1]), num(KEYS[1], 'phase')
if p == 4 or (p == 3 and act ~= 3) then return {2, dump()} end
if (act == 3 and p == 3) or (act == 1 and p == 2) or (act == 2 and p == 1) then return {0, dump()} end
redis.call('HSET', KEYS[1], 'runUs', s(running(KEYS[1], now)))
if act == 1 then
  redis.call('HSET', KEYS[1], 'phase', 2)
elseif act == 2 then
  redis.call('HSET', KEYS[1], 'phase', 1, 'resumedUs', s(now))
else
  redis.call('HSET', KEYS[1], 'phase', 3, 'finishedUs', s(now))
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('HSET', KEYS[1], 'byWho', ARGV[2], 'byReason', ARGV[3], 'updatedUs', s(now))
return {1, dump()}
`)

// KEYS: meta claims owners done failed tmp items stage. ARGV: node now ttl
// hold known gen phase keys size startedBy byWho byReason startedUs
// finishedUs runUs failed maxFailed done nHeld staged held... failedKeys...
var scriptRestore = redis.NewScript(luaPrelude + `
local now = now_of(ARGV[2])
local function take_stage()
  if redis.call('HGET', KEYS[1], 'staged') == '1' and redis.call('EXISTS', KEYS[7]) == 0
      and redis.call('EXISTS', KEYS[8]) == 1 then
    redis.call('RENAME', KEYS[8], KEYS[7])
  end
  redis.call('DEL', KEYS[8])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  redis.call('HSET', KEYS[1], 'phase', ARGV[7], 'keys', ARGV[8], 'size', ARGV[9], 'startedBy', ARGV[10], 'staged', ARGV[20],
    'byWho', ARGV[11], 'byReason', ARGV[12], 'next', 0, 'doneChunks', 0, 'lastDone', 0, 'failed', 0,
    'startedUs', ARGV[13], 'updatedUs', s(now), 'finishedUs', ARGV[14], 'runUs', ARGV[15],
    'resumedUs', s(now), 'holdUs', s(now + tonumber(ARGV[4])), 'gen', ARGV[6])
elseif redis.call('HGET', KEYS[1], 'gen') == ARGV[5] then
  take_stage()
  return redis.call('HGET', KEYS[1], 'gen')
end
take_stage()
local total = chunks(KEYS[1])
if #ARGV[18] > 0 then
  redis.call('SET', KEYS[6], ARGV[18])
  redis.call('BITOP', 'OR', KEYS[4], KEYS[4], KEYS[6])
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[1], 'doneChunks', redis.call('BITCOUNT', KEYS[4]), 'lastDone', redis.call('GETBIT', KEYS[4], total - 1))
end
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[16])
local nHeld = tonumber(ARGV[19])
for i = 21, 20 + nHeld do
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) and redis.call('GETBIT', KEYS[4], ARGV[i]) == 0 then
    redis.call('ZADD', KEYS[2], s(now + tonumber(ARGV[3])), ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[1])
  end
end
local max = tonumber(ARGV[17])
for i = 21 + nHeld, #ARGV do redis.call('RPUSH', KEYS[5], ARGV[i]) end
if max > 0 then redis.call('LTRIM', KEYS[5], 0, max - 1) else redis.call('DEL', KEYS[5]) end
local p = num(KEYS[1], 'phase')
if tonumber(ARGV[7]) == 3 and (p == 1 or p == 2) then
  redis.call('HSET', KEYS[1], 'runUs', s(running(KEYS[1], now)), 'phase', 3, 'finishedUs', s(now),
    'byWho', ARGV[11], 'byReason', ARGV[12])
  redis.call('DEL', KEYS[2], KEYS[3])
end
if p == 1 then finish(now) end
return redis.call('HGET', KEYS[1], 'gen')
`)

// KEYS: stage. ARGV: first key weight key weight ...
var scriptStage = redis.NewScript(`
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
if #ARGV > 1 then redis.call('RPUSH', KEYS[1], unpack(ARGV, 2)) end
return 1
`)

// KEYS: meta items. ARGV: first last (list indexes).
var scriptStaged = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
return redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])
`)
