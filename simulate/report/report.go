// Package report presents storm simulations: a comparison table for the
// terminal (Table), the mean and spread of many seeds (Summarize,
// SeedTable), and a directory of per-second CSV series, PNG and SVG charts
// and an HTML report that explains each verdict (WriteDir).
package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/herdcap/herdcap/simulate"
)

// row is one line of the comparison table: a label and how to read the
// value from a Result.
type row struct {
	label string
	value func(r *simulate.Result) string
}

func num(f func(r *simulate.Result) float64) func(r *simulate.Result) string {
	return func(r *simulate.Result) string { return formatNum(f(r)) }
}

func secs(f func(r *simulate.Result) float64) func(r *simulate.Result) string {
	return func(r *simulate.Result) string {
		v := f(r)
		if v < 0 {
			return "never"
		}
		return formatNum(v) + " s"
	}
}

func yesNo(f func(r *simulate.Result) bool) func(r *simulate.Result) string {
	return func(r *simulate.Result) string {
		if f(r) {
			return "yes"
		}
		return "no"
	}
}

var rows = []row{
	{"origin steady state (req/s)", num(func(r *simulate.Result) float64 { return r.SteadyRPS })},
	{"origin peak (req/s)", num(func(r *simulate.Result) float64 { return r.PeakRPS })},
	{"  peak ÷ steady state", num(func(r *simulate.Result) float64 { return r.PeakOverSteady })},
	{"  peak ÷ origin budget", num(func(r *simulate.Result) float64 { return r.PeakOverBudget })},
	{"load above capacity (req)", num(func(r *simulate.Result) float64 { return r.OverloadCalls })},
	{"amplification (origin ÷ intended)", num(func(r *simulate.Result) float64 { return r.Amplification })},
	{"wasted origin work (callers gone)", num(func(r *simulate.Result) float64 { return float64(r.WastedCalls) })},
	{"clients changed, peak per s", num(func(r *simulate.Result) float64 { return r.ChangedPeak })},
	{"  ÷ change budget", num(func(r *simulate.Result) float64 { return r.ChangedOverBudget })},
	{"largest 1-s change in origin load", num(func(r *simulate.Result) float64 { return r.MaxStepRPS })},
	{"largest 1-s rise in origin load", num(func(r *simulate.Result) float64 { return r.MaxRiseRPS })},
	{"every client converged after", func(r *simulate.Result) string {
		switch {
		case r.ConvergeS < 0:
			return "never"
		case r.Collapsed:
			// Every client once held data again, but the failure went on:
			// not a convergence to speak of.
			return "collapsed (all had data once by " + formatNum(r.ConvergeS) + " s)"
		}
		return formatNum(r.ConvergeS) + " s"
	}},
	{"  ÷ schedule (after one wave)", func(r *simulate.Result) string {
		if r.ConvergeOverSchedule < 0 {
			return "-"
		}
		return formatNum(r.ConvergeOverSchedule)
	}},
	{"  ÷ physical limit (its length)", func(r *simulate.Result) string {
		if r.ConvergeOverPhysical < 0 {
			return "-"
		}
		return formatNum(r.ConvergeOverPhysical) + " (" + formatNum(r.PhysicalS) + " s)"
	}},
	{"origin peak ÷ capacity", num(func(r *simulate.Result) float64 { return r.PeakOverCapacity })},
	{"headroom limit: to 1.1× drop / to 0.9× return / swing", func(r *simulate.Result) string {
		if r.LimitDropS < 0 && r.LimitReturnS < 0 {
			return "-"
		}
		never := func(v float64) string {
			if v < 0 {
				return "never"
			}
			return formatNum(v) + " s"
		}
		return never(r.LimitDropS) + " / " + never(r.LimitReturnS) + " / " + formatNum(100*r.LimitSwing) + "%"
	}},
	{"lowest hit rate (normal)", func(r *simulate.Result) string {
		return formatNum(r.MinHitRate) + " (" + formatNum(r.NormalHitRate) + ")"
	}},
	{"hit rate back to 90% after", func(r *simulate.Result) string {
		switch {
		case !r.HitDropped:
			return "never fell below 90%"
		case r.HitRecoverS < 0:
			return "never"
		}
		return formatNum(r.HitRecoverS) + " s"
	}},
	{"node hit rate: normal / 90% after (÷ physical limit)", func(r *simulate.Result) string {
		if r.WarmKeys < 0 {
			return "-"
		}
		out := formatNum(r.NodeHitRate) + " / "
		if r.Hit90S < 0 {
			return out + "never"
		}
		out += formatNum(r.Hit90S) + " s"
		if r.WarmPhysicalS >= 0 {
			out += " (" + formatNum(r.Hit90OverPhysical) + " × " + formatNum(r.WarmPhysicalS) + " s)"
		}
		return out
	}},
	{"warm: keys / 90% of clients' / all fetched after / failed", func(r *simulate.Result) string {
		if r.WarmKeys < 0 {
			return "-"
		}
		done := "-"
		if r.WarmDoneS >= 0 {
			done = formatNum(r.WarmDoneS) + " s"
		}
		return formatNum(float64(r.WarmKeys)) + " / " + formatNum(float64(r.WarmKey90)) + " / " + done + " / " + formatNum(float64(r.WarmFailed))
	}},
	{"hot key: origin fetches in one expiry / most per lease", func(r *simulate.Result) string {
		if r.HotKeyFetches < 0 {
			return "-"
		}
		return formatNum(float64(r.HotKeyFetches)) + " / " + formatNum(float64(r.HotKeyLeasePeak))
	}},
	{"recovered after the trigger", func(r *simulate.Result) string {
		switch {
		case r.Collapsed:
			return "NO: metastable collapse"
		case !r.Recovered:
			return "not by the end of the run"
		}
		return "yes, after " + formatNum(r.RecoverS) + " s"
	}},
	{"goodput after trigger (fetches/s)", num(func(r *simulate.Result) float64 { return r.GoodputRPS })},
	{"error rate after trigger", func(r *simulate.Result) string { return formatNum(100*r.ErrorRate) + "%" }},
	{"time to data p50 / p99 / p99.9 (s)", func(r *simulate.Result) string {
		return formatNum(r.LatencyP50S) + " / " + formatNum(r.LatencyP99S) + " / " + formatNum(r.LatencyP999S)
	}},
	{"reconnect attempts, peak per s", num(func(r *simulate.Result) float64 { return r.ReconnectPeak })},
	{"  refused (come back later), total / peak per s", func(r *simulate.Result) string {
		return formatNum(float64(r.RefusedReconnects)) + " / " + formatNum(r.RefusedReconnectPeak)
	}},
	{"trigger's own outage", secs(func(r *simulate.Result) float64 { return r.OutageS })},
	{"storm length (s)", num(func(r *simulate.Result) float64 { return r.StormS })},
	{"  requests in the storm failed / refused", func(r *simulate.Result) string {
		return formatNum(100*r.StormFailedShare) + "% / " + formatNum(100*r.StormRefusedShare) + "% of " + formatNum(float64(r.StormRequests))
	}},
	{"seconds of origin overload", num(func(r *simulate.Result) float64 { return r.OverloadS })},
	{"redis ops, peak / mean per s", func(r *simulate.Result) string {
		if r.Store != "redis" {
			return "- (memory store)"
		}
		return formatNum(r.RedisOpsPeak) + " / " + formatNum(r.RedisOpsMean)
	}},
	{"redis calls failed in outages / rollout re-registrations", func(r *simulate.Result) string {
		if r.Store != "redis" {
			return "- (memory store)"
		}
		return formatNum(float64(r.RedisFailed)) + " / " + formatNum(float64(r.RolloutRestores))
	}},
	{"converged", yesNo(func(r *simulate.Result) bool { return r.Converged })},
}

