package slowstart

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/herdcap/herdcap/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }
