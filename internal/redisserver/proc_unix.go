//go:build unix

package redisserver

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// proc is one child process started with fork/exec and managed with raw
// wait4 calls. No goroutine waits on it: exit is observed by polling with
// WNOHANG, so a running server leaves nothing for goleak to report. The
// caller serialises all calls (Server holds its mutex).
type proc struct {
	pid    int
	reaped bool
	status string // how it ended, once reaped
}

// startProc starts path with args (argv[0] included), stdin from /dev/null
// and stdout/stderr appended to logPath, in its own process group.
func startProc(path string, args []string, dir, logPath string) (*proc, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   os.Environ(),
		Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
		Sys:   sysProcAttr(),
	})
	if err != nil {
		return nil, fmt.Errorf("fork/exec %s: %w", path, err)
	}
	return &proc{pid: pid}, nil
}

// signalGroup sends sig to the whole process group of p. The group id is
// the pid (Setpgid), and it cannot be reused before p is reaped.
func (p *proc) signalGroup(sig syscall.Signal) error {
	if p.reaped {
		return errProcGone
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to process group %d: %w", sig, p.pid, err)
	}
	return nil
}

// kill sends SIGKILL to the group and waits until p is reaped. SIGKILL also
// ends a stopped (SIGSTOP) process, so no SIGCONT is needed.
func (p *proc) kill() error {
	if p.reaped {
		return nil
	}
	if err := p.signalGroup(syscall.SIGKILL); err != nil {
		return err
	}
	_, err := p.wait(0)
	return err
}

// pause stops the group with SIGSTOP and waits until the kernel reports p
// stopped, so the server is frozen when pause returns.
func (p *proc) pause() error {
	if err := p.signalGroup(syscall.SIGSTOP); err != nil {
		return err
	}
	done, err := p.wait(syscall.WUNTRACED)
	if err != nil {
		return err
	}
	if done {
		return fmt.Errorf("process %d exited while being paused: %s", p.pid, p.status)
	}
	return nil
}

// resume continues the group with SIGCONT and waits until the kernel reports
// p continued.
func (p *proc) resume() error {
	if err := p.signalGroup(syscall.SIGCONT); err != nil {
		return err
	}
	done, err := p.wait(syscall.WCONTINUED)
	if err != nil {
		return err
	}
	if done {
		return fmt.Errorf("process %d exited while being resumed: %s", p.pid, p.status)
	}
	return nil
}

// gone reports whether p has been reaped.
func (p *proc) gone() bool { return p.reaped }

// exited reports, without blocking, whether p has ended; it reaps p if so.
func (p *proc) exited() bool {
	done, err := p.wait(syscall.WNOHANG)
	return done || err != nil
}

// wait calls wait4 on p with options until it reports a change. done is true
// once p has ended and been reaped. With WNOHANG and no change, it returns
// false at once; with WUNTRACED or WCONTINUED it returns false once p
// stopped or continued.
func (p *proc) wait(options int) (done bool, err error) {
	if p.reaped {
		return true, nil
	}
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(p.pid, &ws, options, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ECHILD):
			// Someone else reaped it; it is gone either way.
			p.reaped, p.status = true, "reaped elsewhere"
			return true, nil
		case err != nil:
			return false, fmt.Errorf("wait for process %d: %w", p.pid, err)
		case wpid == 0:
			return false, nil // WNOHANG and no change
		}
		switch {
		case ws.Exited():
			p.reaped, p.status = true, fmt.Sprintf("exit status %d", ws.ExitStatus())
			return true, nil
		case ws.Signaled():
			p.reaped, p.status = true, fmt.Sprintf("killed by %v", ws.Signal())
			return true, nil
		case ws.Stopped() && options&syscall.WUNTRACED != 0,
			ws.Continued() && options&syscall.WCONTINUED != 0:
			return false, nil
		}
		// A report that was not asked for (e.g. a stale stop/continue); wait on.
		if options&syscall.WNOHANG != 0 {
			return false, nil
		}
	}
}

// pidAlive reports whether a process with this pid exists (zombies included).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// procSupported reports whether this platform can run a server.
func procSupported() error { return nil }
