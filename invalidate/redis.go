package invalidate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// RedisStore keeps the rollouts of a namespace in Redis, for a fleet: every
// node has one on the same Redis, fleet.Redis.Prefix and Name (the
// namespace). Every operation is one Lua script (one round trip, atomic),
// and every key of the namespace shares one hash tag ({inv:namespace}), so
// the store works on Redis Cluster: the multi-key scripts (advance touches
// six keys) are legal there only because all their keys hash to one slot.
// The price is that a namespace lives on one cluster node; use several
// namespaces to spread independent sets of rollouts. Times come from Redis
// TIME unless the coordinator has an injected clock.
//
// Each call has fleet.Redis.Timeout and passes through a circuit breaker
// (fleet.Redis.BreakerFailures, BreakerOpen); while it is open no Redis
// call is made and operations fail at once with ErrUnavailable (AppendDue
// then answers from the state it last read). If Redis loses its data (a
// restart without persistence), the coordinators that knew the rollouts
// re-register them (see the package documentation on durability).
//
// A RedisStore is safe for concurrent use and holds no goroutine.
type RedisStore struct {
	c      redis.UniversalClient
	r      fleet.Redis // resolved
	guard  *redisguard.Guard
	log    atomic.Pointer[slog.Logger] // the breaker's, from the first coordinator with one
	keys   [3]string                   // cfg, st, meta
	base   string                      // prefix:{inv:ns}:
	starts string                      // the limiter name of the default guard start budget
}

var _ Store = (*RedisStore)(nil)

// defaultStoreTimeout is the store's fleet.Redis.Timeout when it is 0:
// longer than the fleet budgets' 20 ms, because a snapshot carries every rollout
// of the namespace.
const defaultStoreTimeout = 50 * time.Millisecond

// NewRedisStore returns a store on r.Client, shared by the nodes that use
// the same Redis, r.Prefix and r.Name. It reads r's fields as
// fleet.Redis documents them, except:
//   - Name is the namespace of the rollouts: if Name is "", "default";
//   - Timeout: if it is 0, 50 ms (a snapshot carries every rollout);
//   - Node and Heartbeat must be zero: the store keeps no live-node set,
//     and the node a coordinator acts as is its Config.Node.
//
// A bad field is an error wrapping ErrInvalidConfig that names it
// (Redis.Name, Redis.Node, ...). Breaker transitions are logged through the
// Config.Logger of the first coordinator made on the store with one.
func NewRedisStore(r fleet.Redis) (*RedisStore, error) {
	if r.Timeout == 0 {
		r.Timeout = defaultStoreTimeout
	}
	rc, err := remote.Resolve(remote.Config(r), remote.Use{DefaultName: "default", Invalid: ErrInvalidConfig,
		NoHeartbeat: "the store keeps no live-node set, and a coordinator's node is its Config.Node"})
	if err != nil {
		return nil, err
	}
	r = fleet.Redis(rc)
	s := &RedisStore{c: r.Client, r: r, base: r.Prefix + ":{inv:" + r.Name + "}:"}
	s.keys = [3]string{s.base + "cfg", s.base + "st", s.base + "meta"}
	s.starts = "inv-starts-" + r.Name
	if len(s.starts) > 64 { // the limiter's bound on names
		sum := sha256.Sum256([]byte(r.Name))
		s.starts = "inv-starts-" + hex.EncodeToString(sum[:16])
	}
	s.guard = redisguard.New(r.Client, redisguard.Settings{
		Name:     "herdcap-invalidate-" + r.Name,
		Timeout:  r.Timeout,
		Failures: r.BreakerFailures,
		OpenFor:  r.BreakerOpen,
		Logger:   slog.New(lateHandler{l: &s.log}),
	})
	return s, nil
}

// attachLogger makes l the logger of the store's breaker, unless a
// coordinator gave one before.
func (s *RedisStore) attachLogger(l *slog.Logger) { s.log.CompareAndSwap(nil, l) }

