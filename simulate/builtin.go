package simulate

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

//go:embed scenarios/*.json
var builtinFS embed.FS

// builtinOrder is the order BuiltIn returns the scenarios in; scenario
// files embedded under scenarios/ that it does not name follow it, sorted.
var builtinOrder = []string{"rogue-invalidate", "reconnect-storm", "incident", "config-change", "node-failure", "cold-start", "redis-outage", "misconfigured-budget", "content-push", "cold-node", "hot-key"}

// schemaFile is the JSON Schema embedded beside the scenarios: not one.
const schemaFile = "scenario.schema.json"

// LaptopClients is the size stormsim runs the built-in scenarios at by
// default: a few seconds each on a laptop.
const LaptopClients = 100_000

// ErrUnknownBuiltIn reports a name that is not a built-in scenario's.
var ErrUnknownBuiltIn = errors.New("simulate: no built-in scenario of that name")

// BuiltInNames returns the names of the built-in scenarios, in the order
// BuiltIn returns them: rogue-invalidate, reconnect-storm, incident,
// config-change, then any other scenario file under scenarios/, sorted.
func BuiltInNames() []string {
	names := slices.Clone(builtinOrder)
	entries, err := fs.ReadDir(builtinFS, "scenarios")
	if err != nil {
		return names // cannot happen: the directory is embedded
	}
	var extra []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.Name() == schemaFile || slices.Contains(names, name) {
			continue
		}
		extra = append(extra, name)
	}
	slices.Sort(extra)
	return append(names, extra...)
}

// BuiltIn returns the built-in scenarios (see BuiltInNames), at their full
// size (1,000,000 clients; see Scale). Each is a JSON file under scenarios/
// in this package's source, which doubles as an example of the schema.
func BuiltIn() ([]*Scenario, error) {
	names := BuiltInNames()
	out := make([]*Scenario, 0, len(names))
	for _, name := range names {
		sc, err := BuiltInNamed(name)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	return out, nil
}

// BuiltInNamed returns the built-in scenario called name, at its full
// size. A name that is not a built-in's is an error wrapping
// ErrUnknownBuiltIn that lists the names.
func BuiltInNamed(name string) (*Scenario, error) {
	names := BuiltInNames()
	if !slices.Contains(names, name) {
		return nil, fmt.Errorf("%w: %q (the built-ins are %s)", ErrUnknownBuiltIn, truncate(name, 64), strings.Join(names, ", "))
	}
	b, err := builtinFS.ReadFile(path.Join("scenarios", name+".json"))
	if err != nil {
		return nil, fmt.Errorf("simulate: built-in %s: %w", name, err)
	}
	sc, err := ParseScenario(b)
	if err != nil {
		return nil, fmt.Errorf("simulate: built-in %s: %w", name, err)
	}
	return sc, nil
}
