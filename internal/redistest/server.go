package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeouts of the clients returned by Client and Cluster.Client.
const (
	// ClientDialTimeout bounds one dial; on loopback a dial either succeeds
	// or is refused at once, so 1 s only matters on a badly loaded machine.
	ClientDialTimeout = time.Second
	// ClientIOTimeout bounds one read or write when the context has no
	// earlier deadline, so a paused server cannot hang a test forever.
	ClientIOTimeout = 3 * time.Second
)

// adminTimeout bounds each harness command (PING, INFO, FLUSHALL, CLUSTER).
const adminTimeout = 2 * time.Second

// startAttempts is how many fresh ports Start tries when another process
// takes the chosen port between probing and binding.
const startAttempts = 5

// Server is one private redis-server process on 127.0.0.1 and an ephemeral
// port. Its methods are safe for concurrent use; the fault controls
// serialise with each other. On a nil *Server (StartMain found no
// redis-server) the methods taking a testing.TB skip or fail the test as
// Require does; Addr and Port panic.
type Server struct {
	cfg     config
	bin     string
	dir     string
	logPath string
	port    int
	busPort int // cluster bus port; 0 for a standalone server

	mu      sync.Mutex
	p       *proc // nil while killed or stopped
	paused  bool
	stopped bool
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

// startServer creates the directory and starts the process, retrying on a
// fresh port if the chosen one was taken meanwhile.
func startServer(opts []Option, cluster bool) (*Server, error) {
	installLogRouter()
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{cfg: cfg, bin: bin, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1 + btoi(cluster))
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("redistest: pick a port: %w", err)
		}
		s.port = ports[0]
		if cluster {
			s.busPort = ports[1]
		}
		err = s.launch()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			s.Stop()
			return nil, err
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // keep all n open until the end, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errPortTaken reports that the server could not bind its port.
var errPortTaken = errors.New("port taken")

// args returns the redis-server command line.
func (s *Server) args() []string {
	a := []string{
		s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--logfile", "",
	}
	if s.busPort != 0 {
		a = append(a,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(s.busPort),
		)
	}
	return append(a, s.cfg.args...)
}

// launch starts the process on s.port and waits until it answers as itself.
// The caller holds s.mu or owns s exclusively.
func (s *Server) launch() error {
	p, err := startProc(s.bin, s.args(), s.dir, s.logPath)
	if err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	if err := s.awaitReady(p); err != nil {
		_ = p.kill()
		return err
	}
	s.p, s.paused = p, false
	return nil
}

// awaitReady polls PING until p answers on s.port and INFO confirms the
// answer comes from p itself, within the start timeout.
func (s *Server) awaitReady(p *proc) error {
	deadline := time.Now().Add(s.cfg.startTimeout)
	delay := 2 * time.Millisecond
	var last error
	for {
		if p.exited() {
			log := s.logTail()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("redistest: %s: %w", s.Addr(), errPortTaken)
			}
			return fmt.Errorf("redistest: redis-server on %s exited during start (%s); log:\n%s", s.Addr(), p.status, log)
		}
		err := s.probe(p.pid)
		if err == nil {
			return nil
		}
		if errors.Is(err, errPortTaken) {
			return err
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: redis-server on %s not ready after %v: %v; log:\n%s",
				s.Addr(), s.cfg.startTimeout, last, s.logTail())
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// probe checks that the server on s.port answers PING and is process pid.
func (s *Server) probe(pid int) error {
	a, err := dialAdmin(s.Addr(), adminTimeout)
	if err != nil {
		return err
	}
	defer a.Close()
	return checkIdentity(a, pid)
}

// checkIdentity sends PING and INFO server on a and checks that the server
// is process pid. A different pid means some other server holds the port.
func checkIdentity(a *adminConn, pid int) error {
	if pong, err := a.str("PING"); err != nil {
		return err
	} else if pong != "PONG" {
		return fmt.Errorf("PING answered %q", pong)
	}
	info, err := a.str("INFO", "server")
	if err != nil {
		return err
	}
	got, _ := infoField(info, "process_id")
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("port answered by redis-server pid %q, not ours (%d): %w", got, pid, errPortTaken)
	}
	return nil
}

// logTail returns the last lines of the server's log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
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
	return s.port
}

// errNilServer is the panic value of Addr and Port on a nil *Server.
var errNilServer = errors.New("redistest: use of a nil *Server (StartMain failed?); call redistest.Require(t) or srv.Client(t) first")