func (s *RedisStore) name() string { return "redis" }

// startBudget returns the store's guard start budget: a fleet.Strict on the
// same client, prefix, time limit and breaker settings, named after the
// namespace, so that every node of the fleet draws on the same buckets, on
// clock (nil: Redis TIME). It fails closed: a guarded start that cannot be
// counted is refused (the store it would be written to is then unlikely to
// answer either). A fleet.Strict runs worker goroutines until closed, and
// a RedisStore holds nothing that needs closing, so each guarded start
// opens one and done closes it: the buckets live in Redis, and guarded
// starts are rare (a few per node per ten minutes), so nothing is lost but
// a few goroutine starts.
func (s *RedisStore) startBudget(clock limiter.Clock) (limiter.Budget, func(), error) {
	b, err := fleet.NewStrict(fleet.Redis{Client: s.c, Prefix: s.r.Prefix, Name: s.starts, Timeout: s.r.Timeout,
		BreakerFailures: s.r.BreakerFailures, BreakerOpen: s.r.BreakerOpen}, defaultGuardStarts,
		fleet.Config{Config: limiter.Config{Clock: clock}, Failure: fleet.FailClosed, Logger: s.log.Load()})
	if err != nil {
		return nil, nil, err
	}
	return b, func() { _ = b.Close() }, nil
}

// breakerOpen is how long the store's breaker stays open: the longest a
// node may make no Redis call after Redis comes back.
func (s *RedisStore) breakerOpen() time.Duration { return s.r.BreakerOpen }

// eval runs script through the breaker, within the timeout. A store
// failure comes back wrapped in ErrUnavailable; the caller's own
// cancellation as is.
func (s *RedisStore) eval(ctx context.Context, sc *redis.Script, keys []string, args ...any) (any, error) {
	v, err := s.guard.Eval(ctx, sc, keys, args...)
	switch {
	case err == nil:
		return v, nil
	case ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded):
		return nil, ctx.Err()
	case redisguard.IsStoreFailure(err):
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil, fmt.Errorf("%w: redis answered: %w", ErrCorrupt, err)
}

func timeArg(t stamp) string {
	if t.server {
		return ""
	}
	return strconv.FormatInt(t.us, 10)
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func (s *RedisStore) start(ctx context.Context, req startReq) (startRes, error) {
	g := 0
	if req.st.guarded {
		g = 1
	}
	dry := 0
	if req.dryRun {
		dry = 1
	}
	v, err := s.eval(ctx, startScript, s.keys[:],
		req.r.ID, encodeRollout(req.r), req.st.epoch, timeArg(req.now),
		req.floor, req.max, req.retention, req.gen,
		req.st.cohorts, fmtFloat(req.st.rate), req.st.minDur, req.st.clients, g,
		req.st.pop, req.jump, req.holdUs, dry)
	if err != nil {
		return startRes{}, err
	}
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return startRes{}, replyErr(v)
	}
	code, _ := a[0].(int64)
	switch {
	case code == 0 && len(a) == 2:
		text, ok := a[1].(string)
		if !ok {
			return startRes{}, replyErr(v)
		}
		st, err := decodeState(text)
		if err != nil {
			return startRes{}, err
		}
		return startRes{code: startCreated, rec: record{r: req.r, st: st}}, nil
	case code == 1 && len(a) == 3:
		blob, ok1 := a[1].(string)
		text, ok2 := a[2].(string)
		if !ok1 || !ok2 {
			return startRes{}, replyErr(v)
		}
		rec, err := decodeRecord(req.r.ID, []byte(blob), text)
		return startRes{code: startExists, rec: rec, err: err}, nil
	case code == 3 && len(a) == 2:
		str, _ := a[1].(string)
		seq, err := strconv.ParseUint(str, 10, 64)
		if err != nil {
			return startRes{}, replyErr(v)
		}
		return startRes{code: startBackwards, seq: seq}, nil
	case code == 4 && len(a) == 1:
		return startRes{code: startTooMany}, nil
	case code == 5 && len(a) == 1:
		return startRes{code: startWouldCreate}, nil
	case code == 6 && len(a) == 3:
		s1, _ := a[1].(string)
		s2, _ := a[2].(string)
		seq, err1 := strconv.ParseUint(s1, 10, 64)
		ceil, err2 := strconv.ParseUint(s2, 10, 64)
		if err1 != nil || err2 != nil {
			return startRes{}, replyErr(v)
		}
		return startRes{code: startTooFar, seq: seq, ceil: ceil}, nil
	}
	return startRes{}, replyErr(v)
}

