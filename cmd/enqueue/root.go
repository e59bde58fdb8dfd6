package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/azbilling/worker/internal/version"
	"github.com/azbilling/worker/pkg/messages"
)

// run builds the command tree and executes args.
func (a *app) run(ctx context.Context, args []string) error {
	root := a.commands()
	root.SetArgs(legacyFlags(root, args))
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && !a.ran {
		// cobra's own refusals (unknown command or flag, bad flag value)
		// come before any command runs: a usage error.
		if ue := (usageError{}); !errors.As(err, &ue) {
			return usageError{err.Error()}
		}
	}
	return err
}

func (a *app) commands() *cobra.Command {
	root := &cobra.Command{
		Use:   "enqueue",
		Short: "Submit download requests to the billing worker and read what became of them",
		Long: `enqueue submits download requests to the billing worker and reads what
became of them: their events, their stored state, the operations by state,
and the dead-letter stream.

Flags may come anywhere on the line. Output is readable on a terminal and
JSON when piped or with --json. Exit status: 0 done, 1 a request or the
command failed, 2 usage error or invalid request, 3 --wait gave up.`,
		Version:       version.String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// No arguments: a usage error. An unknown command is refused by
		// cobra before this runs.
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Usage()
			return usagef("a command is required")
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	pf := root.PersistentFlags()
	a.conn.bind(pf)
	pf.StringVar(&a.prefix, "prefix", envOr(a.getenv, "BILLING_PREFIX", messages.DefaultPrefix), "subject prefix (env BILLING_PREFIX)")
	pf.BoolVar(&a.json, "json", false, "print JSON (the default when standard output is not a terminal)")

	root.AddGroup(&cobra.Group{ID: "submit", Title: "Submit a request:"}, &cobra.Group{ID: "read", Title: "Read and repair:"})
	for _, k := range messages.Kinds {
		if k == messages.KindCollection {
			continue // enqueue collect
		}
		root.AddCommand(a.kindCommand(k))
	}
	root.AddCommand(a.collectCommand(), a.fileCommand(), a.statusCommand(), a.statsCommand(),
		a.deadLettersCommand(), a.replayCommand(), a.deleteCommand(), a.fetchCommand(), a.versionCommand(), a.coverageCommand())
	root.AddCommand(a.scheduleCommand())
	return root
}

// mark wraps a command's code: from here on an error is the command's,
// not the command line's.
func (a *app) mark(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		a.ran = true
		return f(cmd, args)
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this build (plain text unless --json)",
		Args:  noArgs,
		RunE: a.mark(func(cmd *cobra.Command, _ []string) error {
			if a.json {
				return json.NewEncoder(a.stdout).Encode(map[string]string{"version": version.String()})
			}
			_, err := fmt.Fprintln(a.stdout, version.String())
			return err
		}),
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments (got %q)", cmd.Name(), args[0])
	}
	return nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// legacyFlags rewrites the single-dash long flags of earlier versions
// (-wait, -nats-url URL) to their double-dash form, so that scripts
// written for them keep working: an argument -name or -name=value whose
// name is a long flag of some command. Nothing after -- is rewritten.
func legacyFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{"help": true}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) { long[f.Name] = true }
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, len(args))
	copy(out, args)
	for i, arg := range out {
		if arg == "--" {
			break
		}
		if len(arg) < 3 || arg[0] != '-' || arg[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(arg[1:], "=")
		if long[name] {
			out[i] = "-" + arg
		}
	}
	return out
}
