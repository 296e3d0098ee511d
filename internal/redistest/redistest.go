package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// InstallHint is the command that installs redis-server on the CI image.
const InstallHint = "apt-get install -y redis-server"

// ErrNoRedis reports that no redis-server binary can be run (not in PATH, or
// an operating system without the process control the harness needs).
var ErrNoRedis = errors.New("redistest: redis-server not available (install it with: " + InstallHint + ")")

// errProcGone reports a signal sent to a process that was already reaped.
var errProcGone = errors.New("process already exited")

// DefaultStartTimeout bounds how long a server may take to answer PING, and
// a cluster to reach cluster_state:ok, unless WithStartTimeout says
// otherwise.
const DefaultStartTimeout = 10 * time.Second

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
// server starts. Enabling persistence here (--appendonly yes) makes data
// survive Restart, since the directory is kept until Stop.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// managedArgs are the redis-server settings the harness owns.
var managedArgs = []string{
	"port", "bind", "dir", "daemonize", "logfile", "pidfile", "protected-mode",
	"unixsocket", "tls-port", "include", "cluster-enabled",
	"cluster-config-file", "cluster-port",
}

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
	for _, a := range cfg.args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		if slices.Contains(managedArgs, strings.ToLower(name)) {
			return cfg, fmt.Errorf("redistest: WithArgs: %s is managed by the harness", a)
		}
	}
	return cfg, nil
}

// Available returns nil if redis-server can be started, and otherwise an
// error wrapping ErrNoRedis.
func Available() error {
	if err := procSupported(); err != nil {
		return fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	return nil
}

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
