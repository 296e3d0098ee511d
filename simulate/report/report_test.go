package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herdcap/herdcap/simulate"
)

var (
	once sync.Once
	cmp  *simulate.Comparison
	cerr error

	dirOnce sync.Once
	tmpRoot string // removed by TestMain
	outDir  string
	dirErr  error
)

// written writes the shared comparison's report once (rendering its
// fourteen charts is the slow part of these tests) and returns the
// directory; tests only read it.
func written(t *testing.T) string {
	t.Helper()
	c := comparison(t)
	dirOnce.Do(func() {
		tmpRoot, dirErr = os.MkdirTemp("", "report-test")
		if dirErr == nil {
			outDir = filepath.Join(tmpRoot, "nested", "out")
			dirErr = WriteDir(outDir, []*simulate.Comparison{c})
		}
	})
	require.NoError(t, dirErr)
	return outDir
}

// comparison runs one small real comparison, shared by the tests.
func comparison(t *testing.T) *simulate.Comparison {
	t.Helper()
	once.Do(func() {
		scs, err := simulate.BuiltIn()
		if err != nil {
			cerr = err
			return
		}
		sc, err := scs[2].Scale(2000) // incident, 30 virtual minutes: long enough to judge a collapse
		if err != nil {
			cerr = err
			return
		}
		cmp, cerr = simulate.Compare(context.Background(), sc, simulate.Config{})
	})
	require.NoError(t, cerr)
	return cmp
}

func TestTable(t *testing.T) {
	c := comparison(t)
	var b bytes.Buffer
	require.NoError(t, Table(&b, []*simulate.Comparison{c}))
	out := b.String()
	assert.Contains(t, out, "== incident: 2000 clients, 10 nodes, 30m0s virtual, seed 1, memory store")
	assert.Contains(t, out, "metric")
	assert.Contains(t, out, "unprotected")
	assert.Contains(t, out, "NO: metastable collapse")
	assert.Contains(t, out, "bounds: ")
	for _, r := range rows {
		assert.Contains(t, out, r.label)
	}
}

func TestWriteDir(t *testing.T) {
	dir := written(t)
	files := []string{"incident.csv", "index.html"}
	for _, ch := range []string{"origin", "goodput", "errors", "latency", "connected", "hitrate", "changed"} {
		files = append(files, "incident-"+ch+".png", "incident-"+ch+".svg")
	}
	for _, f := range files {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		assert.Positive(t, st.Size(), f)
	}
	png, err := os.ReadFile(filepath.Join(dir, "incident-origin.png"))
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")))
	svg, err := os.ReadFile(filepath.Join(dir, "incident-origin.svg"))
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(svg), "<svg"))
	html, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	assert.Equal(t, 7, strings.Count(string(html), `<img src="data:image/svg`), "the report embeds the seven charts")
	assert.True(t, strings.Contains(string(html), `href="incident.csv"`), "the report links the CSV")

	f, err := os.Open(filepath.Join(dir, "incident.csv"))
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 1+1800, "a header and one row per virtual second")
	assert.Equal(t, "second", recs[0][0])
	assert.Contains(t, recs[0], "unprotected_origin_rps")
	assert.Contains(t, recs[0], "protected_hit_rate")
	assert.Contains(t, recs[0], "unprotected_latency_p99_s")
	// Latency: a number in a second that completed a need, else empty.
	col := slices.Index(recs[0], "unprotected_latency_p99_s")
	gp := slices.Index(recs[0], "unprotected_goodput")
	empty := 0
	for _, rec := range recs[1:] {
		if rec[col] == "" {
			empty++
			assert.Equal(t, "0", rec[gp], "second %s: no latency, no goodput", rec[0])
			continue
		}
		v, err := strconv.ParseFloat(rec[col], 64)
		require.NoError(t, err)
		assert.Positive(t, v)
	}
	assert.Positive(t, empty, "the collapsed unprotected run completes nothing for most seconds")
}

// TestDirStaysInside: nothing is written outside the output directory,
// whatever the names or the links planted in it.
func TestDirStaysInside(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "out")
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	d, err := OpenDir(dir)
	require.NoError(t, err)
	defer d.Close()
	for _, name := range []string{"../escape.csv", "../../etc/x", "/tmp/abs.csv", "sub/file.csv", "..", ".", ".hidden", "", `a\b`} {
		_, err := d.Create(name)
		assert.ErrorIs(t, err, ErrBadName, "%q", name)
	}
	// A symbolic link planted in the directory, pointing out of it.
	require.NoError(t, os.Symlink(filepath.Join(outside, "victim.csv"), filepath.Join(dir, "incident.csv")))
	err = d.WriteFile("incident.csv", []byte("x"))
	require.Error(t, err, "a link out of the directory is not followed")
	_, err = os.Stat(filepath.Join(outside, "victim.csv"))
	assert.True(t, os.IsNotExist(err), "nothing was created outside")
	// A link to a directory outside.
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "linkdir")))
	_, err = d.Create("linkdir")
	assert.Error(t, err)
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries)

	// WriteDir refuses a directory whose report files are such links.
	err = WriteDir(dir, []*simulate.Comparison{comparison(t)})
	assert.Error(t, err)
	entries, err = os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestWriteDirDuplicateNames: two comparisons of one name would overwrite
