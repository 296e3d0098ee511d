package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdcap/herdcap/simulate"
	"github.com/herdcap/herdcap/simulate/report"
)

// rogue is a small scenario: the rogue node's "invalidate everything" at
// 5,000 clients.
const rogue = `{
	"name": "rogue",
	"clients": 5000,
	"origin": { "capacity": 5, "timeout": "30s" },
	"protection": { "origin_budget": 4, "rollout_rate": 10 },
	"trigger": { "kind": "rogue-invalidate", "at": "2m" },
	"bounds": [
		{ "run": "protected", "metric": "peak_over_budget", "max": 1.1 },
		{ "any": [
			{ "run": "unprotected", "metric": "storm_failed_share", "min": 0.2 },
			{ "run": "unprotected", "metric": "collapsed", "min": 1 }
		] }
	]
}`

func compare() *simulate.Comparison {
	sc, err := simulate.ParseScenario([]byte(rogue))
	if err != nil {
		panic(err)
	}
	c, err := simulate.Compare(context.Background(), sc, simulate.Config{})
	if err != nil {
		panic(err)
	}
	return c
}

// Table prints every metric unprotected against protected, then the
// bounds; here, a few of its lines.
func ExampleTable() {
	var b bytes.Buffer
	if err := report.Table(&b, []*simulate.Comparison{compare()}); err != nil {
		fmt.Println(err)
		return
	}
	sc := bufio.NewScanner(&b)
	for sc.Scan() {
		line := sc.Text()
		for _, prefix := range []string{"== ", "metric", "recovered after", "bounds:", "  ok", "  FAIL"} {
			if strings.HasPrefix(line, prefix) {
				fmt.Println(strings.Join(strings.Fields(line), " "))
			}
		}
	}
	// Output:
	// == rogue: 5000 clients, 10 nodes, 30m0s virtual, seed 1, memory store
	// metric unprotected protected
	// recovered after the trigger yes, after 76 s yes, after 510 s
	// bounds: PASS (2 of 2 hold)
	// ok protected.peak_over_budget <= 1.1 [protected.peak_over_budget = 1]
	// ok (unprotected.storm_failed_share >= 0.2 or unprotected.collapsed >= 1) [unprotected.storm_failed_share = 0.831205, unprotected.collapsed = 0]
}

// WriteCSV writes one row per virtual second, a column per series and run.
func ExampleWriteCSV() {
	var b bytes.Buffer
	if err := report.WriteCSV(&b, compare()); err != nil {
		fmt.Println(err)
		return
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(recs)-1, "rows")
	fmt.Println(strings.Join(recs[0][:4], ","))
	fmt.Println(strings.Join(recs[1+120][:2], ","), "requests at the origin, unprotected, in the second the trigger fired")
	// Output:
	// 1800 rows
	// second,unprotected_origin_rps,unprotected_origin_errors,unprotected_queue_delay_s
	// 120,4774 requests at the origin, unprotected, in the second the trigger fired
}

// WriteDir writes the series, the charts and an HTML report under a
// directory, and nowhere else.
func ExampleWriteDir() {
	dir, err := os.MkdirTemp("", "stormsim")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := report.WriteDir(filepath.Join(dir, "out"), []*simulate.Comparison{compare()}); err != nil {
		fmt.Println(err)
		return
	}
	entries, err := os.ReadDir(filepath.Join(dir, "out"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	// Output:
	// index.html
	// rogue-changed.png
	// rogue-changed.svg
	// rogue-connected.png
	// rogue-connected.svg
	// rogue-errors.png
	// rogue-errors.svg
	// rogue-goodput.png
	// rogue-goodput.svg
	// rogue-hitrate.png
	// rogue-hitrate.svg
	// rogue-latency.png
	// rogue-latency.svg
	// rogue-origin.png
	// rogue-origin.svg
	// rogue.csv
}
