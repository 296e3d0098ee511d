package main

import "syscall"

// childAttr puts redis-server in its own process group (so a terminal's
// Ctrl-C reaches only the bench, which then stops it in order) and has the
// kernel kill it if the bench dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
