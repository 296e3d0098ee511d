//go:build !linux

package main

import "syscall"

// childAttr is nil off Linux: the bench stops redis-server itself on exit
// and on SIGINT, but cannot ask the kernel to kill it if the bench dies.
func childAttr() *syscall.SysProcAttr { return nil }
