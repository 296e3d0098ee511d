// Package remote is a fleet component's link to its Redis: the connection
// settings of fleet.Redis, validated and resolved; every call through the
// time limit and circuit breaker (redisguard); and the live-node heartbeat
// that the FailLocal policy divides a limit by. fleet.Strict, fleet.Leased
// and the shared admission gate each hold one.
package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/periodic"
	"github.com/herdcap/herdcap/internal/redisguard"
	"github.com/herdcap/herdcap/internal/sysclock"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/observe"
)

// Config has the shape of fleet.Redis, field for field, so that fleet.Redis
// converts to it with a plain type conversion (fleet imports this package,
// so it cannot use fleet's type). See fleet.Redis for the fields.
type Config struct {
	Client          redis.UniversalClient
	Name            string
	Prefix          string
	Node            string
	Timeout         time.Duration
	BreakerFailures int
	BreakerOpen     time.Duration
	Heartbeat       time.Duration
}

// Defaults of Config's zero values.
const (
	DefaultPrefix          = "herdcap"
	DefaultTimeout         = 20 * time.Millisecond
	DefaultBreakerFailures = 3
	DefaultBreakerOpen     = time.Second
	DefaultHeartbeat       = time.Second
	// MinHeartbeat is the shortest heartbeat interval accepted.
	MinHeartbeat = 10 * time.Millisecond
	// MaxNodeLen is the longest node name accepted, in bytes.
	MaxNodeLen = 256
)

// Use is what a component makes of its Config.
type Use struct {
	// DefaultName is the Name when Config.Name is "".
	DefaultName string
	// Invalid is the error a bad field wraps: the component's package's
	// ErrInvalidConfig; nil: limiter.ErrInvalidConfig.
	Invalid error
	// NoHeartbeat is "" when the component runs the live-node heartbeat,
	// which Node and Heartbeat configure; otherwise why it runs none, and
	// a Node or Heartbeat that is set (and would be ignored) is an error
	// that gives this reason.
	NoHeartbeat string
	// Breaker receives the breaker's state changes, outside its lock;
	// nil: none.
	Breaker func(observe.Breaker)
	// Policy names the component in Breaker's events; "": the resolved
	// Name.
	Policy string
}

// NoHeartbeatUnder returns Use.NoHeartbeat for a component under the
// failure policy named policy (fleet.FailurePolicy.String), set by the
// field at path: "" under FailLocal ("local"), the only policy that runs
// the live-node heartbeat.
func NoHeartbeatUnder(path, policy string) string {
	if policy == "local" {
		return ""
	}
	name := "Fail" + strings.ToUpper(policy[:1]) + policy[1:]
	return fmt.Sprintf("only FailLocal runs the live-node heartbeat they configure, and %s is %s", path, name)
}

// Resolve validates c, naming fields as Redis.Field, and returns it with
// every zero value replaced by its default (Name by u.DefaultName; Node by
// a random name and Heartbeat by DefaultHeartbeat, if the component runs a
// heartbeat). The error wraps u.Invalid.
func Resolve(c Config, u Use) (Config, error) {
	invalid := u.Invalid
	if invalid == nil {
		invalid = limiter.ErrInvalidConfig
	}
	bad := func(format string, args ...any) (Config, error) {
		return c, fmt.Errorf("%w: "+format, append([]any{invalid}, args...)...)
	}
	defaultName := u.DefaultName
	if c.Client == nil {
		return bad("Redis.Client is nil")
	}
	if err := redisguard.CheckClient(c.Client); err != nil {
		return bad("Redis.Client: %w", err)
	}
	if c.Name == "" {
		c.Name = defaultName
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := checkName(c.Name); err != nil {
		return bad("Redis.Name %w", err)
	}
	if err := checkName(c.Prefix); err != nil {
		return bad("Redis.Prefix %w", err)
	}
	switch {
	case len(c.Node) > MaxNodeLen:
		return bad("Redis.Node must be at most %d bytes, got %d", MaxNodeLen, len(c.Node))
	case c.Timeout < 0:
		return bad("Redis.Timeout must be >= 0, got %v", c.Timeout)
	case c.BreakerFailures < 0:
		return bad("Redis.BreakerFailures must be >= 0, got %d", c.BreakerFailures)
	case c.BreakerOpen < 0:
		return bad("Redis.BreakerOpen must be >= 0, got %v", c.BreakerOpen)
	case c.Heartbeat != 0 && c.Heartbeat < MinHeartbeat:
		return bad("Redis.Heartbeat must be 0 or >= %v, got %v", MinHeartbeat, c.Heartbeat)
	case u.NoHeartbeat != "" && c.Node != "":
		return bad("Redis.Node must be empty, got %q: %s", c.Node, u.NoHeartbeat)
	case u.NoHeartbeat != "" && c.Heartbeat != 0:
		return bad("Redis.Heartbeat must be 0, got %v: %s", c.Heartbeat, u.NoHeartbeat)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerOpen == 0 {
		c.BreakerOpen = DefaultBreakerOpen
	}
	if u.NoHeartbeat != "" {
		return c, nil // Node and Heartbeat stay zero: nothing uses them
	}
	if c.Node == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Node = hex.EncodeToString(b[:])
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	return c, nil
}

// CheckName checks a name that becomes a component of Redis keys (a
// Name, a Prefix, a headroom origin's name): 1 to 64 bytes, with no
// braces, colons, spaces or control characters.
func CheckName(s string) error { return checkName(s) }

// checkName checks a Name or Prefix: a component of Redis keys.
func checkName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 bytes, got %d", len(s))
	}
	for _, r := range s {
		if r == '{' || r == '}' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("must not contain braces, colons, spaces or control characters, got %q", s)
		}
	}
	return nil
}

