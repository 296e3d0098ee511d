package main

import "syscall"

// procAttr makes the private redis-server die with the example, even if
// the example is killed before it can stop it.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
