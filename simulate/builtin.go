package simulate

import (
	"embed"
	"fmt"
	"path"
)

//go:embed scenarios/*.json
var builtinFS embed.FS

// builtinOrder is the order BuiltIn returns the scenarios in.
var builtinOrder = []string{"rogue-invalidate", "reconnect-storm", "incident", "config-change", "node-failure", "cold-start"}

// LaptopClients is the size stormsim runs the built-in scenarios at by
// default: a few seconds each on a laptop.
const LaptopClients = 100_000

// BuiltIn returns the built-in scenarios, at their full size (1,000,000
// clients; see Scale): rogue-invalidate, reconnect-storm, incident and
// config-change. Each is a JSON file under scenarios/ in this package's
// source, which doubles as an example of the schema.
func BuiltIn() ([]*Scenario, error) {
	out := make([]*Scenario, 0, len(builtinOrder))
	for _, name := range builtinOrder {
		b, err := builtinFS.ReadFile(path.Join("scenarios", name+".json"))
		if err != nil {
			return nil, fmt.Errorf("simulate: built-in %s: %w", name, err)
		}
		sc, err := ParseScenario(b)
		if err != nil {
			return nil, fmt.Errorf("simulate: built-in %s: %w", name, err)
		}
		out = append(out, sc)
	}
	return out, nil
}