// PID returns the process id of the running (or paused) server, or 0 while
// it is killed or stopped, or for a nil *Server.
func (s *Server) PID() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return s.p.pid
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
	return &redis.Options{
		Addr:                     s.Addr(),
		ContextTimeoutEnabled:    true,
		DialTimeout:              ClientDialTimeout,
		DialerRetries:            1,
		ReadTimeout:              ClientIOTimeout,
		WriteTimeout:             ClientIOTimeout,
		MaxRetries:               -1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
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

// Kill sends SIGKILL to the server and waits until it has exited, so every
// command fails until Restart. It does nothing if the server is not running.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return
	}
	if err := s.p.kill(); err != nil {
		tb.Fatalf("redistest: kill %s: %v", s.Addr(), err)
		return
	}
	s.p, s.paused = nil, false
}

// Restart starts the server again on the same port, killing it first if it
// is running (paused or not), and returns once it answers PING. The dataset
// is empty unless WithArgs enabled persistence. It fails the test if the
// server was stopped or the port is no longer free.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		tb.Fatalf("redistest: Restart of stopped server %s", s.Addr())
		return
	}
	if s.p != nil {
		if err := s.p.kill(); err != nil {
			tb.Fatalf("redistest: kill %s before restart: %v", s.Addr(), err)
			return
		}
		s.p, s.paused = nil, false
	}
	// Nothing of ours holds the port now (the old process is reaped and
	// redis-server sets SO_REUSEADDR), so a bind failure means another
	// process took it; give it a moment to go away.
	var err error
	for range 10 {
		if err = s.launch(); !errors.Is(err, errPortTaken) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("redistest: restart %s: %v", s.Addr(), err)
	}
}

// Pause stops the server with SIGSTOP and returns once the kernel reports it
// stopped: connections stay open but nothing is answered, so commands run
// into their context deadline or ClientIOTimeout. Pausing a paused server
// does nothing; pausing a killed or stopped one fails the test.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		tb.Fatalf("redistest: Pause of %s, which is not running", s.Addr())
		return
	}
	if s.paused {
		return
	}
	if err := s.p.pause(); err != nil {
		s.forgetIfGone()
		tb.Fatalf("redistest: pause %s: %v", s.Addr(), err)
		return
	}
	s.paused = true
}

// Resume continues a paused server with SIGCONT and returns once the kernel
// reports it running. It does nothing if the server is not paused (also
// after Kill), so it is safe in a defer.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || !s.paused {
		return
	}
	if err := s.p.resume(); err != nil {
		s.forgetIfGone()
		tb.Fatalf("redistest: resume %s: %v", s.Addr(), err)
		return
	}
	s.paused = false
}

// forgetIfGone clears the process after a failed signal if it turned out to
// have exited on its own (a crash). The caller holds s.mu.
func (s *Server) forgetIfGone() {
	if s.p != nil && s.p.gone() {
		s.p, s.paused = nil, false
	}
}

// Flush sends FLUSHALL to this server, after checking over the same
// connection that it is the process the harness started. It fails the test
// if the server is killed, paused or stopped.
func (s *Server) Flush(tb testing.TB) {
	tb.Helper()
	if s == nil {
		nilUse(tb, "Server")
		return
	}
	if err := s.flush(); err != nil {
		tb.Fatalf("%v", err)
	}
}

func (s *Server) flush() error {
	err := s.admin(func(a *adminConn) error {
		_, err := a.str("FLUSHALL")
		return err
	})
	if err != nil {
		return fmt.Errorf("redistest: flush %s: %w", s.Addr(), err)
	}
	return nil
}

// admin runs fn on a fresh connection to the running, unpaused server after
// the identity check.
func (s *Server) admin(fn func(a *adminConn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.p == nil:
		return errors.New("server is not running")
	case s.paused:
		return errors.New("server is paused")
	}
	a, err := dialAdmin(s.Addr(), adminTimeout)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := checkIdentity(a, s.p.pid); err != nil {
		return err
	}
	return fn(a)
}

// Stop kills the server (also when paused), waits for it to exit and removes
// its directory. It is idempotent and safe to call at any time; after Stop
// only Addr, Port, PID and Options may be used.
func (s *Server) Stop() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	if s.p != nil {
		if err := s.p.kill(); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: stop %s: %v\n", s.Addr(), err)
		}
		s.p, s.paused = nil, false
	}
	_ = os.RemoveAll(s.dir)
}
