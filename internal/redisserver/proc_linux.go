//go:build linux

package redisserver

import "syscall"

// sysProcAttr puts the server in its own process group and asks the kernel to
// SIGKILL it if the thread that started it dies, so a test binary killed
// without running its cleanups (e.g. by go test -timeout, or a CLI killed
// with SIGKILL) leaves no server behind. Go only ends an OS thread when a
// goroutine exits while locked to it (runtime.LockOSThread), which callers
// must not do around Start.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
