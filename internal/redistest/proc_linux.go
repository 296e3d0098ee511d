//go:build linux

package redistest

import "syscall"

// sysProcAttr puts the server in its own process group and asks the kernel to
// SIGKILL it if the thread that started it dies, so a test binary killed
// without running its cleanups (e.g. by go test -timeout) leaves no server
// behind. Go only ends an OS thread when a goroutine exits while locked to it
// (runtime.LockOSThread), which tests using this harness must not do around
// Start.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
