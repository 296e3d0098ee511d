package redistest

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redisserver"
)

// InstallHint is the command that installs redis-server on the CI image.
const InstallHint = redisserver.InstallHint

// ErrNoRedis reports that no redis-server binary can be run (not in PATH, or
// an operating system without the process control the harness needs). It
// is redisserver.ErrNoRedis.
var ErrNoRedis = redisserver.ErrNoRedis

// DefaultStartTimeout bounds how long a server may take to answer PING, and
// a cluster to reach cluster_state:ok, unless WithStartTimeout says
// otherwise.
const DefaultStartTimeout = redisserver.DefaultStartTimeout

// Option configures Start, StartMain, StartCluster and StartClusterMain.
type Option func(*config)

type config struct {
	startTimeout time.Duration
	args         []string
}

// WithStartTimeout sets how long a server may take to answer PING (and a
// cluster to become healthy), also on Restart. The default is
// DefaultStartTimeout; d <= 0 is rejected when the server starts.
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) { c.startTimeout = d }
}

// WithArgs appends redis-server command-line arguments, e.g.
// WithArgs("--maxmemory", "16mb"). Arguments that would move the server off
// its private loopback port or temporary directory (--port, --bind, --dir,
// --daemonize, --logfile, --cluster-enabled, ...) are rejected when the
// server starts (see redisserver.Config.Args). Enabling persistence here
// (--appendonly yes) makes data survive Restart, since the directory is
// kept until Stop.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// newConfig applies opts to the defaults. The arguments are checked by
// redisserver.Start.
func newConfig(opts []Option) (config, error) {
	cfg := config{startTimeout: DefaultStartTimeout}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.startTimeout <= 0 {
		return cfg, fmt.Errorf("redistest: WithStartTimeout: %v is not positive", cfg.startTimeout)
	}
	return cfg, nil
}

// server returns the redisserver configuration for one standalone server or
// cluster node.
func (c config) server(cluster bool) redisserver.Config {
	return redisserver.Config{StartTimeout: c.startTimeout, Args: c.args, Cluster: cluster}
}

// Available returns nil if redis-server can be started, and otherwise an
// error wrapping ErrNoRedis.
func Available() error { return redisserver.Available() }

// Require skips the test if redis-server is not available, or fails it
// when the environment variable CI is non-empty; the message names the
// install command. It is the one place that rule lives: Start, StartCluster
// and the methods of a nil *Server or *Cluster call it.
func Require(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		requireFailed(tb, err)
	}
}

// requireFailed applies the skip-or-fail rule for err.
func requireFailed(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("%v; CI is set, so Redis tests must run", err)
		return
	}
	tb.Skipf("skipping Redis test: %v", err)
}

// LeakOptions returns goleak options that ignore goroutines go-redis v9 may
// leave running for about a second after a client is closed: the pool's
// redial probe (started after PoolSize failed dials, e.g. while a server is
// killed, and sleeping 1 s between tries) and the cluster client's state
// reload (200 ms cooldown). Pass them to goleak.VerifyTestMain or
// goleak.Find in packages that Kill servers under load.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9.(*clusterStateHolder).LazyReload.func1"),
	}
}

// Main is the TestMain of a package whose tests share one private
// redis-server and one private 3-master cluster: it starts both (a missing
// redis-server leaves them nil, for Require to skip or fail on), sets *srv
// and *cluster, runs the tests, stops both, and on success checks that no
// goroutine outlived them (goleak, with LeakOptions). It returns the exit
// code:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv, &cluster)) }
func Main(m *testing.M, srv **Server, cluster **Cluster) int {
	s, stopS, err := StartMain()
	if err != nil && !errors.Is(err, ErrNoRedis) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, stopC, err := StartClusterMain()
	if err != nil && !errors.Is(err, ErrNoRedis) {
		stopS()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	*srv, *cluster = s, c
	code := m.Run()
	stopS()
	stopC()
	if code == 0 {
		if err := goleak.Find(LeakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	return code
}
