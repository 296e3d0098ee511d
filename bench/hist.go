package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds, in the manner of
// HdrHistogram: values below histSub are exact, and every power of two
// above is split into histSub equal buckets, so a reported percentile is
// within 1/(2·histSub) ≈ 1.6% of a recorded value. Recording is an index
// computation and an increment: no allocation, no lock (each worker owns
// its own hist, merged after the run).
type hist struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits // buckets per power of two
	// histBuckets covers every non-negative int64: the exact range below
	// histSub, then exponents 0..(62-histSubBits).
	histBuckets = histSub + (63-histSubBits)*histSub
)

// bucketOf returns the bucket of v nanoseconds (v < 0 counts as 0).
func bucketOf(v int64) int {
	if v < histSub {
		return int(max(v, 0))
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v>>e is in [histSub, 2·histSub)
	m := int(uint64(v) >> uint(e))
	return histSub + e*histSub + (m - histSub)
}

// bucketValue returns the midpoint of bucket i, in nanoseconds.
func bucketValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := (i - histSub) / histSub
	m := int64(histSub + (i-histSub)%histSub)
	lo := m << uint(e)
	return lo + (int64(1)<<uint(e))/2
}

// record adds one latency.
func (h *hist) record(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
}

// merge adds o's counts to h.
func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0 < q <= 1) of the recorded latencies,
// or 0 when nothing was recorded.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(histBuckets - 1))
}
