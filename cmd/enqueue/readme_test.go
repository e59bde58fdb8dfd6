package main

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// README.md's cmd/enqueue section names every command and every flag.
func TestReadmeListsEveryCommandAndFlag(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "\n## cmd/enqueue\n")
	if start < 0 {
		t.Fatal("README.md has no cmd/enqueue section")
	}
	section := readme[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	root := (&app{getenv: func(string) string { return "" }}).commands()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c != root && !strings.Contains(section, "enqueue "+c.Name()) && c.Parent() == root {
			t.Errorf("README's cmd/enqueue section has no usage line for %s", c.Name())
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" || c.Parent() != nil && c.Parent().Name() == "completion" {
				return
			}
			if !strings.Contains(section, "--"+f.Name) {
				t.Errorf("README's cmd/enqueue section does not mention %s's --%s", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden && !strings.Contains(section, "`--"+f.Name) {
			t.Errorf("README's cmd/enqueue section has no row for --%s", f.Name)
		}
	})
}
