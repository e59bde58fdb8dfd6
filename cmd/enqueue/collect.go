package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// collectCommand submits a collection: every document of a scope's
// invoices of a period.
func (a *app) collectCommand() *cobra.Command {
	req := messages.Request{Version: messages.Version, Kind: messages.KindCollection}
	var (
		labels   []string
		deadline string
		wf       waitFlags
		per      string
		sched    string
	)
	cmd := &cobra.Command{
		Use:   "collect (--billing-account ACCT | --subscription-id GUID) --from YYYY-MM-DD --to YYYY-MM-DD [--kinds Invoice,CreditNote] [flags]",
		Short: "Submit a collection: every document of the invoices of a period",
		Long: `Submit a collection: the worker lists every invoice of the billing account
(or billing subscription) in the period and downloads each document of the
kinds asked for (default: Invoice, CreditNote, TaxReceipt, VoidNote, Summary,
Transactions). With --wait, a progress bar on a terminal (JSON lines when
piped) and a summary at the end; the exit status is 0 only when every
document was fetched.

With --per month (or day) and --schedule ID, a backfill: one collection per
month (day) from the one holding --from to the one holding --to, each under
the id schedule ID gives that period (ID-2025-01, or ID-2025-01-05), so a
backfill and the schedule never collect a period twice, whichever comes
first. When the schedule exists its request is used (the flags may repeat
its billing account and kinds, not change them) and the periods are recorded
as covered; otherwise the flags make the requests a schedule added later
with the same params makes too. At most 400 periods; not with --id,
--deadline or --wait.`,
		GroupID: "submit",
		Args:    noArgs,
		RunE: a.mark(func(cmd *cobra.Command, _ []string) error {
			if per != "" || sched != "" {
				if cmd.Flags().Changed("id") || deadline != "" || wf.wait {
					return usagef("--per (a backfill) takes neither --id (the ids come from --schedule), --deadline nor --wait")
				}
				return a.backfillCollect(cmd.Context(), req, labels, per, sched)
			}
			return a.collect(cmd.Context(), req, labels, deadline, wf)
		}),
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&req.ID, "id", "", "collection id, at most 100 characters (default: generated)")
	fs.StringVar(&req.Params.BillingAccountName, "billing-account", "", "the billing account whose invoices are collected")
	fs.StringVar(&req.Params.SubscriptionID, "subscription-id", "", "the billing subscription whose invoices are collected (a GUID)")
	fs.StringVar(&req.Params.PeriodStartDate, "from", "", "first day of the period, YYYY-MM-DD")
	fs.StringVar(&req.Params.PeriodEndDate, "to", "", "last day of the period, YYYY-MM-DD")
	fs.StringSliceVar(&req.Params.DocumentKinds, "kinds", nil, "document kinds to fetch, comma-separated (default: Invoice,CreditNote,TaxReceipt,VoidNote,Summary,Transactions)")
	fs.StringArrayVar(&labels, "label", nil, "key=value echoed in the events, repeatable")
	fs.StringVar(&deadline, "deadline", "", "deadline of the listing: a duration from now (45m) or an RFC 3339 time")
	fs.StringVar(&req.Profile, "profile", "", "credential profile (default: the worker's default)")
	fs.StringVar(&per, "per", "", "backfill: one collection per month or per day of --from to --to (needs --schedule)")
	fs.StringVar(&sched, "schedule", "", "backfill: the schedule whose ids the collections get, <schedule>-<period>")
	wf.bind(fs)
	return cmd
}

// backfillCollect starts one collection per month or day under the ids of
// schedule sched (docs/schedules.md#run-backfill).
func (a *app) backfillCollect(ctx context.Context, req messages.Request, labels []string, per, sched string) error {
	var period string
	switch per {
	case "month":
		period = schedule.PreviousMonth
	case "day":
		period = schedule.PreviousDay
	default:
		return usagef("--per %q: want month or day", per)
	}
	if sched == "" {
		return usagef("--per needs --schedule ID: the collections' ids are ID-<period>, the ids schedule ID gives them")
	}
	from, err1 := time.Parse(time.DateOnly, req.Params.PeriodStartDate)
	to, err2 := time.Parse(time.DateOnly, req.Params.PeriodEndDate)
	if err := errors.Join(err1, err2); err != nil {
		return usagef("--from and --to must be dates YYYY-MM-DD: %v", err)
	}
	t := messages.Schedule{Version: messages.Version, ID: sched, Period: period, Request: messages.ScheduledRequest{
		Kind: messages.KindCollection, Params: req.Params, Profile: req.Profile,
	}}
	t.Request.Params.PeriodStartDate, t.Request.Params.PeriodEndDate = "", ""
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return usagef("--label %q: want key=value", l)
		}
		if t.Request.Labels == nil {
			t.Request.Labels = map[string]string{}
		}
		t.Request.Labels[k] = v
	}
	if _, err := schedule.Compile(messages.Schedule{Version: t.Version, ID: t.ID, Cron: "@daily", Period: t.Period, Request: t.Request}); err != nil {
		return usageError{err.Error()}
	}
	return a.withClient(ctx, func(ctx context.Context, c *client.Client) error {
		reqs, fromSchedule, err := c.BackfillPeriods(ctx, t, from, to, maxBackfill)
		if err != nil {
			return err
		}
		if !fromSchedule {
			fmt.Fprintf(a.stderr, "no schedule %s yet: a schedule %s added later with the same params makes these ids too\n", sched, sched)
		}
		return a.printStarted(reqs)
	})
}

