package report

import (
	"bytes"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/herdcap/herdcap/simulate"
)

// chart is one figure: a series of both runs on the same axes.
type chart struct {
	file, title, ylabel string
	// log draws the y axis on a log scale: values of 0 are gaps.
	log bool
	// get returns the series to draw, NaN where a second has no data
	// (drawn as a gap).
	get func(s *simulate.Series) []float64
	// lines returns horizontal reference lines (label, value).
	lines func(c *simulate.Comparison) []ref
	// ymax is the top of a linear axis (0: from the data).
	ymax func(c *simulate.Comparison) float64
	// extra returns a third series to draw, in purple, with its label
	// (nil: none).
	extra func(c *simulate.Comparison) (string, []float64)
	// when says whether the comparison has this chart (nil: always).
	when func(c *simulate.Comparison) bool
}

type ref struct {
	label string
	y     float64
}

// charts are the figures WriteDir draws for each comparison, in order.
var charts = []chart{
	{
		file: "origin", title: "Origin load", ylabel: "origin requests per second (log)", log: true,
		get: func(s *simulate.Series) []float64 { return s.OriginCalls },
		lines: func(c *simulate.Comparison) []ref {
			return []ref{{"capacity", c.Scenario.Origin.Capacity}, {"origin budget", c.Scenario.Protection.OriginBudget}}
		},
		extra: func(c *simulate.Comparison) (string, []float64) {
			if c.Scenario.Protection.Headroom == nil {
				return "", nil
			}
			return "headroom limit (protected)", c.Protected.Series.Limit
		},
	},
	{
		file: "goodput", title: "Goodput: fetches that delivered data", ylabel: "fetches per second (log)", log: true,
		get: func(s *simulate.Series) []float64 { return s.Goodput },
	},
	{
		file: "errors", title: "Client request errors", ylabel: "failed requests per second (log)", log: true,
		get: func(s *simulate.Series) []float64 { return s.Errors },
	},
	{
		file: "latency", title: "Client time to data, p99 of the needs completed each second", ylabel: "seconds (log)", log: true,
		get: func(s *simulate.Series) []float64 {
			out := make([]float64, len(s.LatencyP99))
			for i, v := range s.LatencyP99 {
				out[i] = v
				if v == simulate.NoLatency {
					out[i] = math.NaN()
				}
			}
			return out
		},
	},
	{
		file: "connected", title: "Connected clients", ylabel: "clients",
		get:  func(s *simulate.Series) []float64 { return s.Connected },
		ymax: func(c *simulate.Comparison) float64 { return 1.05 * float64(c.Scenario.Clients) },
	},
	{
		file: "hitrate", title: "Client cache hit rate", ylabel: "hits ÷ page views",
		get: func(s *simulate.Series) []float64 {
			out := make([]float64, len(s.HitRate))
			for i, v := range s.HitRate {
				out[i] = v
				if s.Views[i] == 0 {
					out[i] = math.NaN() // no page view, no rate
				}
			}
			return out
		},
		ymax: func(*simulate.Comparison) float64 { return 1.05 },
	},
	{
		file: "nodehit", title: "Node cache hit rate (answers with the current content)", ylabel: "fresh hits ÷ node lookups",
		get: func(s *simulate.Series) []float64 {
			out := make([]float64, len(s.Lookups))
			for i, n := range s.Lookups {
				out[i] = math.NaN() // no lookup, no rate
				if n > 0 {
					out[i] = s.Fresh[i] / n
				}
			}
			return out
		},
		ymax: func(*simulate.Comparison) float64 { return 1.05 },
		// The triggers about the node caches: content-push, cold-node.
		when: func(c *simulate.Comparison) bool { return c.Protected.WarmKeys >= 0 },
	},
	{
		file: "changed", title: "Clients changed per second", ylabel: "clients per second (log)", log: true,
		get: func(s *simulate.Series) []float64 { return s.Changed },
		lines: func(c *simulate.Comparison) []ref {
			return []ref{{"change budget", c.Protected.ChangeBudget}}
		},
	},
}

var (
	red   = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	blue  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	gray  = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	green = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	// purple draws a chart's extra series (the headroom limit).
	purple = color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}
)

// drawable reports whether y is data the chart can draw: a number, and
// above zero on a log axis.
func drawable(y float64, log bool) bool {
	return !math.IsNaN(y) && !math.IsInf(y, 0) && (!log || y > 0)
}

// segments splits v into runs of drawable seconds, x in minutes: the gaps
// between them are seconds without data (or with zero counts on a log
// axis), drawn as nothing.
func segments(v []float64, log bool) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	for i, y := range v {
		if !drawable(y, log) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, plotter.XY{X: float64(i) / 60, Y: y})
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// yRange returns the range of the drawable values of vs and refs.
func yRange(log bool, refs []ref, vs ...[]float64) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	see := func(y float64) {
		if drawable(y, log) {
			lo, hi, ok = min(lo, y), max(hi, y), true
		}
	}
	for _, v := range vs {
		for _, y := range v {
			see(y)
		}
	}
	for _, r := range refs {
		see(r.y)
	}
	return lo, hi, ok
}

// logTicks marks a log axis with labelled ticks at the powers of ten, and
// at 2 and 5 times them when the axis spans less than two decades, so
// that every log axis has labelled ticks inside its range.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return nil
	}
	k0, k1 := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	dense := math.Log10(hi/lo) < 2
	var ticks []plot.Tick
	labelled := 0
	for k := k0; k <= k1; k++ {
		p := math.Pow10(k)
		for m := 1; m < 10; m++ {
			v := float64(m) * p
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (dense && (m == 2 || m == 5)) {
				t.Label = formatNum(v)
				labelled++
			}
			ticks = append(ticks, t)
		}
	}
	if labelled < 2 { // within one stretch between labels: label them all
		for i := range ticks {
			ticks[i].Label = formatNum(ticks[i].Value)
		}
	}
	return ticks
}