// Link is one component's link to Redis. It is safe for concurrent use.
type Link struct {
	// Config is the resolved configuration (Resolve).
	Config
	guard    *redisguard.Guard
	clock    limiter.Clock
	injected bool // the clock was injected: its time is passed to the heartbeat script
	logger   *slog.Logger
	live     atomic.Int64
	nodesKey string

	closed    atomic.Bool
	closeOnce sync.Once

	mu      sync.Mutex     // guards what follows
	beating bool           // the heartbeat was started
	stopped bool           // Close has begun
	loop    *periodic.Loop // the heartbeat's timer; nil before StartHeartbeat
}

// Open returns a link with c, resolved by Resolve for u. Its heartbeat
// runs on clock (nil: the system clock) and, like the component's scripts,
// takes its time from an injected clock, or else from Redis TIME. It logs
// breaker transitions, tagged with policy, and failed heartbeats to logger
// (nil: nothing).
func Open(c Config, u Use, clock limiter.Clock, logger *slog.Logger, policy string) (*Link, error) {
	c, err := Resolve(c, u)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Link{Config: c, clock: sysclock.Or(clock), injected: clock != nil, logger: logger,
		nodesKey: c.Prefix + ":" + c.Name + ":nodes"}
	l.live.Store(1)
	l.guard = redisguard.New(c.Client, redisguard.Settings{
		Name:     "herdcap-" + c.Name,
		Timeout:  c.Timeout,
		Failures: c.BreakerFailures,
		OpenFor:  c.BreakerOpen,
		Logger:   logger.With("policy", policy),
	})
	if u.Breaker != nil {
		name := u.Policy
		if name == "" {
			name = c.Name
		}
		l.guard.Attach(name, u.Breaker)
	}
	return l, nil
}

// Guard returns the guard every call of the link goes through.
func (l *Link) Guard() *redisguard.Guard { return l.guard }

// Logger returns the link's logger (never nil).
func (l *Link) Logger() *slog.Logger { return l.logger }

// Eval runs script through the breaker, within the time limit.
func (l *Link) Eval(ctx context.Context, s *redis.Script, keys []string, args ...any) (any, error) {
	return l.guard.Eval(ctx, s, keys, args...)
}

// Live returns the number of nodes last seen in the heartbeat set: 1 until
// a heartbeat has succeeded, and always 1 without a heartbeat.
func (l *Link) Live() int64 { return l.live.Load() }

// StartHeartbeat announces the node once, synchronously, then every
// Heartbeat interval on the clock until Close. A node is counted live for
// three intervals after its last heartbeat, judged on the clock's time
// when it is injected (so the nodes sharing a live-node set must share a
// time source, as they must for their buckets), else on Redis TIME. Call
// it only on a link opened with Use.NoHeartbeat "".
func (l *Link) StartHeartbeat() {
	l.mu.Lock()
	l.beating = true
	l.mu.Unlock()
	l.beat(true)
	loop := periodic.Start(l.clock, l.Heartbeat, func() { l.beat(true) })
	l.mu.Lock()
	stopped := l.stopped
	if !stopped {
		l.loop = loop
	}
	l.mu.Unlock()
	if stopped {
		loop.Stop() // Close began meanwhile
	}
}

// beat records (or, with add false, removes) this node in the live-node set
// and stores the live count. Failures keep the last count.
func (l *Link) beat(add bool) {
	flag := "0"
	if add {
		flag = "1"
	}
	ttl := 3 * l.Heartbeat.Milliseconds()
	now := ""
	if l.injected {
		now = strconv.FormatInt(l.clock.Now().UnixMilli(), 10)
	}
	v, err := l.Eval(context.Background(), heartbeatScript, []string{l.nodesKey}, l.Node, ttl, flag, now)
	if err != nil {
		l.logger.Debug("herdcap: heartbeat failed", "name", l.Name, "err", err)
		return
	}
	if n, ok := v.(int64); ok && add {
		l.live.Store(max(1, n))
	}
}

// Closed reports whether Close has begun.
func (l *Link) Closed() bool { return l.closed.Load() }

// Close stops the heartbeat and leaves the live-node set. It is idempotent
// and safe for concurrent use: the first call does the work, and every call
// returns once it is done.
func (l *Link) Close() {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		l.mu.Lock()
		l.stopped = true
		beating, loop := l.beating, l.loop
		l.mu.Unlock()
		if !beating {
			return
		}
		if loop != nil {
			loop.Stop() // returns once a heartbeat under way has ended
		}
		l.beat(false)
	})
}

// heartbeatScript records this node as live and counts the live nodes.
//
// KEYS[1]  the live-node sorted set (score: last heartbeat, ms)
// ARGV[1]  node name
// ARGV[2]  how long a node counts as live after its last heartbeat, ms
// ARGV[3]  1 to add the node, 0 to remove it (on Close)
// ARGV[4]  now in ms since the Unix epoch, or "" to use Redis TIME
//
// It returns the number of live nodes. The set's expiry (PEXPIRE) is on
// Redis's own clock: it only drops a set nobody beats for any more.
var heartbeatScript = redis.NewScript(`
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
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
