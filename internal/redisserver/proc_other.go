//go:build !unix

package redisserver

import "errors"

var errUnsupportedOS = errors.New("process control needs a unix system")

// proc is a stub: running a server needs fork/exec, process groups and
// job-control signals, so on other systems Available reports ErrNoRedis.
type proc struct {
	pid    int
	status string
}

func startProc(string, []string, string, string) (*proc, error) { return nil, errUnsupportedOS }
func (p *proc) kill() error                                     { return errUnsupportedOS }
func (p *proc) pause() error                                    { return errUnsupportedOS }
func (p *proc) resume() error                                   { return errUnsupportedOS }
func (p *proc) gone() bool                                      { return true }
func (p *proc) exited() bool                                    { return true }
func pidAlive(int) bool                                         { return false }
func procSupported() error                                      { return errUnsupportedOS }
