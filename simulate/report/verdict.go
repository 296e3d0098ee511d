package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herdcap/herdcap/simulate"
)

// verdict explains one judgement of the report: how it is made, and what
// it found for each run (or each bound).
type verdict struct {
	Title, How string
	Findings   []finding
}

// finding is one run's (or one bound's) outcome: Good says whether it is
// the outcome a protected system should show.
type finding struct {
	Label, Text string
	Good        bool
}

// metricMeaning says what a bound on a metric checks, for the metrics the
// built-ins bound; others are named by their JSON name.
var metricMeaning = map[string]string{
	"peak_over_budget":       "the highest one-second origin load ÷ the origin budget",
	"peak_over_steady":       "the highest one-second origin load ÷ the steady state before the trigger",
	"peak_rps":               "the highest one-second origin load (requests/s)",
	"collapsed":              "a metastable collapse (1) or not (0), judged as above",
	"recovered":              "recovery (1) or not (0), judged as above",
	"converged":              "whether every affected client converged (1) or not (0)",
	"converge_over_schedule": "time to converge after one wave ÷ the schedule (-1: never converged)",
	"changed_over_budget":    "the most clients changed in one second ÷ the change budget",
	"error_rate":             "the share of client requests that failed after the trigger",
	"amplification":          "origin calls ÷ the calls a fault-free system would make",
	"overload_calls":         "origin load above capacity, summed over the seconds (requests)",
	"max_rise_over_capacity": "the largest one-second rise of origin load ÷ the origin capacity",
	"max_step_over_capacity": "the largest one-second change of origin load ÷ the origin capacity",
	"latency_p99_s":          "the 99th percentile of the clients' time to data (s)",
	"wasted_calls":           "origin calls that timed out: work done for nobody",
	"min_hit_rate":           "the lowest one-second client hit rate after the trigger",
	"goodput_rps":            "the mean rate of fetches that delivered data after the trigger",
	"reconnect_peak":         "the most reconnect attempts in one second",
	"collapse_window_s":      "the length of the window collapse was judged over (0: not judged)",
	"storm_failed_share":     "the share of client requests that failed during the storm (from the trigger, or the end of its outage, until every client converged and the run recovered)",
	"storm_refused_share":    "the share of client requests refused with a time to come back during the storm",
	"overload_s":             "the seconds after the trigger in which the origin was offered more than its capacity",
	"storm_s":                "the storm's length (s)",
	"refused_reconnects":     "the reconnect attempts refused with a slot to come back at",
}

func describeBound(b simulate.Bound) string {
	if len(b.Any) > 0 {
		parts := make([]string, len(b.Any))
		for i, a := range b.Any {
			parts[i] = describeBound(a)
		}
		return "any of: " + strings.Join(parts, "; or ")
	}
	m := metricMeaning[b.Metric]
	if m == "" {
		m = "the result's " + b.Metric
	}
	var lim []string
	if b.Min != nil {
		lim = append(lim, "at least "+strconv.FormatFloat(*b.Min, 'g', -1, 64))
	}
	if b.Max != nil {
		lim = append(lim, "at most "+strconv.FormatFloat(*b.Max, 'g', -1, 64))
	}
	return "in the " + string(b.Run) + " run, " + m + " must be " + strings.Join(lim, " and ")
}

