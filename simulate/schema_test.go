package simulate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadSchema reads scenarios/scenario.schema.json.
func loadSchema(t *testing.T) map[string]any {
	t.Helper()
	b, err := builtinFS.ReadFile("scenarios/scenario.schema.json")
	require.NoError(t, err)
	var s map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&s))
	return s
}

// resolve follows a node's $ref into the schema's $defs.
func resolve(root, node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		name, _ := strings.CutPrefix(ref, "#/$defs/")
		node = root["$defs"].(map[string]any)[name].(map[string]any)
	}
}

// TestSchemaMatchesParser: the JSON Schema lists exactly the fields the
// parser accepts, at every path, with the same enums, so the two cannot
// drift apart.
func TestSchemaMatchesParser(t *testing.T) {
	root := loadSchema(t)
	seen := map[string]bool{} // a bound holds bounds: each type and node once
	var walk func(typ reflect.Type, node map[string]any, path string)
	walk = func(typ reflect.Type, node map[string]any, path string) {
		node = resolve(root, node)
		key := fmt.Sprintf("%v %p", typ, node)
		if seen[key] {
			return
		}
		seen[key] = true
		switch {
		case typ == reflect.TypeFor[Duration]():
			assert.Equal(t, "string", node["type"], "%s is a duration string", path)
			return
		case typ.Kind() == reflect.Slice:
			assert.Equal(t, "array", node["type"], path)
			items, ok := node["items"].(map[string]any)
			require.True(t, ok, "%s has items", path)
			walk(typ.Elem(), items, path+"[]")
			return
		case typ.Kind() == reflect.Pointer:
			walk(typ.Elem(), node, path)
			return
		case typ.Kind() != reflect.Struct:
			return
		}
		assert.Equal(t, "object", node["type"], path)
		assert.Equal(t, false, node["additionalProperties"], "%s refuses unknown fields, as the parser does", path)
		props, _ := node["properties"].(map[string]any)
		fields := jsonFields(typ)
		var inGo, inSchema []string
		for k := range fields {
			inGo = append(inGo, k)
		}
		for k := range props {
			inSchema = append(inSchema, k)
		}
		sort.Strings(inGo)
		sort.Strings(inSchema)
		assert.Equal(t, inGo, inSchema, "the fields of %s", path)
		for k, ft := range fields {
			if p, ok := props[k].(map[string]any); ok {
				walk(ft, p, path+"."+k)
			}
		}
	}
	walk(reflect.TypeFor[Scenario](), root, "scenario")

	enum := func(path ...string) []string {
		node := root
		for _, p := range path {
			node = resolve(root, node)["properties"].(map[string]any)[p].(map[string]any)
		}
		var out []string
		for _, v := range resolve(root, node)["enum"].([]any) {
			if s := v.(string); s != "" {
				out = append(out, s)
			}
		}
		sort.Strings(out)
		return out
	}
	sorted := func(v ...string) []string { slices.Sort(v); return v }
	assert.Equal(t, sorted(PolicyNone, PolicyJitter, PolicySlot), enum("client", "backoff"))
	assert.Equal(t, sorted(PolicyNone, PolicyJitter), enum("client", "unprotected_backoff"))
	assert.Equal(t, sorted(KindRogueInvalidate, KindReconnectStorm, KindIncident, KindConfigChange, KindContentPush, KindColdNode, KindHotKey), enum("trigger", "kind"))
	assert.Equal(t, sorted("blip", "restart", "cold-start"), enum("trigger", "cause"))
	bound := root["$defs"].(map[string]any)["bound"].(map[string]any)
	var metrics []string
	for _, v := range bound["properties"].(map[string]any)["metric"].(map[string]any)["enum"].([]any) {
		metrics = append(metrics, v.(string))
	}
	var want []string
	for k := range metricIndex {
		want = append(want, k)
	}
	sort.Strings(want)
	sort.Strings(metrics)
	assert.Equal(t, want, metrics, "bound metrics are the Result fields a bound can name")
}

