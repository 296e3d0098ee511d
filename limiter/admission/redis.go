package admission

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/bucketkey"
	"github.com/herdcap/herdcap/internal/bucketlua"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// admitScript is one admission decision, atomically, in one round trip.
//
// KEYS[1]  the gate's token bucket (see bucketlua.Lib)
// KEYS[2]  the client's booked slot: a string, the slot's time in µs
// ARGV[1]  refill rate in tokens per microsecond
// ARGV[2]  burst in tokens
// ARGV[3]  now in µs since the Unix epoch, or "" to use Redis TIME
// ARGV[4]  horizon: book at most this many µs ahead
// ARGV[5]  grace: a slot is honoured until this many µs after its time
//
// It returns {status, µs}: {0, 0} admitted now; {1, wait} slot booked wait
// µs ahead; {2, 0} the client came back for its slot (admitted, nothing
// taken); {3, wait} the client came early, its slot is wait µs ahead;
// {4, wait} the next slot is wait µs ahead, past the horizon, and nothing
// was booked. The bucket arithmetic is that of fleet's bucket script in
// reserve mode (and memStore's, step for step). The slot key expires (PX) after the
// grace, but expiry is also judged against now, so that an injected clock
// sees the same as the memory store.
var admitScript = redis.NewScript(bucketlua.Lib + `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local horizon = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
local now = clock(ARGV[3])
if rate == nil or burst == nil or horizon == nil or grace == nil or now == nil then
  return redis.error_reply("herdcap: bad arguments")
end
local slot = tonumber(redis.call("GET", KEYS[2]))
if slot ~= nil then
  if now < slot then
    return {3, slot - now}
  end
  redis.call("DEL", KEYS[2])
  if now < slot + grace then
    return {2, 0}
  end
end
local tokens, ts = loadBucket(KEYS[1], rate, burst, now)
local wait = 0
if tokens < 1 then
  wait = math.min(math.ceil((1 - tokens) / rate), 9e15)
end
if wait > horizon then
  return {4, wait}
end
tokens = tokens - 1
local reset = math.min(math.ceil((burst - tokens) / rate), 9e15)
storeBucket(KEYS[1], tokens, ts, reset)
if wait > 0 then
  redis.call("SET", KEYS[2], string.format("%.0f", now + wait), "PX", math.ceil((wait + grace) / 1000) + 1)
  return {1, wait}
end
return {0, 0}
`)

// redisDecide runs admitScript for id. An error is the eval's (for the
// failure policy to judge) or, for a reply that parses badly,
// fleet.ErrUnexpectedReply.
func (g *Gate) redisDecide(ctx context.Context, id string, t time.Time, lim limiter.Limit) (status, time.Duration, error) {
	v, err := g.link.Eval(ctx, admitScript, []string{g.bucketKey, g.slotPrefix + bucketkey.Tag(id)},
		lim.PerSecond()/1e6, lim.Burst, bucketlua.NowArg(t, g.injected), g.horizon.Microseconds(), g.grace.Microseconds())
	if err != nil {
		return 0, 0, err
	}
	return parseAdmitReply(v)
}

// parseAdmitReply turns admitScript's reply into a status and a wait. A
// reply the script cannot produce is fleet.ErrUnexpectedReply.
func parseAdmitReply(v any) (status, time.Duration, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return 0, 0, fmt.Errorf("%w: admission: want {status, µs}, got %T %v", fleet.ErrUnexpectedReply, v, v)
	}
	st, ok1 := a[0].(int64)
	us, ok2 := a[1].(int64)
	if !ok1 || !ok2 || st < 0 || st > int64(admitDeferred) || us < 0 {
		return 0, 0, fmt.Errorf("%w: admission: want {status 0-4, µs >= 0}, got %v", fleet.ErrUnexpectedReply, v)
	}
	return status(st), time.Duration(us) * time.Microsecond, nil
}
