// Package redisserver runs a private redis-server process on an ephemeral
// loopback port, for tests (through internal/redistest) and for commands
// such as stormsim that need a Redis of their own.
//
// # Private servers only
//
// A Server is started with --bind 127.0.0.1, --protected-mode yes, --save ""
// and --appendonly no in its own temporary directory, in its own process
// group, and on Linux is killed by the kernel if the thread that started it
// dies, so a program that is killed leaves no server behind. Before any
// command other than PING and INFO is sent (Server.Do), the package checks
// over the same connection (INFO server) that the answer comes from the
// process it started, so it never talks to a Redis it did not start, such
// as the one on 127.0.0.1:6379 or one that took the port meanwhile.
//
// # No goroutines
//
// Processes are watched with non-blocking wait4 calls rather than a
// goroutine per process, so a running Server leaves nothing for goleak to
// report, and Stop kills the process, reaps it and removes its directory.
//
// The package does not import testing: the skip-or-fail rule for a missing
// redis-server lives in internal/redistest.
package redisserver