// TestBuiltInsMatchSchema: every built-in passes the schema and the Go
// parser; files the parser refuses for their shape fail the schema too.
func TestBuiltInsMatchSchema(t *testing.T) {
	root := loadSchema(t)
	for _, name := range builtinOrder {
		b, err := builtinFS.ReadFile("scenarios/" + name + ".json")
		require.NoError(t, err)
		assert.NoError(t, validateSchema(root, b), name)
		_, err = ParseScenario(b)
		assert.NoError(t, err, name)
	}
	// A parsed scenario written back (every default filled in) passes too.
	scs, err := BuiltIn()
	require.NoError(t, err)
	b, err := json.Marshal(scs[0])
	require.NoError(t, err)
	assert.NoError(t, validateSchema(root, b))

	for _, bad := range []string{
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"incident"},"nodez":3}`,
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"meteor"}}`,
		`{"name":"x","clients":10,"origin":{"capacity":1e-300},"trigger":{"kind":"incident"}}`,
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"incident"},"duration":"soon"}`,
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"incident"},"client":{"unprotected_backoff":"slot"}}`,
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"incident"},"bounds":[{"run":"protected","metric":"happiness","max":1}]}`,
		`{"name":"x","clients":10,"origin":{"capacity":1},"trigger":{"kind":"incident"},"bounds":[{"run":"protected","metric":"peak_rps"}]}`,
		`{"name":"x","clients":0,"origin":{"capacity":1},"trigger":{"kind":"incident"}}`,
		`{"name":"x","clients":10,"trigger":{"kind":"incident"}}`,
	} {
		assert.Error(t, validateSchema(root, []byte(bad)), bad)
		_, err := ParseScenario([]byte(bad))
		assert.ErrorIs(t, err, ErrInvalidScenario, bad)
	}
}

// validateSchema checks data against the subset of JSON Schema that
// scenario.schema.json uses.
func validateSchema(root map[string]any, data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	return checkNode(root, root, v, "scenario")
}

func checkNode(root, node map[string]any, v any, path string) error {
	node = resolve(root, node)
	if alts, ok := node["anyOf"].([]any); ok {
		var errs []string
		for _, a := range alts {
			if err := checkNode(root, a.(map[string]any), v, path); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if len(errs) == len(alts) {
			return fmt.Errorf("%s: none of anyOf holds: %s", path, strings.Join(errs, "; "))
		}
	}
	if e, ok := node["enum"].([]any); ok && !slices.Contains(e, v) {
		return fmt.Errorf("%s: %v not in %v", path, v, e)
	}
	if obj, ok := v.(map[string]any); ok {
		for _, r := range asList(node["required"]) {
			if _, ok := obj[r]; !ok {
				return fmt.Errorf("%s.%s: required", path, r)
			}
		}
	}
	num := func(k string) (float64, bool) {
		n, ok := node[k].(json.Number)
		if !ok {
			return 0, false
		}
		f, err := n.Float64()
		return f, err == nil
	}
	switch typ, _ := node["type"].(string); typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", path)
		}
		props, _ := node["properties"].(map[string]any)
		for k, val := range obj {
			p, ok := props[k].(map[string]any)
			if !ok {
				if node["additionalProperties"] == false {
					return fmt.Errorf("%s.%s: unknown field", path, k)
				}
				continue
			}
			if err := checkNode(root, p, val, path+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array", path)
		}
		if m, ok := num("maxItems"); ok && float64(len(arr)) > m {
			return fmt.Errorf("%s: more than %v items", path, m)
		}
		for i, e := range arr {
			if err := checkNode(root, node["items"].(map[string]any), e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string", path)
		}
		if p, ok := node["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(s) {
			return fmt.Errorf("%s: %q does not match %s", path, s, p)
		}
		if m, ok := num("maxLength"); ok && float64(len([]rune(s))) > m {
			return fmt.Errorf("%s: longer than %v", path, m)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean", path)
		}
	case "number", "integer":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want a number", path)
		}
		f, err := n.Float64()
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		if typ == "integer" && strings.ContainsAny(n.String(), ".eE") {
			return fmt.Errorf("%s: want an integer, got %s", path, n)
		}
		if m, ok := num("minimum"); ok && f < m {
			return fmt.Errorf("%s: %v below %v", path, f, m)
		}
		if m, ok := num("maximum"); ok && f > m {
			return fmt.Errorf("%s: %v above %v", path, f, m)
		}
	}
	return nil
}

func asList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, e.(string))
	}
	return out
}
