package simulate

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// Bound is one check a scenario declares on its results: the metric (a
// Result field by its JSON name, e.g. "peak_over_budget"; booleans count
// as 0 and 1) of the run Run must be at least Min and at most Max. A bound
// with Any instead passes when any of its bounds passes, e.g. "peak at
// least 20 × steady state, or collapse". A bound on "collapsed" fails, with
// got "not judged", when the run was too short to judge a collapse
// (Result.CollapseJudged): a verdict nobody reached is never a pass.
type Bound struct {
	// Run is Protected or Unprotected.
	Run Mode `json:"run,omitempty"`
	// Metric names a Result field by its JSON name.
	Metric string `json:"metric,omitempty"`
	// Min and Max bound the value; at least one is set.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
	// Any holds alternatives; a bound has either Any or Run and Metric.
	Any []Bound `json:"any,omitempty"`
}

// Check is the outcome of one bound.
type Check struct {
	// Bound describes the bound, e.g. "protected.peak_over_budget <= 1.1".
	Bound string `json:"bound"`
	// Got lists the values it was checked against.
	Got string `json:"got"`
	// Pass reports whether the bound held.
	Pass bool `json:"pass"`
}

// metricIndex maps the JSON names of Result's numeric and boolean fields
// to their field indexes.
var metricIndex = func() map[string]int {
	m := map[string]int{}
	t := reflect.TypeFor[Result]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch f.Type.Kind() {
		case reflect.Float64, reflect.Int, reflect.Int64, reflect.Bool:
			m[name] = i
		}
	}
	return m
}()

// Metric returns the value of the Result field whose JSON name is name
// (booleans as 0 and 1), and whether there is one.
func (r *Result) Metric(name string) (float64, bool) {
	i, ok := metricIndex[name]
	if !ok {
		return 0, false
	}
	v := reflect.ValueOf(r).Elem().Field(i)
	switch v.Kind() {
	case reflect.Float64:
		return v.Float(), true
	case reflect.Int, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Bool:
		if v.Bool() {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (b *Bound) validate(path string, depth int) error {
	if depth > 4 {
		return fieldErr(path, "bounds nest at most 4 deep")
	}
	if len(b.Any) > 16 {
		return fieldErr(path+".any", "at most 16 alternatives, got %d", len(b.Any))
	}
	if len(b.Any) > 0 {
		if b.Run != "" || b.Metric != "" || b.Min != nil || b.Max != nil {
			return fieldErr(path, "a bound has either any or run, metric, min and max")
		}
		for i := range b.Any {
			if err := b.Any[i].validate(fmt.Sprintf("%s.any[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if b.Run != Protected && b.Run != Unprotected {
		return fieldErr(path+".run", "must be %q or %q, got %q", Protected, Unprotected, truncate(string(b.Run), 40))
	}
	if _, ok := metricIndex[b.Metric]; !ok {
		return fieldErr(path+".metric", "no such metric %q (use a result field's JSON name, e.g. peak_over_budget)", truncate(b.Metric, 40))
	}
	if b.Min == nil && b.Max == nil {
		return fieldErr(path, "needs min or max")
	}
	for _, v := range []*float64{b.Min, b.Max} {
		if v != nil && (math.IsNaN(*v) || math.IsInf(*v, 0)) {
			return fieldErr(path, "min and max must be finite")
		}
	}
	if b.Min != nil && b.Max != nil && *b.Min > *b.Max {
		return fieldErr(path, "min (%v) is above max (%v): the bound can never hold", *b.Min, *b.Max)
	}
	return nil
}

// String describes b, e.g. "protected.peak_over_budget <= 1.1".
func (b Bound) String() string {
	if len(b.Any) > 0 {
		parts := make([]string, len(b.Any))
		for i, a := range b.Any {
			parts[i] = a.String()
		}
		return "(" + strings.Join(parts, " or ") + ")"
	}
	var parts []string
	name := string(b.Run) + "." + b.Metric
	if b.Min != nil {
		parts = append(parts, name+" >= "+fmtNum(*b.Min))
	}
	if b.Max != nil {
		parts = append(parts, name+" <= "+fmtNum(*b.Max))
	}
	return strings.Join(parts, " and ")
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// check evaluates b against the two runs; got lists the values seen.
func (b Bound) check(un, pr *Result) (pass bool, got []string) {
	if len(b.Any) > 0 {
		for _, a := range b.Any {
			p, g := a.check(un, pr)
			got = append(got, g...)
			pass = pass || p
		}
		return pass, got
	}
	r := pr
	if b.Run == Unprotected {
		r = un
	}
	if b.Metric == "collapsed" && !r.CollapseJudged {
		// Too short a run to tell: not a pass, whichever way it is bounded.
		return false, []string{string(b.Run) + "." + b.Metric + " = not judged"}
	}
	v, _ := r.Metric(b.Metric)
	pass = (b.Min == nil || v >= *b.Min) && (b.Max == nil || v <= *b.Max)
	return pass, []string{string(b.Run) + "." + b.Metric + " = " + fmtNum(v)}
}

// checkBounds evaluates every bound of sc.
func checkBounds(sc *Scenario, un, pr *Result) ([]Check, bool) {
	all := true
	checks := make([]Check, 0, len(sc.Bounds))
	for _, b := range sc.Bounds {
		p, got := b.check(un, pr)
		checks = append(checks, Check{Bound: b.String(), Got: strings.Join(got, ", "), Pass: p})
		all = all && p
	}
	return checks, all
}
