package redistest_test

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herdcap/herdcap/internal/redistest"
)

// deadOrZombie reports whether pid has ended. Its new parent (pid 1 in a
// container) may not reap it promptly, so a zombie counts as ended.
func deadOrZombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X')
}

func TestServerDiesWithTestBinary(t *testing.T) {
	redistest.Require(t)
	pid, dir := runHelper(t, "exit")
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // no cleanup ran in the child
	// The kernel sends SIGKILL when the child exits (Pdeathsig); allow 5 s
	// for it to be delivered on a loaded machine, though it takes
	// microseconds.
	deadline := time.Now().Add(5 * time.Second)
	for !deadOrZombie(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	assert.True(t, deadOrZombie(pid), "server %d survived its test binary", pid)
}
