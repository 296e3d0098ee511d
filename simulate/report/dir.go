package report

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"regexp"
	"strconv"

	"github.com/herdcap/herdcap/simulate"
)

// ErrBadName reports a file name that would leave the output directory.
var ErrBadName = errors.New("report: file name would leave the output directory")

// ErrDuplicateName reports two comparisons of one scenario name given to
// WriteDir: their files would overwrite each other's.
var ErrDuplicateName = errors.New("report: scenario names must be unique")

// safeName is what a file written under the output directory may be
// called: no separators, no leading dot, so never "..".
var safeName = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}$`)

// Dir is an output directory that files are created in and only in: every
// file is opened through an os.Root, which refuses ".." and symbolic links
// that lead out of it, and names are checked before that.
type Dir struct {
	root *os.Root
}

// OpenDir creates dir if needed (with its parents) and opens it for
// writing. Close it when done.
func OpenDir(dir string) (*Dir, error) {
	if dir == "" {
		return nil, fmt.Errorf("report: output directory: empty path")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: output directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("report: output directory: %w", err)
	}
	return &Dir{root: root}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return d.root.Close() }

// Create creates (or truncates) the file name directly under the
// directory. A name with a separator, a leading dot, or that resolves
// outside the directory (a symbolic link planted there) is refused.
func (d *Dir) Create(name string) (*os.File, error) {
	if !safeName.MatchString(name) {
		return nil, fmt.Errorf("%w: %q", ErrBadName, name)
	}
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return f, nil
}

// WriteFile writes data to the file name under the directory.
func (d *Dir) WriteFile(name string, data []byte) error {
	f, err := d.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("report: %s: %w", name, err)
	}
	return f.Close()
}

// column is one per-second series of a Result, by its CSV name.
type column struct {
	name string
	get  func(s *simulate.Series) []float64
}

var columns = []column{
	{"origin_rps", func(s *simulate.Series) []float64 { return s.OriginCalls }},
	{"origin_errors", func(s *simulate.Series) []float64 { return s.OriginErrors }},
	{"queue_delay_s", func(s *simulate.Series) []float64 { return s.QueueDelay }},
	{"views", func(s *simulate.Series) []float64 { return s.Views }},
	{"hits", func(s *simulate.Series) []float64 { return s.Hits }},
	{"hit_rate", func(s *simulate.Series) []float64 { return s.HitRate }},
	{"requests", func(s *simulate.Series) []float64 { return s.Requests }},
	{"errors", func(s *simulate.Series) []float64 { return s.Errors }},
	{"goodput", func(s *simulate.Series) []float64 { return s.Goodput }},
	{"changed", func(s *simulate.Series) []float64 { return s.Changed }},
	{"reconnects", func(s *simulate.Series) []float64 { return s.Reconnects }},
	{"connected", func(s *simulate.Series) []float64 { return s.Connected }},
	{"unconverged", func(s *simulate.Series) []float64 { return s.Unconverged }},
	{"redis_ops", func(s *simulate.Series) []float64 { return s.RedisOps }},
	{"redis_failed", func(s *simulate.Series) []float64 { return s.RedisFailed }},
	{"limit", func(s *simulate.Series) []float64 { return s.Limit }},
	{"spare", func(s *simulate.Series) []float64 { return s.Spare }},
	{"latency_p99_s", func(s *simulate.Series) []float64 { return s.LatencyP99 }},
}

// WriteCSV writes c's per-second series: one row per virtual second, a
// column per series and run ("unprotected_origin_rps", ...). The
// latency_p99_s columns (Series.LatencyP99, in seconds) are empty in a
// second in which no need completed.
func WriteCSV(w io.Writer, c *simulate.Comparison) error {
	cw := csv.NewWriter(w)
	head := []string{"second"}
	for _, mode := range []string{"unprotected", "protected"} {
		for _, col := range columns {
			head = append(head, mode+"_"+col.name)
		}
	}
	if err := cw.Write(head); err != nil {
		return err
	}
	un, pr := c.Unprotected.Series, c.Protected.Series
	n := min(len(un.OriginCalls), len(pr.OriginCalls))
	rec := make([]string, len(head))
	for i := range n {
		rec[0] = strconv.Itoa(i)
		k := 1
		for _, s := range []*simulate.Series{un, pr} {
			for _, col := range columns {
				v := col.get(s)[i]
				rec[k] = strconv.FormatFloat(v, 'g', -1, 64)
				if col.name == "latency_p99_s" && v == simulate.NoLatency {
					rec[k] = ""
				}
				k++
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteDir writes, for each comparison, NAME.csv (the per-second series),
// the charts NAME-origin (with the capacity and the budget), NAME-goodput,
// NAME-errors, NAME-latency (client time to data, p99 per second),
// NAME-connected, NAME-hitrate, NAME-nodehit (the node caches' hit rate
// with the current content, for content-push and cold-node) and
// NAME-changed, unprotected against protected, as PNG and SVG, and index.html, a report that embeds the
// charts and explains each verdict beside the table. It creates files only
// under dir. Two comparisons of one scenario name are refused (their files
// would overwrite each other's), before anything is written.
func WriteDir(dir string, cs []*simulate.Comparison) (err error) {
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.Scenario.Name] {
			return fmt.Errorf("%w: two comparisons are named %q", ErrDuplicateName, c.Scenario.Name)
		}
		seen[c.Scenario.Name] = true
	}
	d, err := OpenDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}()
	var pages []htmlScenario
	for _, c := range cs {
		name := c.Scenario.Name
		var buf bytes.Buffer
		if err := WriteCSV(&buf, c); err != nil {
			return fmt.Errorf("report: %s.csv: %w", name, err)
		}
		if err := d.WriteFile(name+".csv", buf.Bytes()); err != nil {
			return err
		}
		page := htmlScenario{Name: name, Description: c.Scenario.Description, CSV: name + ".csv", Verdicts: verdicts(c)}
		for _, ch := range charts {
			if ch.when != nil && !ch.when(c) {
				continue
			}
			for _, format := range []string{"png", "svg"} {
				b, err := renderChart(c, ch, format)
				if err != nil {
					return fmt.Errorf("report: %s-%s.%s: %w", name, ch.file, format, err)
				}
				file := name + "-" + ch.file + "." + format
				if err := d.WriteFile(file, b); err != nil {
					return err
				}
				if format == "svg" {
					page.Charts = append(page.Charts, htmlChart{
						Title: ch.title,
						Data:  template.URL("data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString(b)),
						PNG:   name + "-" + ch.file + ".png",
					})
				}
			}
		}
		var tb bytes.Buffer
		if err := Table(&tb, []*simulate.Comparison{c}); err != nil {
			return err
		}
		page.Table = tb.String()
		pages = append(pages, page)
	}
	var buf bytes.Buffer
	if err := htmlPage.Execute(&buf, pages); err != nil {
		return fmt.Errorf("report: index.html: %w", err)
	}
	return d.WriteFile("index.html", buf.Bytes())
}

type htmlChart struct {
	Title string
	Data  template.URL
	PNG   string
}

type htmlScenario struct {
	Name, Description, Table, CSV string
	Charts                        []htmlChart
	Verdicts                      []verdict
}

var htmlPage = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>herdcap storm simulation</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 13px; }
figure { margin: 1em 0; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
.result { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.result pre { flex: 1 1 560px; margin: 0; }
.verdicts { flex: 1 1 380px; font-size: 14px; }
.verdicts h3 { font-size: 15px; margin: 0.8em 0 0.2em; }
.verdicts p { margin: 0.2em 0; color: #444; }
.verdicts ul { margin: 0.2em 0; padding-left: 1.2em; }
.good { color: #1a7f37; }
.bad { color: #b42318; }
</style>
</head>
<body>
<h1>herdcap storm simulation</h1>
<p>Each scenario runs twice with the same seed: unprotected (the fleet of the incident) and protected (through herdcap's real components). Times are virtual.</p>
{{range .}}
<section id="{{.Name}}">
<h2>{{.Name}}</h2>
{{if .Description}}<p>{{.Description}}</p>{{end}}
<div class="result">
<pre>{{.Table}}</pre>
<div class="verdicts">
{{range .Verdicts}}<h3>{{.Title}}</h3>
<p>{{.How}}</p>
<ul>
{{range .Findings}}<li class="{{if .Good}}good{{else}}bad{{end}}"><b>{{.Label}}</b>: {{.Text}}</li>
{{end}}</ul>
{{end}}</div>
</div>
{{range .Charts}}
<figure>
<img src="{{.Data}}" alt="{{.Title}}">
<figcaption>{{.Title}} (<a href="{{.PNG}}">PNG</a>)</figcaption>
</figure>
{{end}}
<p>Per-second series: <a href="{{.CSV}}">{{.CSV}}</a></p>
</section>
{{end}}
</body>
</html>
`))
