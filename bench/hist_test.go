package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		v := int64(r.Uint64() >> uint(1+r.IntN(63)))
		got := bucketValue(bucketOf(v))
		if v < histSub {
			if got != v {
				t.Fatalf("bucketValue(bucketOf(%d)) = %d, want exact", v, got)
			}
			continue
		}
		if rel := math.Abs(float64(got-v)) / float64(v); rel > 1.0/(2*histSub) {
			t.Fatalf("bucketValue(bucketOf(%d)) = %d: relative error %.4f over %.4f", v, got, rel, 1.0/(2*histSub))
		}
	}
	if b := bucketOf(math.MaxInt64); b != histBuckets-1 {
		t.Fatalf("bucketOf(MaxInt64) = %d, want the last bucket %d", b, histBuckets-1)
	}
	if b := bucketOf(-5); b != 0 {
		t.Fatalf("bucketOf(-5) = %d, want 0", b)
	}
}

func TestQuantileMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var a, b hist
	vals := make([]int64, 50_000)
	for i := range vals {
		// Log-uniform from 10 ns to 10 ms, like a mix of local and Redis calls.
		vals[i] = int64(math.Exp(math.Log(10) + r.Float64()*math.Log(1e6)))
		if i%2 == 0 {
			a.record(time.Duration(vals[i]))
		} else {
			b.record(time.Duration(vals[i]))
		}
	}
	a.merge(&b)
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := int64(a.quantile(q))
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/(2*histSub) {
			t.Errorf("quantile(%v) = %d, sorted says %d (relative error %.4f)", q, got, want, rel)
		}
	}
	var empty hist
	if q := empty.quantile(0.5); q != 0 {
		t.Errorf("empty quantile = %v, want 0", q)
	}
}
