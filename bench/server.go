package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisServer is the private redis-server every Redis-backed row runs on:
// loopback only, an ephemeral port, no persistence. It is never the Redis on
// 6379.
type redisServer struct {
	addr    string
	version string
	cmd     *exec.Cmd
	dir     string
	logPath string
	once    sync.Once
	exited  chan struct{}
}

// startRedis starts redis-server and waits until it answers PING.
func startRedis(ctx context.Context) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (install it, e.g. apt-get install redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "herdcap-bench-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("pick a port: %w", err)
	}
	s := &redisServer{
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:     dir,
		logPath: dir + "/redis.log",
		exited:  make(chan struct{}),
	}
	s.cmd = exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "yes",
		"--dir", dir,
		"--logfile", s.logPath,
	)
	s.cmd.SysProcAttr = childAttr()
	if err := s.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.awaitPing(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// awaitPing polls PING for up to 10 s (generous: a loaded 2-core machine
// can take a second or two to start a process).
func (s *redisServer) awaitPing(ctx context.Context) error {
	c := redis.NewClient(s.options(1))
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server exited during start-up; log:\n%s", s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := c.Ping(pctx).Err()
		if err == nil {
			info, ierr := c.Info(pctx, "server").Result()
			cancel()
			if ierr != nil {
				return fmt.Errorf("INFO: %w", ierr)
			}
			// The port was free a moment ago: make sure it is our process
			// that answers, not one that took the port in between.
			if !strings.Contains(info, "process_id:"+strconv.Itoa(s.cmd.Process.Pid)) {
				return errors.New("another process answered on the chosen port")
			}
			s.version = infoField(info, "redis_version")
			return nil
		}
		cancel()
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within 10s: %w; log:\n%s", err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return "?"
}

func (s *redisServer) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// options returns the go-redis options that every Redis-backed subject
// uses, herdcap's and redis_rate's alike: ContextTimeoutEnabled (herdcap
// requires it), a pool of poolSize connections, and the identity and
// maintenance-notification handshakes off (Redis 7.0 knows neither).
func (s *redisServer) options(poolSize int) *redis.Options {
	return &redis.Options{
		Addr:                     s.addr,
		PoolSize:                 poolSize,
		ContextTimeoutEnabled:    true,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// flush empties the server between rows, so that no row sees another's keys.
func (s *redisServer) flush(ctx context.Context) error {
	c := redis.NewClient(s.options(1))
	defer c.Close()
	return c.FlushAll(ctx).Err()
}

// stop kills the server and removes its directory. It is safe to call more
// than once and from several goroutines.
func (s *redisServer) stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
			}
		}
		_ = os.RemoveAll(s.dir)
	})
}
