package simulate

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// untestedRanges lists the README rows whose range column the test cannot
// probe, and why. Every other non-empty range must parse as "a–b",
// "[a, b]", "(a, b)" and so on, where a bound is a number (1,000, 2^20,
// 1e9, 0.001), a duration (100ms, 24h) or a backticked field path.
var untestedRanges = map[string]string{
	"trigger.limit":       "its upper bound, 1e9 ÷ trigger.factor, is not a constant",
	"bounds":              "a list of checks, not a value (TestBuiltInsMatchSchema and the bound tests cover it)",
	"origin.changes":      "a list of changes, not a value (TestParseScenarioErrors covers each field's range)",
	"redis.outages":       "a list of outages, not a value (TestParseScenarioErrors covers each field's range)",
	"protection.headroom": "an object whose ranges depend on each other and on origin.capacity (TestParseScenarioErrors covers each field's range)",
}

// readmeProbeBase adjusts the built-in reconnect storm so that every
// field can take either end of its range with the others unchanged.
var readmeProbeBase = map[string]any{
	"clients":                  1000,    // client.poll_interval 100ms within MaxPolls
	"nodes":                    5,       // node.keys 10,000,000 × nodes within MaxCacheEntries
	"trigger.node":             0,       // nodes 1
	"trigger.at":               "1s",    // duration 1m
	"client.copy_ttl":          "1000h", // client.poll_interval 1h
	"client.backoff_cap":       "24h",   // client.backoff_base 1h
	"protection.push_interval": "10ms",  // protection.tick 10ms

	// origin.capacity 0.001: Validate refuses budgets above the capacity.
	"protection.origin_budget":  0.001,
	"protection.admission_rate": 0.001,
}

type readmeRow struct {
	paths    []string
	def, rng string
}

var (
	backticked = regexp.MustCompile("`([^`]+)`")
	intervalRE = regexp.MustCompile(`^([\[(])(.+?), (.+)([\])])$`)
	dashRE     = regexp.MustCompile(`^(.+?)–(.+?)(?:, .*)?$`)
)

// readmeRows reads the field table of scenarios/README.md. A name without
// a dot after a dotted one in the same cell takes its prefix.
func readmeRows(t *testing.T) []readmeRow {
	t.Helper()
	b, err := os.ReadFile("scenarios/README.md")
	require.NoError(t, err)
	var rows []readmeRow
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		require.Len(t, cells, 6, "README row %q has 4 columns", line)
		row := readmeRow{def: strings.TrimSpace(cells[3]), rng: strings.TrimSpace(cells[4])}
		prefix := ""
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			name := m[1]
			if i := strings.LastIndex(name, "."); i >= 0 {
				prefix = name[:i+1]
			} else {
				name = prefix + name
			}
			row.paths = append(row.paths, name)
		}
		rows = append(rows, row)
	}
	require.NotEmpty(t, rows, "the README has a field table")
	return rows
}

// leafPaths maps the dotted path of every field the parser accepts (a
// struct's fields, not the struct; a list such as bounds is one) to its type.
func leafPaths(typ reflect.Type, prefix string, out map[string]reflect.Type) map[string]reflect.Type {
	for name, ft := range jsonFields(typ) {
		if ft.Kind() == reflect.Struct {
			leafPaths(ft, prefix+name+".", out)
		} else {
			out[prefix+name] = ft
		}
	}
	return out
}

// field returns the object of a decoded scenario that holds the field at
// path ("clients" or "client.poll_interval": fields nest one deep) and
// the field's name in it.
func field(m map[string]any, path string) (map[string]any, string) {
	if section, name, ok := strings.Cut(path, "."); ok {
		return m[section].(map[string]any), name
	}
	return m, path
}

// rangeBound is one end of a range: its value (nanoseconds for a
// duration, the length for a string) and whether the end is excluded.
type rangeBound struct {
	v    float64
	open bool
}

