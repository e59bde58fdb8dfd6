package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/azbilling/worker/pkg/client"
)

func (a *app) coverageCommand() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "coverage",
		Short: "Print the month-end grid: each known scope's months, complete, partial, failed or never collected",
		Long: `Print a grid of the known billing scopes (every scope a collection
collected, and every scope registered) by the months from --from to --to
(YYYY-MM, at most 120): complete (collected, no document failed; skipped
documents are accounted for with their reasons), partial (some documents
failed), FAILED (the collection failed, or every document did) or never
(no collection of that month). Each cell is what the latest collection of
that scope and month found. Then the failed documents, by cell, and the
counts by status. --json prints the grid for automation (docs/cli.md).`,
		GroupID: "read",
		Args:    noArgs,
		RunE:    a.mark(func(cmd *cobra.Command, _ []string) error { return a.coverage(cmd.Context(), from, to) }),
	}
	last := time.Now().UTC().AddDate(0, 0, -time.Now().UTC().Day()) // the last day of last month
	cmd.Flags().StringVar(&from, "from", last.AddDate(0, -5, 0).Format("2006-01"), "first month, YYYY-MM (default: six months to last month)")
	cmd.Flags().StringVar(&to, "to", last.Format("2006-01"), "last month, YYYY-MM (default: last month)")
	return cmd
}

// coverageWord is a status as the text grid prints it.
var coverageWord = map[string]string{
	client.CoverageComplete: "complete", client.CoveragePartial: "partial",
	client.CoverageFailed: "FAILED", client.CoverageNever: "never",
}

func (a *app) coverage(ctx context.Context, from, to string) error {
	if _, err := time.Parse("2006-01", from); err != nil || len(from) != 7 {
		return usagef("--from %q is not a month (YYYY-MM)", from)
	}
	if _, err := time.Parse("2006-01", to); err != nil || len(to) != 7 {
		return usagef("--to %q is not a month (YYYY-MM)", to)
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	g, err := c.Coverage(ctx, from, to)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		return json.NewEncoder(a.stdout).Encode(g)
	}
	fmt.Fprint(a.stdout, humanCoverage(g))
	return nil
}

// humanCoverage is the text grid.
func humanCoverage(g client.CoverageGrid) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "SCOPE")
	for _, m := range g.Months {
		fmt.Fprint(tw, "\t"+m)
	}
	fmt.Fprintln(tw)
	for _, r := range g.Rows {
		fmt.Fprint(tw, scopeLabel(r.Scope))
		for _, c := range r.Cells {
			fmt.Fprint(tw, "\t"+coverageWord[c.Status])
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	if len(g.Rows) == 0 {
		b.WriteString("(no scope known: no collection has ended, and none is registered)\n")
	}
	for _, r := range g.Rows {
		for _, c := range r.Cells {
			switch {
			case c.Status == client.CoverageFailed && c.Code != "":
				fmt.Fprintf(&b, "%s %s: collection %s failed: %s: %s\n", scopeLabel(r.Scope), c.Month, c.Collection, c.Code, c.Message)
			case c.Failed > 0:
				fmt.Fprintf(&b, "%s %s: collection %s, %d of %d documents failed:", scopeLabel(r.Scope), c.Month, c.Collection, c.Failed, c.Archived+c.Failed)
				for _, f := range c.Failures {
					fmt.Fprintf(&b, " %s (%s %s, %s)", f.Child, f.InvoiceName, f.DocumentName, f.Code)
				}
				b.WriteString("\n")
			}
		}
	}
	fmt.Fprintf(&b, "%d complete, %d partial, %d failed, %d never collected\n",
		g.Totals[client.CoverageComplete], g.Totals[client.CoveragePartial], g.Totals[client.CoverageFailed], g.Totals[client.CoverageNever])
	return b.String()
}

// scopeLabel names a scope in the text grid: [profile/]kind id (name).
func scopeLabel(s client.CoverageScope) string {
	l := s.Kind + " " + s.ID
	if s.Profile != "" {
		l = s.Profile + "/" + l
	}
	if s.Name != "" {
		l += " (" + s.Name + ")"
	}
	return l
}