func (s *RedisStore) get(ctx context.Context, id string) (record, error) {
	v, err := s.eval(ctx, getScript, s.keys[:2], id)
	if err != nil {
		return record{}, err
	}
	a, ok := v.([]any)
	if !ok || len(a) > 2 {
		return record{}, replyErr(v)
	}
	// Lua turns a missing field into nil, which ends the reply array.
	if len(a) == 0 || a[0] == nil {
		return record{}, ErrUnknownRollout
	}
	blob, ok1 := a[0].(string)
	text := ""
	ok2 := true
	if len(a) == 2 && a[1] != nil {
		text, ok2 = a[1].(string)
	}
	if !ok1 || !ok2 {
		return record{}, replyErr(v)
	}
	return decodeRecord(id, []byte(blob), text)
}

func (s *RedisStore) control(ctx context.Context, id string, act action, now stamp, gen string) (record, bool, error) {
	v, err := s.eval(ctx, controlScript, s.keys[:], id, int(act), timeArg(now), gen)
	if err != nil {
		return record{}, false, err
	}
	a, ok := v.([]any)
	if !ok || len(a) == 0 {
		return record{}, false, replyErr(v)
	}
	code, _ := a[0].(int64)
	if code == 2 && len(a) == 1 {
		return record{}, false, ErrUnknownRollout
	}
	if len(a) != 3 {
		return record{}, false, replyErr(v)
	}
	blob, ok1 := a[1].(string)
	text, ok2 := a[2].(string)
	if !ok1 || !ok2 {
		return record{}, false, replyErr(v)
	}
	rec, err := decodeRecord(id, []byte(blob), text)
	switch {
	case err != nil:
		return record{}, false, err
	case code == 0:
		return rec, true, nil
	case code == 1:
		return rec, false, nil
	case code == 3:
		return rec, false, ErrFinished
	}
	return record{}, false, replyErr(v)
}

func (s *RedisStore) advance(ctx context.Context, req advanceReq) (advanceRes, error) {
	counting := "0"
	w := req.window
	if w >= 0 {
		counting = "1"
	} else {
		w = 0
	}
	keys := []string{s.keys[0], s.keys[1], s.keys[2],
		s.base + "seen:" + strconv.FormatInt(w, 10),
		s.base + "seen:" + strconv.FormatInt(w-1, 10),
		s.base + "seen:tmp"}
	v, err := s.eval(ctx, advanceScript, keys,
		timeArg(req.now), req.holdUs, req.waveUs, req.retention,
		counting, req.sketch, max(req.windowTTL, 1), req.known.ver, req.known.gen, req.gen, paceArg(req.pace))
	if err != nil {
		return advanceRes{}, err
	}
	pop, snap, err := parseSnapshot(v)
	if err != nil {
		return advanceRes{}, err
	}
	return advanceRes{pop: pop, snap: snap}, nil
}

func (s *RedisStore) snapshot(ctx context.Context, known version) (snapshot, error) {
	v, err := s.eval(ctx, snapshotScript, s.keys[:], known.ver, known.gen)
	if err != nil {
		return snapshot{}, err
	}
	_, snap, err := parseSnapshot(v)
	return snap, err
}

