package admission

import (
	"os"
	"testing"

	"github.com/herdcap/herdcap/internal/redistest"
)

// One private redis-server and one private 3-master cluster serve the whole
// package; tests keep apart by using their own budget names.
var (
	srv     *redistest.Server
	cluster *redistest.Cluster
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, &srv, &cluster)) }
