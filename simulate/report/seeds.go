package report

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/herdcap/herdcap/simulate"
)

// Spread is one metric over the seeds of a scenario and mode: the mean,
// the least and the greatest value, and the sample standard deviation
// (n−1 in the denominator; 0 for one value).
//
// A metric that reads -1 for "never" (converge_s, recover_s, ...) is
// summarised over the seeds that have a value; N says how many (0: none,
// and then every statistic is -1). Booleans count as 0 and 1, so the mean
// of "collapsed" is the share of seeds that collapsed.
type Spread struct {
	Metric string  `json:"metric"`
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	StdDev float64 `json:"stddev"`
}

// SeedRun is one seed's runs: its bound checks, whether all held, and
// the two results.
type SeedRun struct {
	Seed        uint64           `json:"seed"`
	Pass        bool             `json:"pass"`
	Checks      []simulate.Check `json:"checks"`
	Unprotected *simulate.Result `json:"unprotected"`
	Protected   *simulate.Result `json:"protected"`
}

// SeedSummary is a scenario run with several seeds. Its JSON is what
// stormsim -seeds N -json prints, one per scenario:
//
//	{
//	  "scenario": {...},                // as run with the first seed
//	  "seeds": [1, 2, 3],
//	  "store": "memory",                // or "redis"
//	  "unprotected": [{"metric": "peak_rps", "n": 3, "mean": 4810.3,
//	                   "min": 4799, "max": 4826, "stddev": 14.2}, ...],
//	  "protected": [...],               // the same metrics, in one order
//	  "runs": [{"seed": 1, "pass": true, "checks": [...],
//	            "unprotected": {...}, "protected": {...}}, ...],
//	  "pass": true                      // every bound held on every seed
//	}
//
// The metrics are the numeric and boolean fields of simulate.Result by
// their JSON names (the names bounds use), in the order of its fields,
// but for clients, nodes and seed.
type SeedSummary struct {
	Scenario    *simulate.Scenario `json:"scenario"`
	Seeds       []uint64           `json:"seeds"`
	Store       string             `json:"store"`
	Unprotected []Spread           `json:"unprotected"`
	Protected   []Spread           `json:"protected"`
	Runs        []SeedRun          `json:"runs"`
	Pass        bool               `json:"pass"`
}

// summaryMetrics are the JSON names of the Result fields a SeedSummary
// reports.
var summaryMetrics = func() []string {
	var names []string
	t := reflect.TypeFor[simulate.Result]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "" || name == "-" || name == "clients" || name == "nodes" || name == "seed":
			continue
		}
		switch f.Type.Kind() {
		case reflect.Float64, reflect.Int, reflect.Int64, reflect.Bool:
			names = append(names, name)
		}
	}
	return names
}()

// isBool reports whether the metric is a boolean field of Result.
func isBool(metric string) bool {
	t := reflect.TypeFor[simulate.Result]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == metric {
			return t.Field(i).Type.Kind() == reflect.Bool
		}
	}
	return false
}

// Summarize summarises comparisons of one scenario that differ only in
// their seeds, given in the order to report them.
func Summarize(cs []*simulate.Comparison) (*SeedSummary, error) {
	if len(cs) == 0 {
		return nil, errors.New("report: Summarize: no comparisons")
	}
	name := cs[0].Scenario.Name
	s := &SeedSummary{Scenario: cs[0].Scenario, Pass: true}
	if cs[0].Protected != nil {
		s.Store = cs[0].Protected.Store
	}
	var un, pr []*simulate.Result
	for _, c := range cs {
		if c == nil || c.Scenario == nil || c.Unprotected == nil || c.Protected == nil {
			return nil, errors.New("report: Summarize: an incomplete comparison")
		}
		if c.Scenario.Name != name {
			return nil, fmt.Errorf("report: Summarize: scenarios %q and %q: one scenario's seeds only", name, c.Scenario.Name)
		}
		s.Seeds = append(s.Seeds, c.Scenario.Seed)
		s.Runs = append(s.Runs, SeedRun{Seed: c.Scenario.Seed, Pass: c.Pass, Checks: c.Checks, Unprotected: c.Unprotected, Protected: c.Protected})
		s.Pass = s.Pass && c.Pass
		un = append(un, c.Unprotected)
		pr = append(pr, c.Protected)
	}
	s.Unprotected = spreads(un)
	s.Protected = spreads(pr)
	return s, nil
}

