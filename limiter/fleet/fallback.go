package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisguard"
)

// remote is what the Redis and Leased backends share: the client, the
// breaker and time budget around every call, the fallback for when Redis
// cannot answer, and the live-node heartbeat the fallback divides the limit
// by.
type remote struct {
	client   redis.UniversalClient
	o        options
	guard    *redisguard.Guard
	fallback *Local
	live     atomic.Int64
	nodesKey string

	stop      chan struct{} // closed by close
	closeOnce sync.Once
	wg        sync.WaitGroup
}

func newRemote(c redis.UniversalClient, kind backendKind, opts []Option) (*remote, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: redis client is nil", ErrInvalidOption)
	}
	o, err := buildOptions(kind, opts)
	if err != nil {
		return nil, err
	}
	if err := redisguard.CheckClient(c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
	}
	if o.nodeID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.nodeID = hex.EncodeToString(b[:])
	}
	r := &remote{
		client:   c,
		o:        o,
		nodesKey: o.prefix + ":" + o.name + ":nodes",
		stop:     make(chan struct{}),
	}
	r.live.Store(1)
	// The fallback starts at the full limit; decideFallback sets its share.
	fo := o
	fo.ramp = 0
	r.fallback = newLocal(Limit{Rate: 1, Burst: 1}, fo)
	r.guard = redisguard.New(c, redisguard.Settings{
		Name:     "herdcap-" + o.name,
		Timeout:  o.timeout,
		Failures: o.brFailures,
		OpenFor:  o.brOpen,
		Logger:   o.logger.With("policy", o.failure.String()),
	})
	return r, nil
}

// startHeartbeat announces the node once, synchronously, then every
// heartbeat interval until close.
func (r *remote) startHeartbeat() {
	r.beat(true)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tk := time.NewTicker(r.o.heartbeat)
		defer tk.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tk.C:
				r.beat(true)
			}
		}
	}()
}

// beat records (or, with add false, removes) this node in the live-node set
// and stores the live count. Failures keep the last count.
func (r *remote) beat(add bool) {
	flag := "0"
	if add {
		flag = "1"
	}
	ttl := 3 * r.o.heartbeat.Milliseconds()
	v, err := r.eval(context.Background(), heartbeatScript, []string{r.nodesKey}, r.o.nodeID, ttl, flag)
	if err != nil {
		r.o.logger.Debug("herdcap: heartbeat failed", "name", r.o.name, "err", err)
		return
	}
	if n, ok := v.(int64); ok && add {
		r.live.Store(max(1, n))
	}
}

// close stops the heartbeat and leaves the live-node set. It is idempotent
// and safe for concurrent use: the first call does the work, and every call
// returns once it is done.
func (r *remote) close() {
	r.closeOnce.Do(func() {
		close(r.stop)
		r.wg.Wait()
		r.beat(false)
		_ = r.fallback.Close()
	})
}

func (r *remote) closed() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// eval runs script through the breaker, within the time budget.
func (r *remote) eval(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	return r.guard.Eval(ctx, s, keys, args...)
}

// isStoreFailure: see redisguard.IsStoreFailure.
var isStoreFailure = redisguard.IsStoreFailure

// failed turns a failed call into the failure policy's answer. It returns
// (decision, error, true) when err was a store failure, and false when the
// caller must report err itself.
func (r *remote) failed(ctx context.Context, err error, key string, t time.Time, n int, upTo bool, lim Limit, gen uint64, ramping bool) (Decision, error, bool) {
	if ctx.Err() != nil && !isTimeout(err) {
		return Decision{Limit: lim}, ctx.Err(), true
	}
	if !isStoreFailure(err) {
		return Decision{Limit: lim}, fmt.Errorf("%w: %w", ErrUnexpectedReply, err), true
	}
	switch r.o.failure {
	case FailOpen:
		return Decision{Allowed: true, Taken: n, Limit: lim, Source: SourceFallback}, nil, true
	case FailClosed:
		return Decision{Limit: lim, RetryAfter: r.o.brOpen, Source: SourceFallback}, fmt.Errorf("%w: %w", ErrUnavailable, err), true
	}
	live := max(1, r.live.Load())
	share := Limit{
		Rate:   lim.Rate / float64(live),
		Period: lim.Period,
		Burst:  int(math.Ceil(float64(lim.Burst) / float64(live))),
	}
	if n > share.Burst && !upTo {
		return Decision{Limit: share, RetryAfter: r.o.brOpen, Source: SourceFallback}, nil, true
	}
	var d Decision
	ferr := r.fallback.decideLimit(&d, key, t, n, upTo, share, gen<<20|uint64(live), ramping, SourceFallback)
	return d, ferr, true
}

func isTimeout(err error) bool { return errors.Is(err, context.DeadlineExceeded) }
