package main

import (
	"context"
	"fmt"
	"time"
)

// duelResult is strict against redis_rate on one workload, measured in
// short interleaved rounds (the order alternating) so that a change of load
// on a shared machine hits both alike. A single back-to-back pair of rows
// on a loaded 2-core machine, where client and server share the cores, can
// swing by ±30%; the median of per-round ratios does not.
type duelResult struct {
	keys, conc       int
	ratios           []float64 // strict ÷ redis_rate, per round
	strict, redisOps []float64 // decisions/s per round
	errors           int64
}

// runDuels runs rounds rounds of d each for every workload of the
// throughput rows.
func runDuels(ctx context.Context, e *env, srv *redisServer, rounds int, d time.Duration, logf func(string, ...any)) ([]duelResult, error) {
	var out []duelResult
	for _, keys := range []int{1, 10_000} {
		for _, conc := range []int{1, 64} {
			r := row{workload: "duel", keys: keys, conc: conc, dur: d, warmup: min(d/4, 200*time.Millisecond), limit: throughputLimit}
			dr := duelResult{keys: keys, conc: conc}
			for i := range rounds {
				makers := []maker{redisRateMaker, strictMaker}
				if i%2 == 1 {
					makers[0], makers[1] = makers[1], makers[0]
				}
				var got [2]result
				for j, mk := range makers {
					if ctx.Err() != nil {
						return out, ctx.Err()
					}
					if err := srv.flush(ctx); err != nil {
						return out, fmt.Errorf("FLUSHALL: %w", err)
					}
					s, err := mk(e, r.limit, keys, fmt.Sprintf("duel%d_%d_%d_%d", keys, conc, i, j))
					if err != nil {
						return out, err
					}
					got[j] = measure(ctx, r, s)
					s.close()
				}
				strict, rr := got[1], got[0]
				if i%2 == 1 {
					strict, rr = got[0], got[1]
				}
				dr.errors += strict.Errors + rr.Errors
				dr.strict = append(dr.strict, strict.OpsPerSec)
				dr.redisOps = append(dr.redisOps, rr.OpsPerSec)
				if rr.OpsPerSec > 0 {
					dr.ratios = append(dr.ratios, strict.OpsPerSec/rr.OpsPerSec)
				}
			}
			logf("duel %s c=%d: strict ÷ redis_rate per round %v", keysLabel(keys), conc, fmtRatios(dr.ratios))
			out = append(out, dr)
		}
	}
	return out, nil
}

func fmtRatios(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.2f", x)
	}
	return s
}
