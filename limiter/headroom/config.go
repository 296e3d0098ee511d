package headroom

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/herdcap/herdcap/internal/remote"
	"github.com/herdcap/herdcap/limiter"
	"github.com/herdcap/herdcap/limiter/fleet"
	"github.com/herdcap/herdcap/observe"
)

// ErrUnknownOrigin is wrapped by Controller.Origin's error for a name that
// is not in Config.Origins; the message names it and lists the known ones.
var ErrUnknownOrigin = errors.New("headroom: unknown origin")

// Config configures a Controller (New, and NewShared through
// SharedConfig). Origins is required; every other zero field takes its
// default.
type Config struct {
	// Origins maps each origin's name to its Bounds. At least one; names
	// of 1 to 64 bytes with no braces, colons, spaces or control
	// characters (they are part of Redis keys).
	Origins map[string]Bounds
	// Interval is the control interval: the limit changes at most once per
	// Interval, and a shared controller reports once per Interval. Every
	// node of a fleet must use the same Interval. If Interval is 0, 1 s;
	// otherwise at least 10 ms.
	Interval time.Duration
	// Clock is the source of time and runs the control loop's timer. If
	// Clock is nil, the system clock. A shared controller passes an
	// injected clock's time to Redis, and otherwise uses Redis TIME.
	Clock limiter.Clock
	// Logger receives the limit's changes of source (Info: shared, local
	// control) and, for a shared controller, the breaker's transitions and
	// failed heartbeats. If Logger is nil, nothing is logged.
	Logger *slog.Logger
	// Observe receives each origin's limit, spare and saturation
	// (observe.Headroom) after every control interval that changed one,
	// and a shared controller's breaker changes (observe.Breaker, named by
	// its Redis name), read once at construction. Nil: none.
	Observe *observe.Hooks
}

// Bounds are an operator's bounds on one origin's limit and the pace at
// which it may change. The zero value of each field but Floor and Ceiling
// is its default.
type Bounds struct {
	// Floor and Ceiling bound the limit, in calls per second: finite, with
	// 0 < Floor <= Ceiling. Required.
	Floor, Ceiling float64
	// Initial is the limit a new controller starts at (a shared one, when
	// the fleet has no state for the origin yet). If Initial is 0, Floor;
	// otherwise within [Floor, Ceiling].
	Initial float64
	// Burst is the limit's burst as time at the limit: the Burst of
	// Origin.Limit is max(1, ⌈rate·Burst⌉). If Burst is 0, 100 ms; it
	// must not be negative.
	Burst time.Duration
	// MaxRise is the most the limit may rise in one interval, as a
	// fraction of it. If MaxRise is 0, 0.2; otherwise in (0, 1].
	MaxRise float64
	// MaxFall is the most the limit may fall in one interval, as a
	// fraction of it. If MaxFall is 0, 0.5; otherwise in (0, 1).
	MaxFall float64
	// Tolerance says when the origin's latency means it is saturated: a
	// mean success latency above baseline·(1+Tolerance). If Tolerance is
	// 0, 0.5; otherwise > 0 and finite.
	Tolerance float64
}

// SharedConfig configures NewShared: Config's fields and the failure
// policy. The zero value of each field is its default (Config.Origins is
// required).
type SharedConfig struct {
	Config
	// Failure is what the controller does while Redis cannot answer:
	// FailLocal (the zero value) controls this node's share of the limit
	// locally, from its own reports, starting from the shared limit
	// divided by the live nodes; FailOpen holds every limit at its
	// Ceiling; FailClosed holds it at its Floor. In every case the node
	// rejoins the shared limit at its first report Redis answers.
	Failure fleet.FailurePolicy
}

// Defaults of the zero values.
const (
	defaultInterval  = time.Second
	minInterval      = 10 * time.Millisecond
	defaultBurst     = 100 * time.Millisecond
	defaultMaxRise   = 0.2
	defaultMaxFall   = 0.5
	defaultTolerance = 0.5
	// window is W: the baseline latency is the least of the per-interval
	// minimums of the last window intervals.
	window = 60
)

// originSpec is one origin's resolved configuration.
type originSpec struct {
	name string
	b    Bounds // defaults applied
}

// resolve validates c, naming fields as path.Field, and returns its
// origins sorted by name with defaults applied, and the interval.
func (c Config) resolve(path string) ([]originSpec, time.Duration, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s.%s", limiter.ErrInvalidConfig, path, fmt.Sprintf(format, args...))
	}
	if len(c.Origins) == 0 {
		return nil, 0, bad("Origins is empty: name at least one origin")
	}
	iv := c.Interval
	switch {
	case iv == 0:
		iv = defaultInterval
	case iv < minInterval:
		return nil, 0, bad("Interval must be 0 or >= %v, got %v", minInterval, iv)
	}
	names := make([]string, 0, len(c.Origins))
	for n := range c.Origins {
		names = append(names, n)
	}
	slices.Sort(names)
	specs := make([]originSpec, 0, len(names))
	for _, n := range names {
		if err := remote.CheckName(n); err != nil {
			return nil, 0, bad("Origins[%q]: the name %v", n, err)
		}
		b, err := c.Origins[n].resolve(fmt.Sprintf("%s.Origins[%q]", path, n))
		if err != nil {
			return nil, 0, err
		}
		specs = append(specs, originSpec{name: n, b: b})
	}
	return specs, iv, nil
}

// resolve validates b, naming fields as path.Field, and returns it with
// defaults applied.
func (b Bounds) resolve(path string) (Bounds, error) {
	bad := func(format string, args ...any) (Bounds, error) {
		return b, fmt.Errorf("%w: %s.%s", limiter.ErrInvalidConfig, path, fmt.Sprintf(format, args...))
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(b.Floor) || b.Floor <= 0:
		return bad("Floor must be > 0 and finite, got %v", b.Floor)
	case !finite(b.Ceiling) || b.Ceiling <= 0:
		return bad("Ceiling must be > 0 and finite, got %v", b.Ceiling)
	case b.Ceiling > 1e15:
		return bad("Ceiling must be <= 1e15, got %v", b.Ceiling)
	case b.Floor > b.Ceiling:
		return bad("Floor (%v) must not exceed Ceiling (%v)", b.Floor, b.Ceiling)
	case !finite(b.Initial) || b.Initial != 0 && (b.Initial < b.Floor || b.Initial > b.Ceiling):
		return bad("Initial must be 0 or within [Floor, Ceiling] = [%v, %v], got %v", b.Floor, b.Ceiling, b.Initial)
	case b.Burst < 0:
		return bad("Burst must be >= 0, got %v", b.Burst)
	case !finite(b.MaxRise) || b.MaxRise < 0 || b.MaxRise > 1:
		return bad("MaxRise must be 0 or in (0, 1], got %v", b.MaxRise)
	case !finite(b.MaxFall) || b.MaxFall < 0 || b.MaxFall >= 1:
		return bad("MaxFall must be 0 or in (0, 1), got %v", b.MaxFall)
	case !finite(b.Tolerance) || b.Tolerance < 0:
		return bad("Tolerance must be 0 or > 0 and finite, got %v", b.Tolerance)
	}
	if b.Initial == 0 {
		b.Initial = b.Floor
	}
	if b.Burst == 0 {
		b.Burst = defaultBurst
	}
	if b.MaxRise == 0 {
		b.MaxRise = defaultMaxRise
	}
	if b.MaxFall == 0 {
		b.MaxFall = defaultMaxFall
	}
	if b.Tolerance == 0 {
		b.Tolerance = defaultTolerance
	}
	return b, nil
}
