package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// meta describes the machine and the run, printed above the table.
type meta struct {
	goVersion, cpu, redis, loadStart, loadEnd string
	procs                                     int
	when                                      time.Time
}

func collectMeta(cfg config) meta {
	_ = cfg
	return meta{
		goVersion: runtime.Version(),
		cpu:       cpuModel(),
		procs:     runtime.GOMAXPROCS(0),
		loadStart: loadAvg(),
		when:      time.Now(),
	}
}

// cpuModel reads the processor name on Linux, "" elsewhere.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg returns the 1, 5 and 15 minute load averages on Linux, "n/a"
// elsewhere.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// report is everything measured in a run.
type report struct {
	cfg   config
	meta  meta
	micro *microResult
	duels []duelResult
	rows  []result
}

// fmtDur formats a latency in ns for the table.
func fmtDur(ns int64) string {
	switch {
	case ns <= 0:
		return "—"
	case ns < 1_000:
		return strconv.FormatInt(ns, 10) + " ns"
	case ns < 1_000_000:
		return strconv.FormatFloat(float64(ns)/1e3, 'f', 1, 64) + " µs"
	default:
		return strconv.FormatFloat(float64(ns)/1e6, 'f', 2, 64) + " ms"
	}
}

// group formats n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func pct(a, b int64) string {
	return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 1, 64) + "%"
}

// admittedCell is the "admitted / ideal" cell of a row.
func admittedCell(r result) string {
	if r.Ideal == nil {
		if r.Admitted+r.Errors != r.Decisions {
			return fmt.Sprintf("%s denied of %s (limit never reached)", group(r.Decisions-r.Admitted-r.Errors), group(r.Decisions))
		}
		return "—"
	}
	s := group(r.Admitted) + " / " + group(*r.Ideal) + " (" + pct(r.Admitted, *r.Ideal) + ")"
	if r.Bound != nil {
		s += ", bound " + group(*r.Bound)
	}
	return s
}

