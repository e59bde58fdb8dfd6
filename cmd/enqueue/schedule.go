package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// scheduleCommand manages recurring schedules (docs/schedules.md).
func (a *app) scheduleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Manage recurring schedules: add, list, show, pause, resume, delete, run, backfill",
		Long: `Manage recurring schedules. The NATS server (2.14 or newer) holds each
schedule and fires it; a worker turns each fire into an ordinary request
whose id is <schedule>-<period>, so a period is never collected twice.`,
		GroupID: "submit",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Usage()
			return usagef("schedule needs a subcommand: add, list, show, pause, resume, delete, run or backfill")
		},
	}
	cmd.AddCommand(a.scheduleAdd(), a.scheduleList(), a.scheduleShow(), a.scheduleRun(), a.scheduleBackfill(),
		a.scheduleSimple("pause", "Stop a schedule firing until it is resumed", (*client.Client).PauseSchedule),
		a.scheduleSimple("resume", "Make a paused schedule fire again (the fires it missed while paused are not caught up)", (*client.Client).ResumeSchedule),
		a.scheduleSimple("delete", "Stop a schedule and forget it (its requests stay)", (*client.Client).DeleteSchedule))
	return cmd
}

func oneID(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("schedule %s takes one schedule id", what)
		}
		return nil
	}
}

func (a *app) scheduleAdd() *cobra.Command {
	s := messages.Schedule{Version: messages.Version, Request: messages.ScheduledRequest{Kind: messages.KindCollection}}
	var (
		kind   string
		file   string
		labels []string
	)
	cmd := &cobra.Command{
		Use:   "add --id ID --cron EXPR [--tz ZONE] [--period PERIOD] [request flags] | add --file schedule.json",
		Short: "Create a schedule, or replace the one with its id",
		Long: `Create a schedule, or replace the one with its id (its record of covered
periods is kept; a paused one stays paused).

--cron takes six fields (seconds minutes hours day-of-month month
day-of-week), five (the classic form, run at second 0), @yearly, @monthly,
@weekly, @daily, @hourly, or @every <duration>. --tz is an IANA zone
(default UTC) the cron and the period are read in. --period is
previous-month, month-to-date, previous-day or previous-n-days:N; the
request's periodStartDate and periodEndDate come from it.

Every billing document of last month, on the 10th at 06:00 Amsterdam time:

  enqueue schedule add --id invoices-monthly --cron "0 6 10 * *" \
    --tz Europe/Amsterdam --period previous-month --billing-account 12345678`,
		Args: noArgs,
		RunE: a.mark(func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				data, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				s = messages.Schedule{}
				if err := json.Unmarshal(data, &s); err != nil {
					return usagef("%s: not a schedule: %v", file, err)
				}
			} else {
				s.Request.Kind = messages.Kind(kind)
				for _, l := range labels {
					k, v, ok := strings.Cut(l, "=")
					if !ok {
						return usagef("--label %q: want key=value", l)
					}
					if s.Request.Labels == nil {
						s.Request.Labels = map[string]string{}
					}
					s.Request.Labels[k] = v
				}
			}
			if _, err := schedule.Compile(s); err != nil {
				return usageError{err.Error()}
			}
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				created, err := c.PutSchedule(ctx, s)
				if err != nil {
					return err
				}
				v, err := c.GetSchedule(ctx, s.ID)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(v)
				}
				verb := "replaced"
				if created {
					verb = "created"
				}
				fmt.Fprintf(a.stdout, "schedule %s %s; next fire %s\n", s.ID, verb, nextText(v))
				return nil
			})
		}),
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&s.ID, "id", "", "schedule id, 1 to 64 letters, digits, '-' or '_'")
	fs.StringVar(&s.Cron, "cron", "", `when it fires: "0 6 10 * *", "0 0 6 10 * *", @monthly, @every 1h, ...`)
	fs.StringVar(&s.TimeZone, "tz", "", "IANA time zone of the cron and the period (default UTC)")
	fs.StringVar(&s.Period, "period", "", "previous-month, month-to-date, previous-day or previous-n-days:N")
	fs.StringVar(&kind, "kind", string(messages.KindCollection), "the kind of request it makes")
	fs.StringVar(&s.Request.Params.BillingAccountName, "billing-account", "", "request parameter billingAccountName")
	fs.StringVar(&s.Request.Params.SubscriptionID, "subscription-id", "", "request parameter subscriptionId")
	fs.StringVar(&s.Request.Params.BillingProfileName, "billing-profile", "", "request parameter billingProfileName")
	fs.StringVar(&s.Request.Params.InvoiceName, "invoice-name", "", "request parameter invoiceName")
	fs.StringSliceVar(&s.Request.Params.DocumentKinds, "kinds", nil, "a collection's document kinds, comma-separated")
	fs.StringArrayVar(&labels, "label", nil, "key=value echoed in the events, repeatable")
	fs.StringVar(&s.Request.Profile, "profile", "", "credential profile (default: the worker's default)")
	fs.StringVar(&file, "file", "", "read the whole schedule from a JSON file (docs/schedules.md) instead of the flags")
	return cmd
}

func (a *app) withClient(ctx context.Context, f func(context.Context, *client.Client) error) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	return f(ctx, c)
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func nextText(v client.ScheduleView) string {
	switch {
	case v.Paused:
		return "none (paused)"
	case v.Next.IsZero():
		return "never"
	}
	return v.Next.Format("2006-01-02 15:04:05 MST") + " (" + v.NextUTC.Format(time.RFC3339) + ")"
}

