package bucketlua

import (
	"strings"
	"testing"
	"time"
)

// The Lua itself runs in every Redis test of packages fleet and admission.

func TestNowArg(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	if got := NowArg(at, false); got != "" {
		t.Fatalf("without a clock: %q, want Redis TIME (\"\")", got)
	}
	if got, want := NowArg(at, true), "1767225600123456"; got != want {
		t.Fatalf("NowArg = %q, want %q (µs, truncated)", got, want)
	}
}

func TestLibDefinesItsFunctions(t *testing.T) {
	for _, f := range []string{"clock", "readBucket", "refill", "loadBucket", "storeBucket"} {
		if !strings.Contains(Lib, "local function "+f+"(") {
			t.Errorf("Lib lacks %s", f)
		}
	}
}