// verdicts explains c's verdicts: collapse, recovery, convergence against
// the schedule, and each bound.
func verdicts(c *simulate.Comparison) []verdict {
	sc := c.Scenario
	runs := []*simulate.Result{c.Unprotected, c.Protected}
	win := formatNum(simulate.CollapseWindow.Seconds())
	var vs []verdict

	col := verdict{
		Title: "Metastable collapse",
		How: fmt.Sprintf("A collapse is a failure that outlasts its trigger. It is judged over the run's last %s s, "+
			"which must begin after the trigger's own work could have finished (the settle time: the schedule plus one wave, "+
			"one origin call per affected client at full capacity, and at least a minute). The run collapsed when in every second "+
			"of that window the trailing %d seconds were failing: the origin's offered load at or above its capacity (%s requests/s), "+
			"or at least 10%% of client requests failing, or goodput under half of its normal before the trigger. "+
			"A run too short for that window is not judged, which is not a pass.", win, 10, formatNum(sc.Origin.Capacity)),
	}
	for _, r := range runs {
		f := finding{Label: string(r.Mode)}
		switch {
		case r.CollapseWindowS == 0:
			f.Text = fmt.Sprintf("not judged: the run ends %s s after the trigger, too soon for a %s s window after a settle time of %s s",
				formatNum(sc.Duration.D().Seconds()-sc.Trigger.At.Seconds()), win, formatNum(r.SettleS))
		case r.Collapsed:
			f.Text = fmt.Sprintf("collapsed: failing in every second of the last %s s (settle time %s s)", formatNum(r.CollapseWindowS), formatNum(r.SettleS))
		default:
			f.Text = fmt.Sprintf("did not collapse: some second of the last %s s was not failing (settle time %s s)", formatNum(r.CollapseWindowS), formatNum(r.SettleS))
			f.Good = true
		}
		col.Findings = append(col.Findings, f)
	}
	vs = append(vs, col)

	rec := verdict{
		Title: "Recovery",
		How: "Recovered when, from some second after the trigger to the end of the run (at least a minute), the trailing minute " +
			"always had a hit rate of at least 90% of normal and an error rate under 1%; the time is from the trigger to that second.",
	}
	for _, r := range runs {
		f := finding{Label: string(r.Mode)}
		if r.Recovered {
			f.Text, f.Good = "recovered "+formatNum(r.RecoverS)+" s after the trigger", true
		} else {
			f.Text = "not recovered by the end of the run"
		}
		rec.Findings = append(rec.Findings, f)
	}
	vs = append(vs, rec)

	conv := verdict{
		Title: "Convergence and schedule",
		How: fmt.Sprintf("The trigger affects %s clients. One converges when it has applied the change and holds data again, connected; "+
			"the time to converge runs from the trigger to the last one. The schedule is the fastest the change budget lets them change: "+
			"affected ÷ change budget (no less than the rollout's least duration), and one wave is one cohort interval (one tick for the others). "+
			"The target is (converge − one wave) ÷ schedule ≤ 1.1.", formatNum(float64(c.Protected.Affected))),
	}
	for _, r := range runs {
		f := finding{Label: string(r.Mode)}
		left := 0.0
		if u := r.Series; u != nil && len(u.Unconverged) > 0 {
			left = u.Unconverged[len(u.Unconverged)-1]
		}
		switch {
		case r.Converged && r.ScheduleS > 0:
			f.Text = fmt.Sprintf("every client converged %s s after the trigger; schedule %s s at %s clients/s, one wave %s s: %s × schedule",
				formatNum(r.ConvergeS), formatNum(r.ScheduleS), formatNum(r.ChangeBudget), formatNum(r.WaveS), formatNum(r.ConvergeOverSchedule))
			f.Good = r.ConvergeOverSchedule <= 1.1
		case r.Converged:
			f.Text, f.Good = fmt.Sprintf("every client converged %s s after the trigger", formatNum(r.ConvergeS)), true
		default:
			f.Text = fmt.Sprintf("not converged: %s of %s affected clients had not converged when the run ended", formatNum(left), formatNum(float64(r.Affected)))
		}
		conv.Findings = append(conv.Findings, f)
	}
	vs = append(vs, conv)

	if len(c.Checks) > 0 {
		bv := verdict{Title: "Bounds", How: "What the scenario declares its runs must show; each bound is checked on the results above."}
		for i, ch := range c.Checks {
			f := finding{Label: "passed", Good: ch.Pass}
			if !ch.Pass {
				f.Label = "FAILED"
			}
			how := ch.Bound
			if i < len(sc.Bounds) {
				how = describeBound(sc.Bounds[i])
			}
			f.Text = how + " (" + ch.Bound + "; got " + ch.Got + ")"
			bv.Findings = append(bv.Findings, f)
		}
		vs = append(vs, bv)
	}
	return vs
}