// periodText is how a period's request ended: completed, failed (with
// its code), running (with its phase), or unknown when its state is not
// stored (not taken yet, or past state-ttl).
func periodText(p client.PeriodView) string {
	switch p.Phase {
	case "":
		return "unknown"
	case client.PhaseCompleted:
		return "completed"
	case client.PhaseFailed, client.PhaseInvalid:
		if p.Code != "" {
			return "failed (" + string(p.Code) + ")"
		}
		return "failed"
	}
	return "running (" + string(p.Phase) + ")"
}

func (a *app) scheduleList() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the schedules: next fire (in the schedule's zone and UTC), the latest periods and how they ended",
		Args:  noArgs,
		RunE: a.mark(func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				vs, err := c.Schedules(ctx)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(vs)
				}
				tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCRON\tZONE\tPERIOD\tNEXT FIRE\tLAST PERIODS")
				for _, v := range vs {
					var last []string
					for _, p := range v.Periods[:min(3, len(v.Periods))] {
						last = append(last, p.Key+" "+periodText(p))
					}
					zone := v.Schedule.TimeZone
					if zone == "" {
						zone = "UTC"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Schedule.ID, v.Schedule.Cron, zone, v.Schedule.Period, nextText(v), strings.Join(last, ", "))
				}
				return tw.Flush()
			})
		}),
	}
}

func (a *app) scheduleShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show <id>",
		Short: "Show a schedule: its definition, next fire and every period it covered lately",
		Args:  oneID("show"),
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				v, err := c.GetSchedule(ctx, args[0])
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(v)
				}
				def, _ := json.MarshalIndent(v.Schedule, "", "  ")
				fmt.Fprintf(a.stdout, "%s\nnext fire: %s\nlast fire covered: %s\n", def, nextText(v), v.LastFire.UTC().Format(time.RFC3339))
				tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PERIOD\tREQUEST\tSTARTED\tHOW\tSTATE")
				for _, p := range v.Periods {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Key, p.RequestID, p.Started.UTC().Format(time.RFC3339), p.How, periodText(p))
				}
				return tw.Flush()
			})
		}),
	}
}

func (a *app) scheduleSimple(name, short string, f func(*client.Client, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   name + " <id>",
		Short: short,
		Args:  oneID(name),
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				if err := f(c, ctx, args[0]); err != nil {
					return err
				}
				if a.jsonOut() {
					return a.printJSON(map[string]string{"schedule": args[0], "done": name})
				}
				fmt.Fprintf(a.stdout, "schedule %s: %s done\n", args[0], name)
				return nil
			})
		}),
	}
}

func (a *app) printStarted(reqs []messages.Request) error {
	if a.jsonOut() {
		ids := make([]string, len(reqs))
		for i, r := range reqs {
			ids[i] = r.ID
		}
		return a.printJSON(map[string][]string{"started": ids})
	}
	for _, r := range reqs {
		fmt.Fprintf(a.stdout, "started %s (%s to %s)\n", r.ID, r.Params.PeriodStartDate, r.Params.PeriodEndDate)
	}
	return nil
}

func (a *app) scheduleRun() *cobra.Command {
	var period string
	cmd := &cobra.Command{
		Use:   "run <id> [--period 2026-10]",
		Short: "Start a schedule's request now, for the current period or the one named",
		Long: `Start a schedule's request now: for the period a fire now would cover, or
with --period for another (a month such as 2026-10 for previous-month, a day
such as 2026-10-05 for the others: the last day the period covers). The
request has the id a fire would give it: running a period the schedule
covers (or will) makes one request, not two.`,
		Args: oneID("run"),
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				r, err := c.RunSchedule(ctx, args[0], period)
				if err != nil {
					return err
				}
				return a.printStarted([]messages.Request{r})
			})
		}),
	}
	cmd.Flags().StringVar(&period, "period", "", "the period to run (default: the current one)")
	return cmd
}

// maxBackfill bounds one backfill's periods.
const maxBackfill = 400

func (a *app) scheduleBackfill() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "backfill <id> --from YYYY-MM-DD --to YYYY-MM-DD",
		Short: "Start one request per period from --from to --to, with the ids the schedule's fires use",
		Long: `Start one request per period of a previous-month (every month) or
previous-day (every day) schedule, from the period holding --from to the one
holding --to, with the ids the schedule's fires use: a backfill and the
schedule never collect a period twice. At most 400 periods.`,
		Args: oneID("backfill"),
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			f, err1 := time.Parse(time.DateOnly, from)
			t, err2 := time.Parse(time.DateOnly, to)
			if err := errors.Join(err1, err2); err != nil {
				return usagef("--from and --to must be dates YYYY-MM-DD: %v", err)
			}
			return a.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				reqs, err := c.BackfillSchedule(ctx, args[0], f, t, maxBackfill)
				if err != nil {
					return err
				}
				return a.printStarted(reqs)
			})
		}),
	}
	cmd.Flags().StringVar(&from, "from", "", "a day of the first period, YYYY-MM-DD")
	cmd.Flags().StringVar(&to, "to", "", "a day of the last period, YYYY-MM-DD")
	return cmd
}