// each other's files; WriteDir refuses them before writing anything.
func TestWriteDirDuplicateNames(t *testing.T) {
	c := comparison(t)
	dir := filepath.Join(t.TempDir(), "out")
	err := WriteDir(dir, []*simulate.Comparison{c, c})
	require.ErrorIs(t, err, ErrDuplicateName)
	assert.Contains(t, err.Error(), `"incident"`)
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "nothing written")
}

func TestOpenDirErrors(t *testing.T) {
	_, err := OpenDir("")
	assert.Error(t, err)
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = OpenDir(file)
	assert.Error(t, err)
	_, err = OpenDir(filepath.Join(file, "sub"))
	assert.Error(t, err)
}

func TestFormatNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12: "12", 1234.5678: "1234.6", 3.14159: "3.142", 0.0001234: "0.0001234"} {
		assert.Equal(t, want, formatNum(v))
	}
	assert.True(t, strings.HasPrefix(formatNum(-2.5), "-2.5"))
}

// TestHTMLVerdicts: index.html explains each verdict beside the table:
// how collapse is judged, recovery, convergence against the schedule, and
// each bound with its outcome; the page's elements are balanced.
func TestHTMLVerdicts(t *testing.T) {
	c := comparison(t)
	b, err := os.ReadFile(filepath.Join(written(t), "index.html"))
	require.NoError(t, err)
	page := string(b)
	for _, tag := range []string{"section", "div", "ul", "li", "pre", "figure", "h2", "h3", "p"} {
		assert.Equal(t, strings.Count(page, "<"+tag+">")+strings.Count(page, "<"+tag+" "), strings.Count(page, "</"+tag+">"), "<%s> balanced", tag)
	}
	// The verdicts sit beside the table, in the same row.
	row := page[strings.Index(page, `<div class="result">`):]
	require.Less(t, strings.Index(row, "<pre>"), strings.Index(row, `<div class="verdicts">`))
	for _, want := range []string{
		"<h3>Metastable collapse</h3>",
		"judged over the run&#39;s last 300 s",
		"the trailing 10 seconds were failing",
		"or at least 10% of client requests failing, or goodput under half of its normal",
		"is not judged, which is not a pass",
		`<li class="bad"><b>unprotected</b>: collapsed: failing in every second of the last 300 s`,
		`<li class="good"><b>protected</b>: did not collapse`,
		"<h3>Recovery</h3>",
		"<h3>Convergence and schedule</h3>",
		"The target is (converge − one wave) ÷ schedule ≤ 1.1.",
		"<h3>Bounds</h3>",
	} {
		assert.Contains(t, page, want)
	}
	// Every bound: what it checks, whether it held, and the value.
	assert.Equal(t, len(c.Checks), strings.Count(page, "<b>passed</b>")+strings.Count(page, "<b>FAILED</b>"))
	assert.Contains(t, page, "in the protected run, the highest one-second origin load ÷ the origin budget must be at most 1.1 (protected.peak_over_budget &lt;= 1.1; got protected.peak_over_budget = ")
}

// TestVerdictNotJudged: a run too short to judge a collapse says so, and
// a failed bound reads FAILED.
func TestVerdictNotJudged(t *testing.T) {
	c := *comparison(t)
	un := *c.Unprotected
	un.CollapseWindowS, un.Collapsed = 0, false
	c.Unprotected = &un
	c.Checks = []simulate.Check{{Bound: "unprotected.collapsed >= 1", Got: "unprotected.collapsed = 0", Pass: false}}
	vs := verdicts(&c)
	require.Equal(t, "Metastable collapse", vs[0].Title)
	assert.Contains(t, vs[0].Findings[0].Text, "not judged: the run ends 1680 s after the trigger, too soon for a 300 s window")
	assert.False(t, vs[0].Findings[0].Good)
	last := vs[len(vs)-1]
	require.Equal(t, "Bounds", last.Title)
	assert.Equal(t, "FAILED", last.Findings[0].Label)
}