// parseRange parses a range cell for a field of type typ, reading
// backticked field paths from base; ok is false if the cell is no range.
func parseRange(t *testing.T, cell string, typ reflect.Type, base map[string]any) (lo, hi rangeBound, ok bool) {
	t.Helper()
	var los, his string
	if m := intervalRE.FindStringSubmatch(cell); m != nil {
		los, his, lo.open, hi.open = m[2], m[3], m[1] == "(", m[4] == ")"
	} else if m := dashRE.FindStringSubmatch(cell); m != nil {
		los, his = m[1], m[2]
	} else {
		return lo, hi, false
	}
	num := func(s string) float64 {
		f, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err, "range %q: bound %q is no number", cell, s)
		return f
	}
	value := func(s string) float64 {
		var v any = s
		if m := backticked.FindStringSubmatch(s); m != nil && m[0] == s {
			obj, name := field(base, m[1])
			v = obj[name]
		}
		switch v := v.(type) {
		case float64:
			return v
		case string:
			s = v
		default:
			require.Failf(t, "bad reference", "range %q: %s is no number or duration in the probe base", cell, s)
		}
		if typ == reflect.TypeFor[Duration]() {
			d, err := time.ParseDuration(s)
			require.NoError(t, err, "range %q: bound %q is no duration", cell, s)
			return float64(d)
		}
		s = strings.ReplaceAll(s, ",", "")
		if b, e, ok := strings.Cut(s, "^"); ok {
			return math.Pow(num(b), num(e))
		}
		return num(s)
	}
	lo.v, hi.v = value(los), value(his)
	return lo, hi, true
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestReadmeMatchesParser holds the field table of scenarios/README.md to
// ParseScenario: the table names exactly the fields the parser accepts,
// and every range it states is what the parser takes. Each end of a range
// is accepted; the value just outside it (the next integer, nanosecond,
// whole second if the range says "whole seconds", or float64; for an end
// at 0 of a field with a default, the value past 0, since 0 means the
// default) is refused with an error naming the field.
func TestReadmeMatchesParser(t *testing.T) {
	rows := readmeRows(t)
	leaves := leafPaths(reflect.TypeFor[Scenario](), "", map[string]reflect.Type{})
	var named []string
	for _, r := range rows {
		named = append(named, r.paths...)
	}
	require.ElementsMatch(t, slices.Collect(maps.Keys(leaves)), named, "the README's fields (list B) are the parser's (list A), each once")

	sc, err := LoadScenario("scenarios/reconnect-storm.json") // every default filled in
	require.NoError(t, err)
	var base map[string]any
	require.NoError(t, json.Unmarshal([]byte(jsonString(t, sc)), &base))
	for p, v := range readmeProbeBase {
		obj, name := field(base, p)
		obj[name] = v
	}
	baseJSON := jsonString(t, base)
	require.NoError(t, json.Unmarshal([]byte(baseJSON), &base)) // numbers as float64
	_, err = ParseScenario([]byte(baseJSON))
	require.NoError(t, err, "the probe base is valid")

	// probe parses the base with the field at path set to v; it returns
	// the JSON value it set and ParseScenario's error.
	probe := func(path string, typ reflect.Type, v float64) (string, error) {
		var val any = v
		switch {
		case typ == reflect.TypeFor[Duration]():
			val = time.Duration(v).String()
		case typ.Kind() == reflect.String:
			val = strings.Repeat("a", int(v))
		case typ.Kind() != reflect.Float64:
			require.Equal(t, math.Trunc(v), v, "%s is an integer field", path)
			val = int64(v)
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(baseJSON), &m))
		obj, name := field(m, path)
		obj[name] = val
		_, err := ParseScenario([]byte(jsonString(t, m)))
		return truncate(jsonString(t, val), 20), err
	}
	for path := range untestedRanges {
		assert.Contains(t, leaves, path, "untestedRanges names a field that does not exist")
	}
	for _, r := range rows {
		for _, path := range r.paths {
			typ := leaves[path]
			lo, hi, ok := parseRange(t, r.rng, typ, base)
			if why, skip := untestedRanges[path]; skip {
				assert.False(t, ok, "%s is in untestedRanges (%s) but its range %q parses: remove it there", path, why, r.rng)
				continue
			}
			if !ok {
				require.Empty(t, r.rng, "README: cannot parse the range of %s; write it as a–b, [a, b) etc., or list it in untestedRanges with a reason", path)
				continue
			}
			step := 1.0 // an integer, a nanosecond, a character
			if strings.Contains(r.rng, "whole seconds") {
				step = float64(time.Second)
			}
			nudge := func(v, dir float64) float64 {
				if typ.Kind() == reflect.Float64 {
					return math.Nextafter(v, dir*math.Inf(1))
				}
				return v + dir*step
			}
			for j, b := range []rangeBound{lo, hi} {
				dir := float64(2*j - 1) // outwards
				in, out := b.v, b.v
				if b.open {
					in = nudge(in, -dir)
				} else {
					out = nudge(out, dir)
				}
				val, err := probe(path, typ, in)
				assert.NoError(t, err, "%s = %s is in the README's range %q", path, val, r.rng)
				if out == 0 && r.def != "required" {
					out = nudge(out, dir) // 0 means the default
				}
				if typ.Kind() == reflect.String && out < 0 {
					continue
				}
				val, err = probe(path, typ, out)
				if assert.Error(t, err, "%s = %s is outside the README's range %q", path, val, r.rng) {
					assert.ErrorIs(t, err, ErrInvalidScenario)
					assert.ErrorContains(t, err, "scenario."+path+":", "the error names the field")
				}
			}
		}
	}
}
