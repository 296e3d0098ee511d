package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/limiter/fleet"
)

// errRedisDown is what every Redis command gets during a scenario's
// outage (RedisSpec.Outages): not a reply of Redis, so the components
// take it for a Redis that cannot be reached (a store failure).
var errRedisDown = errors.New("simulate: redis unreachable (a scenario outage, in virtual time)")

// redisHook is the run's go-redis hook: it counts the commands sent and,
// while the simulator holds an outage (down), fails every command at once
// without reaching the server. The outage follows the virtual clock, so a
// run with outages stays deterministic; the breaker never opens (see
// store.redisConfig), so no real-time timer decides anything.
//
// Outside an outage a command that fails for real (the server is slow or
// gone) is recorded in real: the run then ends with an error rather than
// with numbers the failure policy changed depending on the machine.
type redisHook struct {
	ops    *atomic.Int64
	down   *atomic.Bool
	failed *atomic.Int64 // commands an outage failed
	real   *atomic.Pointer[error]
}

func newRedisHook() redisHook {
	return redisHook{ops: new(atomic.Int64), down: new(atomic.Bool), failed: new(atomic.Int64), real: new(atomic.Pointer[error])}
}

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.ops.Add(1)
		if h.down.Load() {
			h.failed.Add(1)
			cmd.SetErr(errRedisDown)
			return errRedisDown
		}
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.ops.Add(int64(len(cmds)))
		if h.down.Load() {
			h.failed.Add(int64(len(cmds)))
			for _, c := range cmds {
				c.SetErr(errRedisDown)
			}
			return errRedisDown
		}
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

// check records the first real store failure.
func (h redisHook) check(err error) {
	if redisguard.IsStoreFailure(err) {
		h.real.CompareAndSwap(nil, &err)
	}
}

// realFailure returns the first real Redis failure of the run, or nil.
func (h redisHook) realFailure() error {
	if p := h.real.Load(); p != nil {
		return fmt.Errorf("simulate: redis failed outside the scenario's outages (the run's numbers would depend on the machine): %w", *p)
	}
	return nil
}

// failurePolicy is the policy of the run's Redis-backed components:
// FailClosed when the scenario has no outage, so that a Redis which
// really fails stops the run; the scenario's redis.failure otherwise.
func failurePolicy(sc *Scenario) fleet.FailurePolicy {
	if len(sc.Redis.Outages) == 0 {
		return fleet.FailClosed
	}
	switch sc.Redis.Failure {
	case FailureOpen:
		return fleet.FailOpen
	case FailureClosed:
		return fleet.FailClosed
	}
	return fleet.FailLocal
}

// deleteKeys deletes the run's keys (its prefix's), and nothing else.
func (st *store) deleteKeys(ctx context.Context) error {
	c := st.redis
	iter := c.Scan(ctx, 0, st.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(keys) > 0 {
		return c.Unlink(ctx, keys...).Err()
	}
	return nil
}

// outage starts (down) or ends outage k of the scenario: Redis becomes
// unreachable, and comes back empty after an outage that loses its data.
func (s *sim) outage(k int, down bool) {
	st := s.prot.st
	if down && s.sc.Redis.Outages[k].LoseData {
		// The deletion's commands are not the run's: SCAN's batches
		// depend on every key in the database, other runs' too, so they
		// are not counted (nothing else sends meanwhile: the components
		// call Redis from this goroutine only).
		n := st.hook.ops.Load()
		ctx, cancel := context.WithTimeout(s.ctx, redisTimeout)
		err := st.deleteKeys(ctx)
		cancel()
		st.hook.ops.Store(n)
		if err != nil {
			s.fail(fmt.Errorf("redis outage %d: delete the run's keys: %w", k, err))
			return
		}
	}
	s.rdown = down
	st.hook.down.Store(down)
}

// tolerate reports whether err, from a coordination call, is one of an
// outage: the failure policy (or the coordinator's cached copy) answered,
// and the run goes on. Any other error stops the run.
func (s *sim) tolerate(err error) bool {
	return s.rdown && err != nil
}

// restoreCounter is the coordinators' log handler: it counts the times a
// node re-registered the rollouts after the store lost them (the restore
// path of invalidate's durability), and drops every record.
type restoreCounter struct{ n *atomic.Int64 }

func (h restoreCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h restoreCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "herdcap: invalidation store lost its rollouts") {
		h.n.Add(1)
	}
	return nil
}

func (h restoreCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h restoreCounter) WithGroup(string) slog.Handler      { return h }

// redisLatency is the protected run's coordination latency, in ns (0 when
// unprotected).
func redisLatency(sc *Scenario, mode Mode) int64 {
	if mode != Protected {
		return 0
	}
	return int64(sc.Redis.Latency)
}

// errOutagesNeedRedis refuses outages on the memory store.
func errOutagesNeedRedis() error {
	return fieldErr("redis.outages", "need the Redis store (Config.Redis; stormsim -redis redis://host:port/db, or stormsim without -redis, which starts a private redis-server when one is installed): the memory store has no Redis to lose, and the failure policy that answers during an outage is the Redis backends' own")
}