func (a *app) collect(ctx context.Context, req messages.Request, labels []string, deadline string, wf waitFlags) error {
	if req.ID == "" {
		req.ID = newID()
	}
	if !wf.wait {
		return a.submitKind(ctx, req, nil, labels, deadline, wf)
	}
	// Submit without waiting, then follow the collection.
	quiet := *a
	quiet.stdout = discard{}
	if err := quiet.submitKind(ctx, req, nil, labels, deadline, waitFlags{}); err != nil {
		return err
	}
	return a.follow(ctx, req.ID, wf.timeout)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// follow shows a collection's progress until its event, then its summary.
func (a *app) follow(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := c.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	events := make(chan client.Outcome, 1)
	go func() {
		for {
			o, err := w.Next(ctx)
			if err != nil {
				return
			}
			if o.ID == id {
				events <- o
				return
			}
		}
	}()
	every := a.pollFor
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := ""
	for {
		// The stored state first: the collection may have ended already.
		v, err := c.Collection(ctx, id, false)
		switch {
		case err == nil && v.State.Phase.Terminal():
			if o, ok := c.OutcomeOf(v.State); ok {
				return a.summarize(o)
			}
		case err == nil:
			line := a.progressLine(v)
			if line != last {
				a.printProgress(v, line)
				last = line
			}
		case !errors.Is(err, client.ErrNoState):
			return err
		}
		select {
		case o := <-events:
			return a.summarize(o)
		case <-ctx.Done():
			if a.tty && !a.jsonOut() {
				fmt.Fprintln(a.stderr)
			}
			fmt.Fprintf(a.stderr, "enqueue: gave up waiting for collection %s\n", id)
			return exitError(exitTimeout)
		case <-tick.C:
		}
	}
}

// progressLine is the state of a collection in a line: a bar and counts.
func (a *app) progressLine(v client.CollectionView) string {
	p := v.Progress
	if v.State.Phase != "collecting" {
		return fmt.Sprintf("listing invoices: %d documents so far (page %d)", p.Documents, v.State.Polls+1)
	}
	const width = 30
	done := p.Completed + p.Failed
	filled := 0
	if p.Documents > 0 {
		filled = done * width / p.Documents
	}
	return fmt.Sprintf("[%s%s] %d/%d documents, %d failed, %d waiting on Azure, %d throttled",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, p.Documents, p.Failed, p.Waiting, p.Throttled)
}

func (a *app) printProgress(v client.CollectionView, line string) {
	if a.jsonOut() {
		b, _ := json.Marshal(struct {
			ID    string `json:"id"`
			Phase string `json:"phase"`
			client.Progress
		}{v.State.Request.ID, string(v.State.Phase), v.Progress})
		fmt.Fprintln(a.stdout, string(b))
		return
	}
	fmt.Fprintf(a.stderr, "\r\033[K%s", line)
}

// summarize prints a collection's outcome and sets the exit status: 0
// only when every document was fetched.
func (a *app) summarize(o client.Outcome) error {
	if a.jsonOut() {
		fmt.Fprintln(a.stdout, string(o.Data))
	} else {
		fmt.Fprint(a.stderr, "\r\033[K")
		if o.Failed != nil {
			fmt.Fprintln(a.stdout, o.Human())
		} else {
			a.printSummary(o.Completed)
		}
	}
	if o.Failed != nil || o.Completed.Collected == nil || o.Completed.Collected.Failed > 0 {
		return exitError(exitFailed)
	}
	return nil
}

func (a *app) printSummary(ev *messages.Completed) {
	sum := ev.Collected
	fmt.Fprintf(a.stdout, "collection %s: %d documents of %d invoices: %d completed, %d failed; %d of %d listed skipped\n\n",
		ev.ID, sum.Documents, sum.Invoices, sum.Completed, sum.Failed, sum.Skipped, sum.Listed)
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTCOME\tINVOICE\tDOCUMENT\tKIND\tDETAIL")
	for _, c := range sum.Children {
		detail := ""
		if c.Outcome == messages.OutcomeFailed {
			detail = string(c.Code) + ": " + clipText(c.Message, 60)
		} else if c.ExpiryTime != nil {
			detail = "link expires " + c.ExpiryTime.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Outcome, c.InvoiceName, c.DocumentName, c.DocumentKind, detail)
	}
	for _, s := range sum.SkippedDocuments {
		detail := s.Reason
		if s.ExternalURL != "" {
			detail += " " + s.ExternalURL
		}
		fmt.Fprintf(tw, "skipped\t%s\t%s\t%s\t%s\n", s.InvoiceName, s.DocumentName, s.DocumentKind, detail)
	}
	_ = tw.Flush()
	if sum.Truncated {
		fmt.Fprintln(a.stdout, "\n(the list is truncated; each child's own event has its link: enqueue status "+ev.ID+")")
	}
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// statusCollection prints a collection's state and every child.
func (a *app) statusCollection(ctx context.Context, c *client.Client, id string) error {
	v, err := c.Collection(ctx, id, true)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	fmt.Fprint(a.stdout, client.HumanState(v.State))
	p := v.Progress
	fmt.Fprintf(a.stdout, "documents: %d, completed %d, failed %d, in flight %d (%d waiting on Azure, %d throttled)\n\n",
		p.Documents, p.Completed, p.Failed, p.InFlight, p.Waiting, p.Throttled)
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHILD\tINVOICE\tDOCUMENT\tKIND\tPHASE\tCODE")
	for _, ch := range v.Children {
		phase := string(ch.Phase)
		if phase == "" {
			phase = "not requested yet"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ch.ID, ch.InvoiceName, ch.DocumentName, ch.Kind, phase, ch.Code)
	}
	return tw.Flush()
}
