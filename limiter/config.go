package limiter

import (
	"fmt"
	"time"

	"github.com/herdcap/herdcap/internal/keymap"
	"github.com/herdcap/herdcap/internal/ramp"
	"github.com/herdcap/herdcap/observe"
)

// Config configures a budget: NewLocal's, and through embedding the Redis
// budgets of package fleet and the gates of package admission. The zero
// value is the default configuration.
type Config struct {
	// Clock is the source of time; nil: the system clock (for Local, its
	// monotonic reading, which costs about half of time.Now and cannot
	// step when the wall clock is set).
	Clock Clock
	// Ramp is the window over which a limit change (SetLimit, or a new
	// limit carried by a key's requests) moves from the old limit to the
	// new one, linearly in rate and burst, so that a mistaken change (a
	// zero too many) can be noticed and undone before it has spread. If
	// Ramp is 0, 10 s. NoRamp applies a change at once, for callers that
	// pace changes themselves (a simulation stepping limits) or tests of
	// the limit's arithmetic. Any other negative value is invalid.
	Ramp time.Duration
	// MaxKeys bounds the number of keys held in process (Local's buckets,
	// a Leased budget's leases, a fleet budget's fallback buckets, a
	// gate's booked slots). When full, keys whose buckets are full go
	// first (which loses nothing: a full bucket is what a new key starts
	// with), then the least recently used of a sample. If MaxKeys is 0,
	// 100,000 (a gate sizes its slot table from its limit instead); it
	// must not be negative.
	MaxKeys int
	// Name is the budget's name in the events it reports to Observe (a
	// policy's name: "api", "login"), never a key. For the Redis budgets
	// of package fleet, "" means their Redis.Name; otherwise "" stays "".
	Name string
	// Observe receives the budget's events (decisions; for the Redis
	// budgets also breaker changes, fallback, lease exchanges), read once
	// at construction. Nil: none, at the cost of one nil check per
	// decision.
	Observe *observe.Hooks
}

// NoRamp is the Config.Ramp that applies limit changes at once.
const NoRamp time.Duration = -1

// check validates c, naming fields as path.Field.
func (c Config) check(path string) error {
	if _, ok := ramp.Window(c.Ramp); !ok {
		return fmt.Errorf("%w: %s.Ramp must be >= 0 or NoRamp, got %v", ErrInvalidConfig, path, c.Ramp)
	}
	if c.MaxKeys < 0 {
		return fmt.Errorf("%w: %s.MaxKeys must be >= 0, got %d", ErrInvalidConfig, path, c.MaxKeys)
	}
	return nil
}

// maxKeys returns the configured MaxKeys, or the default.
func (c Config) maxKeys() int {
	if c.MaxKeys == 0 {
		return keymap.DefaultMax
	}
	return c.MaxKeys
}