func spreads(rs []*simulate.Result) []Spread {
	out := make([]Spread, 0, len(summaryMetrics))
	vs := make([]float64, 0, len(rs))
	for _, m := range summaryMetrics {
		vs = vs[:0]
		for _, r := range rs {
			v, _ := r.Metric(m)
			if v == -1 && !isBool(m) {
				continue // never
			}
			vs = append(vs, v)
		}
		out = append(out, spreadOf(m, vs))
	}
	return out
}

// spreadOf computes the statistics of vs, in their order (so the same
// values give the same bits).
func spreadOf(metric string, vs []float64) Spread {
	sp := Spread{Metric: metric, N: len(vs), Mean: -1, Min: -1, Max: -1, StdDev: -1}
	if len(vs) == 0 {
		return sp
	}
	var sum float64
	sp.Min, sp.Max = vs[0], vs[0]
	for _, v := range vs {
		sum += v
		sp.Min = min(sp.Min, v)
		sp.Max = max(sp.Max, v)
	}
	sp.Mean = sum / float64(len(vs))
	sp.StdDev = 0
	if len(vs) > 1 {
		var ss float64
		for _, v := range vs {
			ss += (v - sp.Mean) * (v - sp.Mean)
		}
		sp.StdDev = math.Sqrt(ss / float64(len(vs)-1))
	}
	sp.Mean, sp.StdDev = round6(sp.Mean), round6(sp.StdDev)
	return sp
}

// round6 rounds to six significant digits, as the results are.
func round6(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return x
	}
	p := math.Pow(10, 5-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*p) / p
}

// metricLabels names the metrics in the seeds table as the one-seed table
// does; others show their JSON name.
var metricLabels = map[string]string{
	"steady_rps":             "origin steady state (req/s)",
	"peak_rps":               "origin peak (req/s)",
	"peak_over_steady":       "  peak ÷ steady state",
	"peak_over_budget":       "  peak ÷ origin budget",
	"overload_calls":         "load above capacity (req)",
	"amplification":          "amplification (origin ÷ intended)",
	"wasted_calls":           "wasted origin work (callers gone)",
	"changed_peak":           "clients changed, peak per s",
	"changed_over_budget":    "  ÷ change budget",
	"max_step_rps":           "largest 1-s change in origin load",
	"max_rise_rps":           "largest 1-s rise in origin load",
	"converged":              "converged",
	"converge_s":             "every client converged after (s)",
	"converge_over_schedule": "  ÷ schedule (after one wave)",
	"min_hit_rate":           "lowest hit rate",
	"normal_hit_rate":        "normal hit rate",
	"hit_recover_s":          "hit rate back to 90% after (s)",
	"recovered":              "recovered after the trigger",
	"recover_s":              "  after (s)",
	"collapsed":              "metastable collapse",
	"goodput_rps":            "goodput after trigger (fetches/s)",
	"error_rate":             "error rate after trigger",
	"latency_p50_s":          "time to data p50 (s)",
	"latency_p99_s":          "time to data p99 (s)",
	"latency_p999_s":         "time to data p99.9 (s)",
	"reconnect_peak":         "reconnect attempts, peak per s",
	"budget_rps":             "origin budget (req/s)",
	"capacity_rps":           "origin capacity (req/s)",
	"origin_calls":           "origin calls",
	"intended_calls":         "intended origin calls",
	"change_budget":          "change budget (clients/s)",
	"max_step_over_capacity": "  ÷ origin capacity",
	"max_rise_over_capacity": "  ÷ origin capacity ",
	"affected":               "clients affected",
	"schedule_s":             "schedule (s)",
	"wave_s":                 "one wave (s)",
	"settle_s":               "settle time (s)",
	"collapse_window_s":      "collapse judged over (s; 0: not judged)",
	"redis_ops":              "redis ops",
	"redis_ops_peak":         "redis ops, peak per s",
	"redis_ops_mean":         "redis ops, mean per s",
	"redis_failed":           "redis calls failed in outages",
	"rollout_restores":       "rollout re-registered after data loss",
	"refused_reconnects":     "reconnects refused (come back later)",
	"refused_reconnect_peak": "  refused, peak per s",
	"outage_s":               "trigger's own outage (s)",
	"storm_s":                "storm length (s)",
	"storm_requests":         "requests in the storm",
	"storm_failed_share":     "  share failed",
	"storm_refused_share":    "  share refused",
	"overload_s":             "seconds of origin overload",
	"hit_dropped":            "hit rate fell below 90% of normal",
}