// exponentTicks marks an axis of decimal exponents (a log axis drawn as
// log10 of the values on a linear one) with logTicks' ticks, labelled
// with the values. gonum's LogScale places the rotated axis label at the
// linear middle of the data range, which on a log axis crowds the plot
// to the bottom; a linear axis of exponents has no such trouble.
type exponentTicks struct{}

func (exponentTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := logTicks{}.Ticks(math.Pow(10, lo), math.Pow(10, hi))
	for i := range ticks {
		ticks[i].Value = math.Log10(ticks[i].Value)
	}
	return ticks
}

// renderChart draws ch for c in format ("png" or "svg").
func renderChart(c *simulate.Comparison, ch chart, format string) ([]byte, error) {
	p := plot.New()
	p.Title.Text = c.Scenario.Name + ": " + ch.title + " (" + formatNum(float64(c.Scenario.Clients)) + " clients)"
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = "virtual time (minutes)"
	p.Y.Label.Text = ch.ylabel
	// The legend goes right of the axes, where it hides no data.
	leg := plot.NewLegend()
	leg.Left, leg.Top = true, true
	leg.Padding = vg.Points(2)
	leg.ThumbnailWidth = vg.Points(20)
	leg.TextStyle.Font.Size = vg.Points(9)
	runs := []struct {
		label string
		r     *simulate.Result
		col   color.Color
	}{{"unprotected", c.Unprotected, red}, {"protected", c.Protected, blue}}
	var refs []ref
	if ch.lines != nil {
		for _, r := range ch.lines(c) {
			if r.y > 0 {
				refs = append(refs, r)
			}
		}
	}
	data := make([][]float64, len(runs))
	for k, run := range runs {
		data[k] = ch.get(run.r.Series)
	}
	if ch.extra != nil {
		if label, v := ch.extra(c); v != nil {
			runs = append(runs, struct {
				label string
				r     *simulate.Result
				col   color.Color
			}{label, c.Protected, purple})
			data = append(data, v)
		}
	}
	var secs int
	for _, d := range data {
		secs = max(secs, len(d))
	}
	p.X.Min, p.X.Max = 0, float64(secs)/60

	// The y range: the data's, and the reference lines'.
	lo, hi, ok := yRange(ch.log, refs, data...)
	switch {
	case ch.log && ok:
		lo = math.Pow10(int(math.Floor(math.Log10(lo))))
		hi *= 1.5
		if hi <= lo*1.0001 {
			hi = lo * 10
		}
	case ch.log:
		lo, hi = 1, 10 // nothing to draw: an empty decade
	default:
		lo = 0
		if ch.ymax != nil {
			hi = ch.ymax(c)
		} else if !ok || hi <= 0 {
			hi = 1
		} else {
			hi *= 1.05
		}
	}
	// y maps a value to the axis: its decimal exponent on a log chart.
	y := func(v float64) float64 { return v }
	if ch.log {
		y = math.Log10
		p.Y.Tick.Marker = exponentTicks{}
	}
	p.Y.Min, p.Y.Max = y(lo), y(hi)

	// The trigger, as a vertical line under the data.
	trig := c.Scenario.Trigger.At.Seconds() / 60
	tl, err := plotter.NewLine(plotter.XYs{{X: trig, Y: y(lo)}, {X: trig, Y: y(hi)}})
	if err != nil {
		return nil, err
	}
	tl.Color = color.Black
	tl.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
	p.Add(tl)
	for k, run := range runs {
		first := true
		for _, seg := range segments(data[k], ch.log) {
			for i := range seg {
				seg[i].Y = y(seg[i].Y)
			}
			if len(seg) == 1 { // a second alone between gaps: a dot
				sc, err := plotter.NewScatter(seg)
				if err != nil {
					return nil, err
				}
				sc.GlyphStyle = draw.GlyphStyle{Color: run.col, Radius: vg.Points(2), Shape: draw.CircleGlyph{}}
				p.Add(sc)
				continue
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				return nil, err
			}
			l.Color = run.col
			l.Width = vg.Points(1)
			p.Add(l)
			if first {
				leg.Add(run.label, l)
				first = false
			}
		}
		if first { // no line of this run: still name it
			l := &plotter.Line{LineStyle: draw.LineStyle{Color: run.col, Width: vg.Points(1)}}
			leg.Add(run.label, l)
		}
	}
	for k, r := range refs {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: y(r.y)}, {X: p.X.Max, Y: y(r.y)}})
		if err != nil {
			return nil, err
		}
		l.Color = gray
		if k == 1 {
			l.Color = green
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		leg.Add(r.label, l)
	}
	leg.Add("trigger", tl)
	cw, err := draw.NewFormattedCanvas(9*vg.Inch, 4*vg.Inch, format)
	if err != nil {
		return nil, err
	}
	dc := draw.New(cw)
	r := leg.Rectangle(dc)
	lw := r.Max.X - r.Min.X
	gap := vg.Points(8)
	p.Draw(draw.Crop(dc, 0, -(lw + 2*gap), 0, 0))
	leg.Draw(draw.Crop(dc, dc.Max.X-dc.Min.X-lw-gap, -gap, 0, -vg.Points(30)))
	var buf bytes.Buffer
	if _, err := cw.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
