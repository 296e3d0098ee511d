package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/herdcap/herdcap/internal/redisserver"
)

// Timeouts of the clients returned by Client and Cluster.Client.
const (
	// ClientDialTimeout bounds one dial; on loopback a dial either succeeds
	// or is refused at once, so 1 s only matters on a badly loaded machine.
	ClientDialTimeout = redisserver.ClientDialTimeout
	// ClientIOTimeout bounds one read or write when the context has no
	// earlier deadline, so a paused server cannot hang a test forever.
	ClientIOTimeout = redisserver.ClientIOTimeout
)

// Server is one private redis-server process on 127.0.0.1 and an ephemeral
// port (a redisserver.Server with test-facing methods). Its methods are
// safe for concurrent use; the fault controls serialise with each other.
// On a nil *Server (StartMain found no redis-server) the methods taking a
// testing.TB skip or fail the test as Require does; Addr and Port panic.
type Server struct {
	srv *redisserver.Server
}

// Start starts a private redis-server for tb and registers a tb.Cleanup that
// kills it and removes its directory. If redis-server is missing it applies
// Require; any other failure fails the test with the server's log.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	if err := Available(); err != nil {
		requireFailed(tb, err)
		return nil
	}
	s, err := startServer(opts, false)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(s.Stop)
	routeLogs(tb, s.Addr())
	return s
}

// StartMain starts a private redis-server for a whole test package, from
// TestMain, and returns it with a stop function to call after m.Run (stop is
// never nil and is safe to call more than once). If redis-server is missing
// the error wraps ErrNoRedis and the server is nil; see the package doc for
// how TestMain should treat it.
func StartMain(opts ...Option) (*Server, func(), error) {
	if err := Available(); err != nil {
		return nil, func() {}, err
	}
	s, err := startServer(opts, false)
	if err != nil {
		return nil, func() {}, err
	}
	return s, s.Stop, nil
}

// startServer starts one server (a cluster node if cluster is set) with the
// log router in place.
func startServer(opts []Option, cluster bool) (*Server, error) {
	installLogRouter()
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	srv, err := redisserver.Start(cfg.server(cluster))
	if err != nil {
		return nil, err
	}
	return &Server{srv: srv}, nil
}

// Addr returns the server's address, "127.0.0.1:PORT". The port stays the
// same across Kill and Restart. It panics on a nil *Server rather than
// return "", which go-redis would read as localhost:6379.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
}

// Port returns the server's TCP port. It panics on a nil *Server.
func (s *Server) Port() int {
	if s == nil {
		panic(errNilServer)
	}
	return s.srv.Port()
}

// errNilServer is the panic value of Addr and Port on a nil *Server.
var errNilServer = errors.New("redistest: use of a nil *Server (StartMain failed?); call redistest.Require(t) or srv.Client(t) first")

// PID returns the process id of the running (or paused) server, or 0 while
// it is killed or stopped, or for a nil *Server.
func (s *Server) PID() int {
	if s == nil {
		return 0
	}
	return s.srv.PID()
}

// Options returns a new copy of the options Client uses, so callers can tune
// them before redis.NewClient: ContextTimeoutEnabled, DialTimeout
// ClientDialTimeout with a single dial attempt, Read/WriteTimeout
// ClientIOTimeout, MaxRetries -1 (no retries, so a fault surfaces on the
// first command), CLIENT SETINFO and maintenance notifications off (Redis
// 7.0 knows neither). It returns nil for a nil *Server.
func (s *Server) Options() *redis.Options {
	if s == nil {
		return nil
	}
	return s.srv.Options()
}

// Client returns a new client for the server built from Options and closes
// it in tb.Cleanup. It is safe to use while the server is killed, paused or
// restarted: commands then fail, time out with their context, or recover.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return nil
	}
	routeLogs(tb, s.Addr())
	c := redis.NewClient(s.Options())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// nilUse reports the use of a nil *Server or *Cluster: a skip (or failure
// under CI) when redis-server is missing, else a failure.
func nilUse(tb testing.TB, what string) {
	tb.Helper()
	Require(tb)
	tb.Fatalf("redistest: nil *%s (did StartMain fail and TestMain ignore it?)", what)
}

// control runs one of the server's fault controls and fails tb if it
// fails.
func (s *Server) control(tb testing.TB, op func(*redisserver.Server) error) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	if err := op(s.srv); err != nil {
		tb.Fatalf("%v", err)
	}
}

// Kill sends SIGKILL to the server and waits until it has exited, so every
// command fails until Restart. It does nothing if the server is not running.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.control(tb, (*redisserver.Server).Kill)
}

// Restart starts the server again on the same port, killing it first if it
// is running (paused or not), and returns once it answers PING. The dataset
// is empty unless WithArgs enabled persistence. It fails the test if the
// server was stopped or the port is no longer free.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.control(tb, (*redisserver.Server).Restart)
}

// Pause stops the server with SIGSTOP and returns once the kernel reports it
// stopped: connections stay open but nothing is answered, so commands run
// into their context deadline or ClientIOTimeout. Pausing a paused server
// does nothing; pausing a killed or stopped one fails the test.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.control(tb, (*redisserver.Server).Pause)
}

// Resume continues a paused server with SIGCONT and returns once the kernel
// reports it running. It does nothing if the server is not paused (also
// after Kill), so it is safe in a defer.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.control(tb, (*redisserver.Server).Resume)
}

// Flush sends FLUSHALL to this server, after checking over the same
// connection that it is the process the harness started. It fails the test
// if the server is killed, paused or stopped.
func (s *Server) Flush(tb testing.TB) {
	tb.Helper()
	s.control(tb, flush)
}

// flush sends FLUSHALL to srv after the identity check.
func flush(srv *redisserver.Server) error {
	if _, err := srv.Do("FLUSHALL"); err != nil {
		return fmt.Errorf("redistest: flush %s: %w", srv.Addr(), err)
	}
	return nil
}

// Stop kills the server (also when paused), waits for it to exit and removes
// its directory. It is idempotent and safe to call at any time; after Stop
// only Addr, Port, PID and Options may be used. A failure to kill is
// printed on stderr (Stop runs from cleanups, which cannot fail a test).
func (s *Server) Stop() {
	if s == nil {
		return
	}
	if err := s.srv.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "redistest: %v\n", err)
	}
}