func (s *RedisStore) restore(ctx context.Context, recs []record, now stamp, graceUs int64, gen string) (int, error) {
	args := make([]any, 0, 3+3*len(recs))
	args = append(args, timeArg(now), gen, graceUs)
	for _, r := range recs {
		args = append(args, r.r.ID, encodeRollout(r.r), r.st.encode())
	}
	v, err := s.eval(ctx, restoreScript, s.keys[:], args...)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, replyErr(v)
	}
	return int(n), nil
}

// parseSnapshot reads {population, ver, gen, changed, (ID, rollout,
// state)...}. Records that do not decode are counted and skipped, so one
// damaged record does not hide the others.
func parseSnapshot(v any) (int64, snapshot, error) {
	a, ok := v.([]any)
	if !ok || len(a) < 4 || (len(a)-4)%3 != 0 {
		return 0, snapshot{}, replyErr(v)
	}
	pop, ok1 := a[0].(int64)
	verS, ok2 := a[1].(string)
	gen, ok3 := a[2].(string)
	changed, ok4 := a[3].(int64)
	ver, err := strconv.ParseUint(verS, 10, 64)
	if !ok1 || !ok2 || !ok3 || !ok4 || err != nil || pop < 0 || changed > 1 || changed < 0 {
		return 0, snapshot{}, replyErr(v)
	}
	s := snapshot{ver: version{ver: ver, gen: gen}, changed: changed == 1}
	if !s.changed && len(a) > 4 {
		return 0, snapshot{}, replyErr(v)
	}
	if s.changed {
		s.recs = make([]record, 0, (len(a)-4)/3)
	}
	for i := 4; i+2 < len(a); i += 3 {
		id, ok1 := a[i].(string)
		blob, ok2 := a[i+1].(string)
		text, ok3 := a[i+2].(string)
		if !ok1 || !ok2 || !ok3 {
			s.corrupt++
			continue
		}
		rec, err := decodeRecord(id, []byte(blob), text)
		if err != nil {
			s.corrupt++
			continue
		}
		s.recs = append(s.recs, rec)
	}
	return pop, s, nil
}

func replyErr(v any) error {
	return fmt.Errorf("%w: unexpected reply from redis: %T %.200v", ErrCorrupt, v, v)
}

// lateHandler hands records to the logger a coordinator attaches after the
// store was made, and drops them until one is.
type lateHandler struct {
	l    *atomic.Pointer[slog.Logger]
	with func(slog.Handler) slog.Handler // attributes and groups added, nil: none
}

// handler returns the attached logger's handler with h's additions, or nil.
func (h lateHandler) handler() slog.Handler {
	l := h.l.Load()
	if l == nil {
		return nil
	}
	if h.with != nil {
		return h.with(l.Handler())
	}
	return l.Handler()
}

func (h lateHandler) Enabled(ctx context.Context, lvl slog.Level) bool {
	next := h.handler()
	return next != nil && next.Enabled(ctx, lvl)
}

func (h lateHandler) Handle(ctx context.Context, r slog.Record) error {
	if next := h.handler(); next != nil {
		return next.Handle(ctx, r)
	}
	return nil
}

func (h lateHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.then(func(next slog.Handler) slog.Handler { return next.WithAttrs(attrs) })
}

func (h lateHandler) WithGroup(name string) slog.Handler {
	return h.then(func(next slog.Handler) slog.Handler { return next.WithGroup(name) })
}

func (h lateHandler) then(f func(slog.Handler) slog.Handler) lateHandler {
	prev := h.with
	if prev == nil {
		return lateHandler{l: h.l, with: f}
	}
	return lateHandler{l: h.l, with: func(next slog.Handler) slog.Handler { return f(prev(next)) }}
}

// paceArg is the advance script's pace argument: "" when not paced (+Inf,
// which Lua's tonumber would not read back), else the shortest decimal
// that reads back as the same double.
func paceArg(p float64) string {
	if math.IsInf(p, 1) {
		return ""
	}
	return strconv.FormatFloat(p, 'g', -1, 64)
}
