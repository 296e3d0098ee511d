package warmup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// RedisStore is the fleet's store: the Warmers of all nodes given a
// RedisStore on the same Redis, fleet.Redis.Prefix and Name see the same
// warms. Each operation (register, claim, renew, complete, control,
// write-back) is a single Lua script, atomic and one round trip. A warm
// takes five keys, all under the namespace's hash tag {warm:name} so that
// every script stays in one slot of a Redis Cluster (a namespace so lives
// on one cluster node): a hash of counters and phase, the claims in force
// (a sorted set by expiry and a hash of owners), a bitmap of done chunks
// (a bit per chunk: 1,250 bytes for 10,000 chunks), and the failed keys
// (a list bounded by Config.MaxFailedKeys). No item of a source is ever
// written to Redis.
//
// Calls are bounded by fleet.Redis.Timeout (0: 50 ms) and go through a
// circuit breaker (BreakerFailures, BreakerOpen); a call that cannot be
// made fails with ErrUnavailable, and a Warmer then claims nothing and
// holds on to the chunks it finished until Redis is back. A warm lost by
// Redis (a restart without persistence) is written back by the nodes that
// know it (see the package documentation on durability). Claims expire
// by Redis TIME unless the Warmer's Config.Clock is set.
//
// A RedisStore may be used concurrently and starts no goroutine.
type RedisStore struct {
	guard *redisguard.Guard
	base  string // prefix:{warm:name}:
	name  string // the resolved Redis.Name, the breaker's policy in events
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store on r.Client, shared by the nodes that use
// the same Redis, r.Prefix and r.Name (if "", "warmup"). Timeout 0 means
// 50 ms; Node and Heartbeat must be zero (a Warmer's node is its
// Config.Node). A bad field is an error wrapping limiter.ErrInvalidConfig
// that names it (Redis.Name, ...).
func NewRedisStore(r fleet.Redis) (*RedisStore, error) {
	if r.Timeout == 0 {
		r.Timeout = 50 * time.Millisecond
	}
	rc, err := remote.Resolve(remote.Config(r), remote.Use{DefaultName: "warmup", Invalid: limiter.ErrInvalidConfig,
		NoHeartbeat: "the store keeps no live-node set, and a Warmer's node is its Config.Node"})
	if err != nil {
		return nil, err
	}
	return &RedisStore{
		base: rc.Prefix + ":{warm:" + rc.Name + "}:",
		name: rc.Name,
		guard: redisguard.New(rc.Client, redisguard.Settings{Name: "herdcap-warmup-" + rc.Name, Timeout: rc.Timeout,
			Failures: rc.BreakerFailures, OpenFor: rc.BreakerOpen, Logger: slog.New(slog.DiscardHandler)}),
	}, nil
}

// keys returns the keys of warm id: meta claims owners done failed tmp
// items, and node's staging area if node is not "".
func (s *RedisStore) keys(id, node string) []string {
	b := s.base + "w:" + id + ":"
	k := []string{b + "meta", b + "claims", b + "owners", b + "done", b + "failed", b + "tmp", b + "items"}
	if node != "" {
		k = append(k, b+"stage:"+node)
	}
	return k
}

func (s *RedisStore) eval(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	v, err := s.guard.Eval(ctx, sc, keys, args...)
	if err != nil {
		if redisguard.IsStoreFailure(err) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	return v, nil
}

var errReply = errors.New("warmup: unexpected reply from redis")

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *RedisStore) register(ctx context.Context, r regReq) (record, bool, error) {
	k := s.keys(r.id, r.node)
	v, err := s.eval(ctx, scriptRegister, []string{k[0], k[1], k[2], k[3], k[4], k[6], k[7]}, r.keys, r.chunkSize, r.by, r.now, newGen(), b01(r.staged))
	if err != nil {
		return record{}, false, err
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		return record{}, false, errReply
	}
	rec, err := parseDump(r.id, a[1])
	if err != nil {
		return record{}, false, err
	}
	created := a[0] == int64(1)
	if !created && (rec.keys != r.keys || rec.chunkSize != r.chunkSize) {
		return rec, false, conflict(&rec, r)
	}
	return rec, created, nil
}

func (s *RedisStore) get(ctx context.Context, id string) (record, error) {
	v, err := s.eval(ctx, scriptGet, s.keys(id, "")[:5])
	if err != nil {
		return record{}, err
	}
	a, _ := v.([]any)
	if len(a) == 1 {
		return record{}, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	if len(a) != 2 {
		return record{}, errReply
	}
	return parseDump(id, a[1])
}

func (s *RedisStore) claim(ctx context.Context, r claimReq) (claimRes, error) {
	v, err := s.eval(ctx, scriptClaim, s.keys(r.id, "")[:4], r.node, r.now, r.ttlUs)
	if err != nil {
		return claimRes{}, err
	}
	res, err := parseClaim(v)
	return res, err
}

func (s *RedisStore) renew(ctx context.Context, r claimReq, chunk int64) (claimRes, error) {
	v, err := s.eval(ctx, scriptRenew, s.keys(r.id, "")[:3], r.node, r.now, r.ttlUs, chunk)
	if err != nil {
		return claimRes{}, err
	}
	res, err := parseClaim(v)
	res.held, res.chunk = res.chunk == 1, chunk
	return res, err
}

func (s *RedisStore) complete(ctx context.Context, r claimReq, chunk int64, failed []string, nFailed int64, maxFailed int) (claimRes, error) {
	args := make([]any, 0, 5+len(failed))
	args = append(args, r.node, r.now, chunk, nFailed, maxFailed)
	for _, k := range failed {
		args = append(args, k)
	}
	v, err := s.eval(ctx, scriptComplete, s.keys(r.id, "")[:5], args...)
	if err != nil {
		return claimRes{}, err
	}
	return parseClaim(v)
}

func (s *RedisStore) control(ctx context.Context, id string, act action, by By, now int64) (record, bool, error) {
	v, err := s.eval(ctx, scriptControl, s.keys(id, "")[:5], int(act), by.Who, by.Reason, now)
	if err != nil {
		return record{}, false, err
	}
	a, _ := v.([]any)
	if len(a) == 1 {
		return record{}, false, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	if len(a) != 2 {
		return record{}, false, errReply
	}
	rec, err := parseDump(id, a[1])
	if err != nil {
		return record{}, false, err
	}
	switch a[0] {
	case int64(2):
		return rec, false, ErrFinished
	case int64(1):
		return rec, true, nil
	}
	return rec, false, nil
}

func (s *RedisStore) restore(ctx context.Context, r restoreReq) (string, error) {
	rec := &r.rec
	args := make([]any, 0, 19+len(r.held)+len(rec.failedKeys))
	args = append(args, r.node, r.now, r.ttlUs, r.holdUs, r.known, newGen(), int(rec.phase), rec.keys, rec.chunkSize,
		rec.startedBy, rec.by.Who, rec.by.Reason, rec.startedUs, rec.finishedUs, rec.runUs, rec.failed, r.maxFailed,
		string(r.done), len(r.held), b01(rec.staged))
	for _, c := range r.held {
		args = append(args, c)
	}
	for _, k := range rec.failedKeys {
		args = append(args, k)
	}
	v, err := s.eval(ctx, scriptRestore, s.keys(rec.id, r.node), args...)
	if err != nil {
		return "", err
	}
	gen, ok := v.(string)
	if !ok {
		return "", errReply
	}
	return gen, nil
}

func (s *RedisStore) stage(ctx context.Context, id, node string, items []Item, first bool) error {
	args := make([]any, 0, 1+2*len(items))
	args = append(args, b01(first))
	for _, it := range items {
		args = append(args, it.Key, strconv.FormatFloat(it.Weight, 'g', -1, 64))
	}
	_, err := s.eval(ctx, scriptStage, s.keys(id, node)[7:], args...)
	return err
}

func (s *RedisStore) staged(ctx context.Context, id string, from int64, n int) ([]Item, error) {
	k := s.keys(id, "")
	v, err := s.eval(ctx, scriptStaged, []string{k[0], k[6]}, 2*from, 2*(from+int64(n))-1)
	if err != nil {
		return nil, err
	}
	if v == int64(-2) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownWarm, id)
	}
	a, _ := v.([]any)
	out := make([]Item, 0, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		key, _ := a[i].(string)
		ws, _ := a[i+1].(string)
		w, err := strconv.ParseFloat(ws, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: staged item %d of warm %q", errReply, from+int64(i/2), id)
		}
		out = append(out, Item{Key: key, Weight: w})
	}
	return out, nil
}

func parseClaim(v any) (claimRes, error) {
	a, _ := v.([]any)
	if len(a) == 1 && a[0] == int64(-2) {
		return claimRes{missing: true, chunk: -1}, nil
	}
	if len(a) != 3 {
		return claimRes{}, errReply
	}
	p, _ := a[0].(int64)
	c, _ := a[1].(int64)
	gen, _ := a[2].(string)
	return claimRes{phase: Phase(p), chunk: c, gen: gen}, nil
}

// parseDump reads {HGETALL meta, ZCARD claims, LRANGE failed}.
func parseDump(id string, v any) (record, error) {
	a, _ := v.([]any)
	if len(a) != 3 {
		return record{}, errReply
	}
	h, _ := a[0].([]any)
	rec := record{id: id}
	var phase, size, lastDone int64
	var staged int64
	ints := map[string]*int64{"phase": &phase, "staged": &staged, "keys": &rec.keys, "size": &size, "next": &rec.next,
		"doneChunks": &rec.doneChunks, "lastDone": &lastDone, "failed": &rec.failed, "startedUs": &rec.startedUs,
		"updatedUs": &rec.updatedUs, "finishedUs": &rec.finishedUs, "runUs": &rec.runUs, "resumedUs": &rec.resumedUs,
		"holdUs": &rec.holdUs}
	strs := map[string]*string{"startedBy": &rec.startedBy, "byWho": &rec.by.Who, "byReason": &rec.by.Reason, "gen": &rec.gen}
	for i := 0; i+1 < len(h); i += 2 {
		k, _ := h[i].(string)
		val, _ := h[i+1].(string)
		if p := ints[k]; p != nil {
			*p, _ = strconv.ParseInt(val, 10, 64)
		} else if p := strs[k]; p != nil {
			*p = val
		}
	}
	rec.phase, rec.chunkSize, rec.lastDone, rec.staged = Phase(phase), int(size), lastDone == 1, staged == 1
	if rec.chunkSize < 1 || rec.phase < Running || rec.phase > Done {
		return record{}, fmt.Errorf("%w: warm %q has a corrupt state", errReply, id)
	}
	rec.claimed, _ = a[1].(int64)
	list, _ := a[2].([]any)
	for _, k := range list {
		if s, ok := k.(string); ok {
			rec.failedKeys = append(rec.failedKeys, s)
		}
	}
	return rec, nil
}
