package config

import (
	"os"
	"strings"
	"testing"
)

// docs/configuration.md documents every setting, with its flag and
// default.
func TestDocListsEverySetting(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, s := range Settings {
		def := s.Default
		if def == "" {
			def = "—"
		}
		row := "| `" + s.Env + "` | `-" + s.Flag + "` | `" + def + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("docs/configuration.md has no row starting %s", row)
		}
	}
}
