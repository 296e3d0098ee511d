package redisserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/herdcap/herdcap/limiter"
)

// InstallHint is the command that installs redis-server on the CI image.
const InstallHint = "apt-get install -y redis-server"

// ErrNoRedis reports that no redis-server binary can be run (not in PATH, or
// an operating system without the process control the package needs).
var ErrNoRedis = errors.New("redisserver: redis-server not available (install it with: " + InstallHint + ")")

// errProcGone reports a signal sent to a process that was already reaped.
var errProcGone = errors.New("process already exited")

// errPortTaken reports that the server could not bind its port.
var errPortTaken = errors.New("port taken")

// DefaultStartTimeout is Config.StartTimeout's default.
const DefaultStartTimeout = 10 * time.Second

// Timeouts of the client options returned by Server.Options.
const (
	// ClientDialTimeout bounds one dial; on loopback a dial either succeeds
	// or is refused at once, so 1 s only matters on a badly loaded machine.
	ClientDialTimeout = time.Second
	// ClientIOTimeout bounds one read or write when the context has no
	// earlier deadline, so a paused server cannot hang a caller forever.
	ClientIOTimeout = 3 * time.Second
)

// adminTimeout bounds each command of the package's own connection (PING,
// INFO and Do).
const adminTimeout = 2 * time.Second

// startAttempts is how many fresh ports Start tries when another process
// takes the chosen port between probing and binding.
const startAttempts = 5

// Config configures Start. Its zero value starts a standalone server with
// the default start timeout.
type Config struct {
	// StartTimeout bounds how long the server may take to answer PING as
	// itself, on Start and on Restart. Zero means DefaultStartTimeout; it
	// must not be negative.
	StartTimeout time.Duration
	// Args are appended to the redis-server command line, e.g.
	// {"--maxmemory", "16mb"}. Arguments that would move the server off its
	// private loopback port or temporary directory (--port, --bind, --dir,
	// --daemonize, --logfile, --cluster-enabled, ...) are rejected. Enabling
	// persistence here (--appendonly yes) makes data survive Restart, since
	// the directory is kept until Stop.
	Args []string
	// Cluster starts the server in cluster mode: its cluster bus on a
	// second ephemeral loopback port (BusPort), nodes.conf in its
	// directory, cluster-node-timeout 2000 ms. Forming a cluster (slots,
	// CLUSTER MEET) is the caller's work, through Do.
	Cluster bool
}

// managedArgs are the redis-server settings the package owns.
var managedArgs = []string{
	"port", "bind", "dir", "daemonize", "logfile", "pidfile", "protected-mode",
	"unixsocket", "tls-port", "include", "cluster-enabled",
	"cluster-config-file", "cluster-port",
}

// withDefaults validates c and fills in its defaults; errors wrap
// limiter.ErrInvalidConfig and name the field.
func (c Config) withDefaults() (Config, error) {
	if c.StartTimeout < 0 {
		return c, fmt.Errorf("%w: redisserver.Config.StartTimeout must be >= 0, got %v", limiter.ErrInvalidConfig, c.StartTimeout)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	for _, a := range c.Args {
		name, ok := strings.CutPrefix(a, "--")
		if ok && slices.Contains(managedArgs, strings.ToLower(name)) {
			return c, fmt.Errorf("%w: redisserver.Config.Args: %s is managed by redisserver", limiter.ErrInvalidConfig, a)
		}
	}
	c.Args = slices.Clone(c.Args)
	return c, nil
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

// Server is one private redis-server process on 127.0.0.1 and an ephemeral
// port, started by Start and ended by Stop. Kill, Restart, Pause and Resume
// are fault controls that may be called in any order and any number of
// times. Its methods are safe for concurrent use and serialise with each
// other; none blocks for longer than the start timeout (Restart) or a
// couple of seconds (Do).
type Server struct {
	cfg     Config
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

// Start starts a private redis-server and returns once it answers PING as
// itself. If redis-server cannot be run the error wraps ErrNoRedis; a bad
// cfg gives an error wrapping limiter.ErrInvalidConfig; a server that
// exits or does not answer in time gives an error carrying its log. The
// caller must call Stop.
func Start(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	dir, err := os.MkdirTemp("", "redisserver-")
	if err != nil {
		return nil, fmt.Errorf("redisserver: %w", err)
	}
	s := &Server{cfg: cfg, bin: bin, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	for attempt := 1; ; attempt++ {
		n := 1
		if cfg.Cluster {
			n = 2
		}
		ports, err := freePorts(n)
		if err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("redisserver: pick a port: %w", err)
		}
		s.port = ports[0]
		if cfg.Cluster {
			s.busPort = ports[1]
		}
		err = s.launch()
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			_ = s.Stop()
			return nil, err
		}
	}
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
	return append(a, s.cfg.Args...)
}

// launch starts the process on s.port and waits until it answers as itself.
// The caller holds s.mu or owns s exclusively.
func (s *Server) launch() error {
	p, err := startProc(s.bin, s.args(), s.dir, s.logPath)
	if err != nil {
		return fmt.Errorf("redisserver: start redis-server: %w", err)
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
	deadline := time.Now().Add(s.cfg.StartTimeout)
	delay := 2 * time.Millisecond
	for {
		if p.exited() {
			log := s.LogTail()
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("redisserver: %s: %w", s.Addr(), errPortTaken)
			}
			return fmt.Errorf("redisserver: redis-server on %s exited during start (%s); log:\n%s", s.Addr(), p.status, log)
		}
		err := s.probe(p.pid)
		if err == nil || errors.Is(err, errPortTaken) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redisserver: redis-server on %s not ready after %v: %v; log:\n%s",
				s.Addr(), s.cfg.StartTimeout, err, s.LogTail())
		}
		time.Sleep(delay) // polling a child process; there is no event to wait on
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
	got, _ := InfoField(info, "process_id")
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("port answered by redis-server pid %q, not ours (%d): %w", got, pid, errPortTaken)
	}
	return nil
}

