package report

import (
	"bytes"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/herdcap/herdcap/simulate"
)

// chart is one figure: a series of both runs on the same axes.
type chart struct {
	file, title, ylabel string
	log                 bool
	get                 func(s *simulate.Series) []float64
	// lines returns horizontal reference lines (label, value).
	lines func(c *simulate.Comparison) []ref
}

type ref struct {
	label string
	y     float64
}

var charts = []chart{
	{
		file: "origin", title: "Origin load", ylabel: "origin requests per second (log)", log: true,
		get: func(s *simulate.Series) []float64 { return s.OriginCalls },
		lines: func(c *simulate.Comparison) []ref {
			return []ref{{"capacity", c.Scenario.Origin.Capacity}, {"origin budget", c.Scenario.Protection.OriginBudget}}
		},
	},
	{
		file: "hitrate", title: "Client cache hit rate", ylabel: "hits ÷ page views",
		get: func(s *simulate.Series) []float64 { return s.HitRate },
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
)

// logFloor is where a log axis starts: zero counts are drawn there.
const logFloor = 0.5

func xys(v []float64, log bool) plotter.XYs {
	pts := make(plotter.XYs, len(v))
	for i, y := range v {
		if log {
			y = math.Max(y, logFloor)
		}
		pts[i] = plotter.XY{X: float64(i) / 60, Y: y}
	}
	return pts
}

// renderChart draws ch for c in format ("png" or "svg").
func renderChart(c *simulate.Comparison, ch chart, format string) ([]byte, error) {
	p := plot.New()
	p.Title.Text = c.Scenario.Name + ": " + ch.title + " (" + formatNum(float64(c.Scenario.Clients)) + " clients)"
	p.X.Label.Text = "virtual time (minutes)"
	p.Y.Label.Text = ch.ylabel
	p.Legend.Top = true
	if ch.log {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min = logFloor
	} else {
		p.Y.Min, p.Y.Max = 0, 1.05
	}
	for _, run := range []struct {
		label string
		r     *simulate.Result
		col   color.Color
	}{{"unprotected", c.Unprotected, red}, {"protected", c.Protected, blue}} {
		l, err := plotter.NewLine(xys(ch.get(run.r.Series), ch.log))
		if err != nil {
			return nil, err
		}
		l.Color = run.col
		l.Width = vg.Points(1)
		p.Add(l)
		p.Legend.Add(run.label, l)
	}
	if ch.lines != nil {
		n := float64(len(c.Protected.Series.OriginCalls)) / 60
		for k, r := range ch.lines(c) {
			if r.y <= 0 {
				continue
			}
			l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: r.y}, {X: n, Y: r.y}})
			if err != nil {
				return nil, err
			}
			l.Color = gray
			if k == 1 {
				l.Color = green
			}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(r.label, l)
		}
	}
	// The trigger, as a vertical line.
	trig := c.Scenario.Trigger.At.Seconds() / 60
	lo, hi := logFloor, 1.05
	if ch.log {
		hi = logFloor
		for _, r := range []*simulate.Result{c.Unprotected, c.Protected} {
			for _, v := range ch.get(r.Series) {
				hi = math.Max(hi, v)
			}
		}
		hi *= 1.5
	} else {
		lo = 0
	}
	tl, err := plotter.NewLine(plotter.XYs{{X: trig, Y: lo}, {X: trig, Y: hi}})
	if err != nil {
		return nil, err
	}
	tl.Color = color.Black
	tl.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
	p.Add(tl)
	p.Legend.Add("trigger", tl)
	p.Legend.Padding = vg.Points(2)
	p.Legend.ThumbnailWidth = vg.Points(20)
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	wt, err := p.WriterTo(9*vg.Inch, 4*vg.Inch, format)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
