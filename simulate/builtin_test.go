package simulate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuiltInNames: the four come first, in their order; every name is
// a scenario BuiltInNamed loads, and the schema is not one.
func TestBuiltInNames(t *testing.T) {
	names := BuiltInNames()
	require.GreaterOrEqual(t, len(names), len(builtinOrder))
	assert.Equal(t, []string{"rogue-invalidate", "reconnect-storm", "incident", "config-change"}, names[:4])
	assert.Equal(t, builtinOrder, names[:len(builtinOrder)])
	assert.NotContains(t, names, "scenario.schema")
	for _, name := range names {
		sc, err := BuiltInNamed(name)
		require.NoError(t, err, name)
		assert.Equal(t, name, sc.Name, "the file is named for its scenario")
	}
	scs, err := BuiltIn()
	require.NoError(t, err)
	require.Len(t, scs, len(names))
	for i, sc := range scs {
		assert.Equal(t, names[i], sc.Name)
	}
}

func TestBuiltInNamedUnknown(t *testing.T) {
	for _, name := range []string{"incidnet", "", "scenario.schema", "../incident", "incident.json"} {
		_, err := BuiltInNamed(name)
		require.ErrorIs(t, err, ErrUnknownBuiltIn, "%q", name)
		assert.ErrorContains(t, err, "the built-ins are rogue-invalidate, reconnect-storm, incident, config-change")
	}
}

// TestPendingScenarios: the scenarios under scenarios/pending, whose
// bounds are the targets that the simulated fleet does not meet
// yet, are not built-ins (neither listed nor gated), and still load and
// validate, so that `stormsim -scenario simulate/scenarios/pending/NAME.json`
// runs them.
func TestPendingScenarios(t *testing.T) {
	for _, name := range []string{"headroom-incident", "capacity-drop"} {
		sc, err := LoadScenario("scenarios/pending/" + name + ".json")
		require.NoError(t, err, name)
		assert.Equal(t, name, sc.Name)
		assert.NotContains(t, BuiltInNames(), name)
	}
}