// LogTail returns the last 30 lines of the server's log (its stdout and
// stderr), or a note saying why there is none.
func (s *Server) LogTail() string {
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
// same across Kill and Restart.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// BusPort returns the cluster bus port, or 0 unless Config.Cluster was set.
func (s *Server) BusPort() int { return s.busPort }

// Dir returns the server's temporary directory, removed by Stop.
func (s *Server) Dir() string { return s.dir }

// PID returns the process id of the running (or paused) server, or 0 while
// it is killed or stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return 0
	}
	return s.p.pid
}

// Options returns a new copy of client options for the server, so callers
// can tune them before redis.NewClient: ContextTimeoutEnabled, DialTimeout
// ClientDialTimeout with a single dial attempt, Read/WriteTimeout
// ClientIOTimeout, MaxRetries -1 (no retries, so a fault surfaces on the
// first command), CLIENT SETINFO and maintenance notifications off (Redis
// 7.0 knows neither).
func (s *Server) Options() *redis.Options {
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

// Kill sends SIGKILL to the server and returns once it has exited, so every
// command fails until Restart. It does nothing if the server is not
// running.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	if err := s.p.kill(); err != nil {
		return fmt.Errorf("redisserver: kill %s: %w", s.Addr(), err)
	}
	s.p, s.paused = nil, false
	return nil
}

// Restart starts the server again on the same port, killing it first if it
// is running (paused or not), and returns once it answers PING as itself.
// The dataset is empty unless Config.Args enabled persistence. It fails if
// the server was stopped or the port is no longer free.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("redisserver: Restart of stopped server %s", s.Addr())
	}
	if s.p != nil {
		if err := s.p.kill(); err != nil {
			return fmt.Errorf("redisserver: kill %s before restart: %w", s.Addr(), err)
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
		return fmt.Errorf("redisserver: restart %s: %w", s.Addr(), err)
	}
	return nil
}

// Pause stops the server with SIGSTOP and returns once the kernel reports it
// stopped: connections stay open but nothing is answered, so commands run
// into their deadline. Pausing a paused server does nothing; pausing a
// killed or stopped one is an error.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return fmt.Errorf("redisserver: Pause of %s, which is not running", s.Addr())
	}
	if s.paused {
		return nil
	}
	if err := s.p.pause(); err != nil {
		s.forgetIfGone()
		return fmt.Errorf("redisserver: pause %s: %w", s.Addr(), err)
	}
	s.paused = true
	return nil
}

// Resume continues a paused server with SIGCONT and returns once the kernel
// reports it running. It does nothing if the server is not paused (also
// after Kill), so it is safe in a defer.
func (s *Server) Resume() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || !s.paused {
		return nil
	}
	if err := s.p.resume(); err != nil {
		s.forgetIfGone()
		return fmt.Errorf("redisserver: resume %s: %w", s.Addr(), err)
	}
	s.paused = false
	return nil
}

// forgetIfGone clears the process after a failed signal if it turned out to
// have exited on its own (a crash). The caller holds s.mu.
func (s *Server) forgetIfGone() {
	if s.p != nil && s.p.gone() {
		s.p, s.paused = nil, false
	}
}

// Do sends one command on a fresh connection, after checking over that
// connection that the server is the process Start launched, and returns its
// reply: string for simple and bulk strings, int64 for integers, []any for
// arrays (an error reply inside one as an error value), nil for null; an
// error reply is returned as the error. It fails without sending anything
// while the server is killed, paused or stopped. Each read and write is
// bounded by 2 s.
func (s *Server) Do(args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("redisserver: Do: no command")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.p == nil:
		return nil, errors.New("redisserver: server is not running")
	case s.paused:
		return nil, errors.New("redisserver: server is paused")
	}
	a, err := dialAdmin(s.Addr(), adminTimeout)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if err := checkIdentity(a, s.p.pid); err != nil {
		return nil, err
	}
	return a.do(args...)
}

// Stop kills the server (also when paused), waits for it to exit and removes
// its directory. It is idempotent and safe to call at any time; after Stop
// only Addr, Port, BusPort, Dir, PID, LogTail and Options may be used (PID
// is then 0). The error reports a kill that failed; the directory is
// removed either way.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var err error
	if s.p != nil {
		if kerr := s.p.kill(); kerr != nil {
			err = fmt.Errorf("redisserver: stop %s: %w", s.Addr(), kerr)
		}
		s.p, s.paused = nil, false
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// ProcessExists reports whether a process with this pid exists, zombies
// included; false on systems Available rejects. It lets callers check that
// a stopped server left no process behind.
func ProcessExists(pid int) bool { return pidAlive(pid) }
