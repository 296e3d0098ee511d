//go:build !linux

package main

import "syscall"

// procAttr has nothing to add outside Linux: the example kills its
// redis-server on exit.
func procAttr() *syscall.SysProcAttr { return nil }
