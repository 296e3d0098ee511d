package invalidate

import (
	"os"
	"testing"

	"github.com/herdcap/herdcap/internal/redistest"
)

// One private redis-server and one private 3-master cluster serve the whole
// package; tests keep apart by using their own namespaces. Tests that kill
// or restart Redis start their own server.
// Run loops and pushers start goroutines: none may outlive a test.
var (
	srv     *redistest.Server
	cluster *redistest.Cluster
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv, &cluster)) }
