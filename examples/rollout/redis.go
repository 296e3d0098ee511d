package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisAvailable reports whether the redis-server binary can be found.
func redisAvailable(bin string) bool {
	_, err := exec.LookPath(bin)
	return err == nil
}

// startRedis starts a private redis-server on a free loopback port, with
// persistence off and its files in a temporary directory, and returns its
// address and a function that kills it and removes the directory.
func startRedis(ctx context.Context, bin string) (addr string, stop func(), err error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", errNoRedis, err)
	}
	dir, err := os.MkdirTemp("", "herdcap-rollout-redis-")
	if err != nil {
		return "", nil, err
	}
	var lastErr error
	for range 3 { // a port found free may be taken before redis binds it
		port, err := freePort()
		if err != nil {
			_ = os.RemoveAll(dir)
			return "", nil, err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var logs bytes.Buffer
		cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		cmd.SysProcAttr = procAttr()
		if err := cmd.Start(); err != nil {
			_ = os.RemoveAll(dir)
			return "", nil, fmt.Errorf("starting %s: %w", path, err)
		}
		kill := func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if lastErr = awaitPing(ctx, addr, 5*time.Second); lastErr == nil {
			return addr, func() { kill(); _ = os.RemoveAll(dir) }, nil
		}
		kill()
		lastErr = fmt.Errorf("redis-server on %s did not answer: %w (log: %q)", addr, lastErr, logs.String())
	}
	_ = os.RemoveAll(dir)
	return "", nil, lastErr
}

// freePort returns a loopback port nothing listens on now; never 6379, the
// port of a Redis the user may run.
func freePort() (int, error) {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if port != 6379 {
			return port, nil
		}
	}
}

// awaitPing waits until the server at addr answers PING.
func awaitPing(ctx context.Context, addr string, timeout time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		err := c.Ping(ctx).Err()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