// formatNum prints v with at most four significant decimals, without
// exponent for everyday magnitudes.
func formatNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Table writes the comparison table of cs to w: per scenario, every metric
// unprotected against protected, then the bound checks.
func Table(w io.Writer, cs []*simulate.Comparison) error {
	var b strings.Builder
	for k, c := range cs {
		if k > 0 {
			b.WriteString("\n")
		}
		sc := c.Scenario
		fmt.Fprintf(&b, "== %s: %d clients, %d nodes, %v virtual, seed %d, %s store\n",
			sc.Name, sc.Clients, sc.Nodes, sc.Duration.D(), sc.Seed, c.Protected.Store)
		if sc.Description != "" {
			fmt.Fprintf(&b, "   %s\n", sc.Description)
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "metric\tunprotected\tprotected\n")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.label, r.value(c.Unprotected), r.value(c.Protected))
		}
		tw.Flush()
		if len(c.Checks) > 0 {
			pass := 0
			for _, ch := range c.Checks {
				if ch.Pass {
					pass++
				}
			}
			verdict := "PASS"
			if !c.Pass {
				verdict = "FAIL"
			}
			fmt.Fprintf(&b, "bounds: %s (%d of %d hold)\n", verdict, pass, len(c.Checks))
			for _, ch := range c.Checks {
				mark := "ok  "
				if !ch.Pass {
					mark = "FAIL"
				}
				fmt.Fprintf(&b, "  %s %s  [%s]\n", mark, ch.Bound, ch.Got)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
