package redisserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The package drives its servers through this minimal RESP2 connection
// rather than go-redis, so readiness polling, identity checks and Do do not
// depend on (or disturb) the state of any client pool of the caller.

// Limits on replies, so a garbled stream cannot make the reader allocate
// without bound.
const (
	maxBulkLen  = 64 << 20
	maxArrayLen = 1 << 20
	maxDepth    = 8
)

// errReply is an error reply sent by the server ("-ERR ...").
type errReply string

func (e errReply) Error() string { return "redis: " + string(e) }

// adminConn is one connection to a server this package started.
type adminConn struct {
	c       net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// dialAdmin connects to addr; every command must complete within timeout.
func dialAdmin(addr string, timeout time.Duration) (*adminConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &adminConn{c: c, r: bufio.NewReader(c), timeout: timeout}, nil
}

func (a *adminConn) Close() error { return a.c.Close() }

// do sends one command and returns its reply: string for simple and bulk
// strings, int64 for integers, []any for arrays, nil for null, and errReply
// as the error for an error reply.
func (a *adminConn) do(args ...string) (any, error) {
	if err := a.c.SetDeadline(time.Now().Add(a.timeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, arg := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(arg), arg)
	}
	if _, err := io.WriteString(a.c, b.String()); err != nil {
		return nil, err
	}
	return readReply(a.r, 0)
}

// str runs a command whose reply is a string.
func (a *adminConn) str(args ...string) (string, error) {
	v, err := a.do(args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: unexpected reply %T", args[0], v)
	}
	return s, nil
}

// readReply reads one RESP2 reply from r.
func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("resp: nesting too deep")
	}
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if line == "" {
		return nil, errors.New("resp: empty line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errReply(body)
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("resp: bad integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulkLen {
			return nil, fmt.Errorf("resp: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("resp: bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxArrayLen {
			return nil, fmt.Errorf("resp: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, 0, min(n, 64))
		for range n {
			v, err := readReply(r, depth+1)
			if err != nil {
				var er errReply
				if !errors.As(err, &er) {
					return nil, err
				}
				v = er
			}
			out = append(out, v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("resp: unknown reply type %q", line[0])
	}
}

// readLine reads up to CRLF and returns the line without it. Lines are
// capped at 64 KiB.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > 64<<10 {
			return "", errors.New("resp: line too long")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	if len(b) < 2 || b[len(b)-2] != '\r' {
		return "", errors.New("resp: line not terminated by CRLF")
	}
	return string(b[:len(b)-2]), nil
}

// InfoField returns the value of field in an INFO or CLUSTER INFO reply,
// and whether the reply has the field.
func InfoField(info, field string) (string, bool) {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if ok && k == field {
			return v, true
		}
	}
	return "", false
}