func (rep *report) write(w io.Writer) {
	m := rep.meta
	fmt.Fprintf(w, "## herdcap vs x/time/rate and redis_rate\n\n")
	fmt.Fprintf(w, "%s, %s, GOMAXPROCS=%d, %s; redis-server %s on loopback; go-redis PoolSize %d for every Redis-backed row; load average %s at start, %s at end (%s).\n",
		m.goVersion, runtime.GOOS+"/"+runtime.GOARCH, m.procs, orUnknown(m.cpu), m.redis, rep.cfg.pool, m.loadStart, m.loadEnd, m.when.UTC().Format("2006-01-02"))
	if rep.cfg.quick {
		fmt.Fprintf(w, "\n**-quick run: smoke test only, the figures below are not valid measurements.**\n")
	}
	fmt.Fprintf(w, "\nThroughput rows: limit %g/s burst %g (never reached), %v measured after a warm-up. Accuracy rows: limit %g/s burst %d on one hot key for %v, %d goroutines per node; \"accuracy\" paces the demand at %g decisions/s per node, \"accuracy-unpaced\" asks as fast as the goroutines can (saturating the CPU); ideal = rate × seconds + burst.\n\n",
		throughputLimit.perSec, float64(throughputLimit.burst), rep.cfg.rowDur, rep.cfg.accRate, rep.cfg.accBurst, rep.cfg.accDur, rep.cfg.accConc, rep.cfg.accDem)

	anyErr := false
	for _, r := range rep.rows {
		anyErr = anyErr || r.Errors > 0
	}
	hdr := "| Workload | Keys | Goroutines | Backend | Decisions/s | p50 | p99 | Allocs/op | Admitted / ideal |"
	sep := "|---|---:|---:|---|---:|---:|---:|---:|---|"
	if anyErr {
		hdr += " Errors |"
		sep += "---:|"
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sep)
	for _, r := range rep.rows {
		keys := "1 (hot)"
		if r.Keys > 1 {
			keys = group(int64(r.Keys)) + " uniform"
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s |", workloadOf(r), keys, r.Concurrency, r.Backend,
			group(int64(r.OpsPerSec)), fmtDur(r.P50ns), fmtDur(r.P99ns), strconv.FormatFloat(r.AllocsPerOp, 'f', 1, 64), admittedCell(r))
		if anyErr {
			fmt.Fprintf(w, " %s |", group(r.Errors))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nLatency: every %dth decision timed, into a log-linear histogram (±1.6%%). Allocs/op: runtime.MemStats mallocs over the row ÷ decisions, background goroutines included.\n", sampleEvery)
	rep.writeTargets(w)
}

func workloadOf(r result) string {
	w, _, _ := strings.Cut(r.Name, "/")
	return w
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}

// find returns the row of backend in workload name, if it ran.
func (rep *report) find(name, backend string) (result, bool) {
	for _, r := range rep.rows {
		if r.Name == name && r.Backend == backend {
			return r, true
		}
	}
	return result{}, false
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**MISS**"
}

func ratio(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) + "×" }

// writeTargets prints the ratios and the targets herdcap must meet.
func (rep *report) writeTargets(w io.Writer) {
	fmt.Fprintf(w, "\n### Targets\n\n| Target | Measured | Result |\n|---|---|---|\n")
	if m := rep.micro; m != nil {
		bare, local := median(m.bareNs), median(m.localNs)
		ok := local <= 1.5*bare && m.localAllocs == 0 && m.localAllocsPerRun == 0
		fmt.Fprintf(w, "| local ns/op ÷ x/time/rate ns/op, hot key, c=1: ≤ 1.5× with 0 allocs | %s (%.1f ns vs %.1f ns, median of %d testing.Benchmark rounds; local %d allocs/op, AllocsPerRun %g; x/time/rate %d allocs/op) | %s |\n",
			ratio(local/bare), local, bare, len(m.localNs), m.localAllocs, m.localAllocsPerRun, m.bareAllocs, verdict(ok))
	}
	for _, d := range rep.duels {
		x := median(append([]float64(nil), d.ratios...))
		note := ""
		if d.errors > 0 {
			note = fmt.Sprintf("; %s errors", group(d.errors))
		}
		fmt.Fprintf(w, "| strict ÷ redis_rate decisions/s, %s, c=%d: ≥ 1× | %s (median of %d interleaved rounds: %s; %s vs %s/s median)%s | %s |\n",
			keysLabel(d.keys), d.conc, ratio(x), len(d.ratios), fmtRatios(d.ratios),
			group(int64(median(append([]float64(nil), d.strict...)))), group(int64(median(append([]float64(nil), d.redisOps...)))), note, verdict(x >= 1 && d.errors == 0))
	}
	for _, keys := range []int{1, 10_000} {
		for _, conc := range []int{1, 64} {
			if len(rep.duels) > 0 {
				break // the duels measure this, more robustly
			}
			name := row{workload: "throughput", keys: keys, conc: conc}.name()
			s, ok1 := rep.find(name, bStrict)
			p, ok2 := rep.find(name, bRedis)
			if !ok1 || !ok2 || p.OpsPerSec == 0 {
				continue
			}
			x := s.OpsPerSec / p.OpsPerSec
			fmt.Fprintf(w, "| strict ÷ redis_rate decisions/s, %s, c=%d: ≥ 1× | %s (%s vs %s/s)%s | %s |\n",
				keysLabel(keys), conc, ratio(x), group(int64(s.OpsPerSec)), group(int64(p.OpsPerSec)), errNote(s, p), verdict(x >= 1 && s.Errors == 0))
		}
	}
	name := row{workload: "throughput", keys: 1, conc: 64}.name()
	if l, ok1 := rep.find(name, bLeased); ok1 {
		if p, ok2 := rep.find(name, bRedis); ok2 && p.OpsPerSec > 0 {
			x := l.OpsPerSec / p.OpsPerSec
			fmt.Fprintf(w, "| leased ÷ redis_rate decisions/s, hot key, c=64: ≥ 20× | %s (%s vs %s/s)%s | %s |\n",
				ratio(x), group(int64(l.OpsPerSec)), group(int64(p.OpsPerSec)), errNote(l, p), verdict(x >= 20 && l.Errors == 0))
		}
	}
	for _, r := range rep.rows {
		if r.Ideal == nil || (r.Backend != bLeased && r.Backend != bLeased4) {
			continue
		}
		ideal := *r.Ideal
		if r.Bound == nil {
			dev := float64(r.Admitted-ideal) / float64(ideal)
			ok := dev >= -0.02 && dev <= 0.02 && r.Errors == 0
			fmt.Fprintf(w, "| leased admitted ÷ ideal, 1 node, %s, %.0f s: within 2%% | %s of %s (%s)%s | %s |\n",
				workloadOf(r), r.Seconds, group(r.Admitted), group(ideal), pct(r.Admitted, ideal), errNote(r), verdict(ok))
			continue
		}
		ok := r.Admitted <= *r.Bound && r.Errors == 0
		fmt.Fprintf(w, "| %s admitted, %s, %.0f s: ≤ ideal + %d·L = %s | %s (%s of ideal %s)%s | %s |\n",
			r.Backend, workloadOf(r), r.Seconds, leasedNodeCount, group(*r.Bound), group(r.Admitted), pct(r.Admitted, ideal), group(ideal), errNote(r), verdict(ok))
	}
	if rep.cfg.accDur < 10*time.Second && rep.hasAccuracy() {
		fmt.Fprintf(w, "\nThe accuracy targets are stated over 10 s; this run used %v.\n", rep.cfg.accDur)
	}
}

func (rep *report) hasAccuracy() bool {
	for _, r := range rep.rows {
		if r.Ideal != nil {
			return true
		}
	}
	return false
}

// errNote mentions errors of the rows, which void a PASS.
func errNote(rs ...result) string {
	var parts []string
	for _, r := range rs {
		if r.Errors > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s errors", r.Backend, group(r.Errors)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}
