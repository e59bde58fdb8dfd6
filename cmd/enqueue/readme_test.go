package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// docs/cli.md, the command line's page, names every command and every
// flag.
func TestDocListsEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(data)
	root := (&app{getenv: func(string) string { return "" }}).commands()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && !strings.Contains(section, "enqueue "+c.Name()) && c.Parent() == root {
			t.Errorf("docs/cli.md has no usage line for %s", c.Name())
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" || c.Parent() != nil && c.Parent().Name() == "completion" {
				return
			}
			if !strings.Contains(section, "--"+f.Name) {
				t.Errorf("docs/cli.md does not mention %s's --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && !strings.Contains(section, "`--"+f.Name) {
			t.Errorf("docs/cli.md has no row for --%s", f.Name)
		}
	})
}