// formatSpread prints sp for the seeds table: "mean ± sd [min–max]", a
// boolean as "k of n", and "(on k of n)" when some seeds never had a value.
func formatSpread(sp Spread, seeds int) string {
	if isBool(sp.Metric) {
		return fmt.Sprintf("%d of %d", int(math.Round(sp.Mean*float64(sp.N))), seeds)
	}
	if sp.N == 0 {
		return "never"
	}
	s := formatNum(sp.Mean)
	if sp.Min != sp.Max {
		s += " ± " + formatNum(sp.StdDev) + " [" + formatNum(sp.Min) + "–" + formatNum(sp.Max) + "]"
	}
	if sp.N < seeds {
		s += fmt.Sprintf(" (on %d of %d; never on the others)", sp.N, seeds)
	}
	return s
}

// SeedTable writes the seeds table of ss to w: per scenario, each
// metric's mean ± standard deviation [min–max] over the seeds,
// unprotected against protected, then the bounds on every seed.
func SeedTable(w io.Writer, ss []*SeedSummary) error {
	var b strings.Builder
	for k, s := range ss {
		if k > 0 {
			b.WriteString("\n")
		}
		sc := s.Scenario
		store := s.Store
		fmt.Fprintf(&b, "== %s: %d clients, %d nodes, %v virtual, seeds %s, %s store\n",
			sc.Name, sc.Clients, sc.Nodes, sc.Duration.D(), seedRange(s.Seeds), store)
		if sc.Description != "" {
			fmt.Fprintf(&b, "   %s\n", sc.Description)
		}
		b.WriteString("   mean ± standard deviation [least–greatest] over the seeds\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "metric\tunprotected\tprotected\n")
		for i, m := range summaryMetrics {
			if m == "redis_ops" || m == "redis_ops_peak" || m == "redis_ops_mean" || m == "redis_failed" || m == "rollout_restores" {
				if store != "redis" {
					continue
				}
			}
			label := metricLabels[m]
			if label == "" {
				label = m
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", label, formatSpread(s.Unprotected[i], len(s.Seeds)), formatSpread(s.Protected[i], len(s.Seeds)))
		}
		tw.Flush()
		if len(s.Runs) > 0 && len(s.Runs[0].Checks) > 0 {
			pass := 0
			for _, r := range s.Runs {
				if r.Pass {
					pass++
				}
			}
			verdict := "PASS"
			if !s.Pass {
				verdict = "FAIL"
			}
			fmt.Fprintf(&b, "bounds: %s (every bound held on %d of %d seeds)\n", verdict, pass, len(s.Runs))
			for _, r := range s.Runs {
				for _, ch := range r.Checks {
					if !ch.Pass {
						fmt.Fprintf(&b, "  FAIL seed %d: %s  [%s]\n", r.Seed, ch.Bound, ch.Got)
					}
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// seedRange prints consecutive seeds as "1..3", others as a list.
func seedRange(seeds []uint64) string {
	consecutive := true
	for i := 1; i < len(seeds); i++ {
		consecutive = consecutive && seeds[i] == seeds[i-1]+1
	}
	if consecutive && len(seeds) > 1 {
		return fmt.Sprintf("%d..%d (%d)", seeds[0], seeds[len(seeds)-1], len(seeds))
	}
	parts := make([]string, len(seeds))
	for i, s := range seeds {
		parts[i] = fmt.Sprint(s)
	}
	return strings.Join(parts, ", ")
}
