package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// waitFlags are shared by the submitting commands.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) bind(fs *pflag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", false, "wait for each request's completion or failure event and print it")
	fs.DurationVar(&w.timeout, "timeout", 30*time.Minute, "with --wait: give up after this long")
}

// flagOf maps request fields to the flags that set them, for error messages.
var flagOf = map[string]string{
	"params.subscriptionId":     "--subscription-id",
	"params.billingAccountName": "--billing-account",
	"params.billingProfileName": "--billing-profile",
	"params.invoiceName":        "--invoice-name",
	"params.downloadToken":      "--download-token",
	"params.documents":          "--document",
	"params.documentName":       "--document-name",
	"params.periodStartDate":    "--from",
	"params.periodEndDate":      "--to",
	"params.documentKinds":      "--kinds",
	"params.invoiceSectionName": "--invoice-section",
	"params.customerName":       "--customer",
	"params.metric":             "--metric",
	"params.billingPeriod":      "--billing-period",
	"params.grain":              "--grain",
	"params.benefitKind":        "--benefit-kind",
	"params.reservationOrderId": "--reservation-order",
	"params.reservationId":      "--reservation",
	"params.savingsPlanOrderId": "--savings-plan-order",
	"params.savingsPlanId":      "--savings-plan",
	"id":                        "--id",
	"labels":                    "--label",
	"profile":                   "--profile",
	"deadline":                  "--deadline",
}

// kindCommand submits one request of a kind, from flags.
func (a *app) kindCommand(kind messages.Kind) *cobra.Command {
	req := messages.Request{Version: messages.Version, Kind: kind}
	var (
		docs, labels []string
		deadline     string
		wf           waitFlags
	)
	cmd := &cobra.Command{
		Use:     string(kind) + " [flags]",
		Short:   "Submit one " + string(kind) + " request",
		GroupID: "submit",
		Args:    noArgs,
		RunE: a.mark(func(cmd *cobra.Command, _ []string) error {
			return a.submitKind(cmd.Context(), req, docs, labels, deadline, wf)
		}),
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&req.ID, "id", "", "request id (default: generated)")
	// Every parameter flag on every kind, as the request has them: one
	// that is not the kind's is refused by the request rules, by name.
	fs.StringVar(&req.Params.SubscriptionID, "subscription-id", "", "billing subscription id, a GUID (subscription-*)")
	fs.StringVar(&req.Params.BillingAccountName, "billing-account", "", "billing account name (invoice-*, account-*, profile-pricesheet, invoice)")
	fs.StringVar(&req.Params.BillingProfileName, "billing-profile", "", "billing profile name (invoice-pricesheet, profile-pricesheet)")
	fs.StringVar(&req.Params.InvoiceName, "invoice-name", "", "invoice name (the downloads of one invoice, invoice; an MCA invoice id for cost-details)")
	fs.StringVar(&req.Params.DownloadToken, "download-token", "", "download token, e.g. DRS_12345 (subscription-invoice)")
	fs.StringArrayVar(&docs, "document", nil, "documentName:invoiceName, repeatable (subscription-documents, account-documents: the name may be empty)")
	fs.StringVar(&req.Params.DocumentName, "document-name", "", "document name from the invoice's documents (account-document, subscription-document; default the invoice)")
	fs.StringVar(&req.Params.PeriodStartDate, "from", "", "first day of the period, YYYY-MM-DD (account-invoices, subscription-invoices, the cost data kinds)")
	fs.StringVar(&req.Params.PeriodEndDate, "to", "", "last day of the period, YYYY-MM-DD (account-invoices, subscription-invoices, the cost data kinds)")
	// The cost data kinds' (cost-details, reservation-details,
	// benefit-utilization, account-pricesheet).
	fs.StringVar(&req.Params.InvoiceSectionName, "invoice-section", "", "invoice section of the billing profile (cost-details)")
	fs.StringVar(&req.Params.CustomerName, "customer", "", "customer of the billing account (cost-details)")
	fs.StringVar(&req.Params.Metric, "metric", "", "ActualCost (default) or AmortizedCost (cost-details)")
	fs.StringVar(&req.Params.BillingPeriod, "billing-period", "", "EA billing period, YYYYMM (cost-details, account-pricesheet)")
	fs.StringVar(&req.Params.Grain, "grain", "", "Daily or Monthly (benefit-utilization)")
	fs.StringVar(&req.Params.BenefitKind, "benefit-kind", "", "Reservation or SavingsPlan, at a billing scope (benefit-utilization)")
	fs.StringVar(&req.Params.ReservationOrderID, "reservation-order", "", "reservation order id (benefit-utilization)")
	fs.StringVar(&req.Params.ReservationID, "reservation", "", "reservation id, with --reservation-order (benefit-utilization)")
	fs.StringVar(&req.Params.SavingsPlanOrderID, "savings-plan-order", "", "savings plan order id (benefit-utilization)")
	fs.StringVar(&req.Params.SavingsPlanID, "savings-plan", "", "savings plan id, with --savings-plan-order (benefit-utilization)")
	// An estate's (estate).
	fs.StringSliceVar(&req.Params.DocumentKinds, "kinds", nil, "document kinds each collection fetches, comma-separated (estate)")
	fs.StringSliceVar(&req.Params.IncludeAccounts, "include-account", nil, "only these billing accounts, comma-separated or repeated (estate)")
	fs.StringSliceVar(&req.Params.ExcludeAccounts, "exclude-account", nil, "not these billing accounts (estate)")
	fs.StringSliceVar(&req.Params.AgreementTypes, "agreement-type", nil, "only billing accounts of these agreement types (estate)")
	fs.StringVar(&req.Params.AccountNamePattern, "account-name", "", "only billing accounts whose display name matches this shell pattern (estate)")
	lastMonth := fs.Bool("last-month", false, "the period is last calendar month, UTC: sets --from and --to (estate, the listings)")
	fs.StringArrayVar(&labels, "label", nil, "key=value echoed in the events, repeatable")
	fs.StringVar(&deadline, "deadline", "", "deadline: a duration from now (45m) or an RFC 3339 time")
	fs.StringVar(&req.Profile, "profile", "", "credential profile (default: the worker's default)")
	archive := fs.Bool("archive", false, "--archive: archive the document; --archive=false: do not (default: the worker's setting)")
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		if cmd.Flags().Changed("archive") {
			req.Archive = archive
		}
		if *lastMonth {
			req.Params.PeriodStartDate, req.Params.PeriodEndDate = lastMonthOf(time.Now())
		}
	}
	wf.bind(fs)
	return cmd
}

// lastMonthOf is the calendar month before now's, UTC: its first and last
// days.
func lastMonthOf(now time.Time) (from, to string) {
	first := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	return first.AddDate(0, -1, 0).Format(time.DateOnly), first.AddDate(0, 0, -1).Format(time.DateOnly)
}

func (a *app) submitKind(ctx context.Context, req messages.Request, docs, labels []string, deadline string, wf waitFlags) error {
	kind := req.Kind
	if req.ID == "" {
		req.ID = newID()
	}
	for _, d := range docs {
		name, inv, ok := strings.Cut(d, ":")
		if !ok {
			return usagef("-document %q: want documentName:invoiceName", d)
		}
		req.Params.Documents = append(req.Params.Documents, messages.DocumentRef{DocumentName: name, InvoiceName: inv})
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return usagef("-label %q: want key=value", l)
		}
		if req.Labels == nil {
			req.Labels = map[string]string{}
		}
		req.Labels[k] = v
	}
	if deadline != "" {
		t, err := parseDeadline(deadline, time.Now())
		if err != nil {
			return usagef("-deadline: %v", err)
		}
		req.Deadline = &t
	}
	if err := req.Validate(); err != nil {
		var ve *messages.ValidationError
		if errors.As(err, &ve) {
			var lines []string
			for _, f := range ve.Fields {
				name := f.Field
				if fl, ok := flagOf[f.Field]; ok {
					name = fl
				}
				lines = append(lines, name+": "+f.Message)
			}
			return usagef("invalid %s request:\n  %s", kind, strings.Join(lines, "\n  "))
		}
		return usagef("%v", err)
	}
	data, _ := json.Marshal(req)
	return a.submit(ctx, []pending{{id: req.ID, msgID: messages.DedupID(req), kind: kind, data: data, req: &req}}, wf)
}

func parseDeadline(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration nor an RFC 3339 time", s)
	}
	return t, nil
}

func newID() string {
	return "enq-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.Itoa(os.Getpid())
}

// pending is a request ready to publish.
type pending struct {
	id, msgID string // msgID: the Nats-Msg-Id (messages.DedupID)
	kind      messages.Kind
	data      []byte
	req       *messages.Request // the decoded request; nil for an invalid one sent with --force
}

func (a *app) fileCommand() *cobra.Command {
	var (
		wf    waitFlags
		force bool
	)
	cmd := &cobra.Command{
		Use:   "file <path|->",
		Short: "Submit requests from NDJSON, one request per line (- for standard input)",
		Long: `Submit requests from NDJSON, one request per line; - reads standard input.
Blank lines are skipped. Every line is checked before anything is sent: one
bad line (or an id repeating an earlier line) and nothing is sent, unless
--force, which sends the bad lines too for the worker to reject into the
dead-letter stream.`,
		GroupID: "submit",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("file takes one argument: a path, or - for standard input")
			}
			return nil
		},
		RunE: a.mark(func(cmd *cobra.Command, args []string) error {
			return a.submitFile(cmd.Context(), args[0], force, wf)
		}),
	}
	wf.bind(cmd.Flags())
	cmd.Flags().BoolVar(&force, "force", false, "send invalid lines too (the worker rejects them into the dead-letter stream)")
	return cmd
}

func (a *app) submitFile(ctx context.Context, path string, force bool, wf waitFlags) error {
	var r io.Reader = a.stdin
	if p := path; p != "-" {
		f, err := os.Open(p)
		if err != nil {
			return usagef("%v", err)
		}
		defer f.Close()
		r = f
	}
	var (
		reqs     []pending
		problems []string
		seen     = map[string]int{}
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		req, err := messages.DecodeRequest([]byte(text), 0)
		if err == nil && seen[req.ID] > 0 {
			err = fmt.Errorf("id %s repeats line %d", req.ID, seen[req.ID])
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			if !force {
				continue
			}
		}
		seen[req.ID] = line
		p := pending{id: req.ID, kind: req.Kind, data: []byte(text)} // an invalid request sent with --force: no de-duplication
		if err == nil {
			p.msgID, p.req = messages.DedupID(req), &req
		}
		reqs = append(reqs, p)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read requests: %w", err)
	}
	if len(problems) > 0 && !force {
		return usagef("%d invalid request(s), nothing sent:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	if len(reqs) == 0 {
		return usagef("no requests in the input")
	}
	return a.submit(ctx, reqs, wf)
}

// submit publishes the requests and, with --wait, prints their events.
func (a *app) submit(ctx context.Context, reqs []pending, wf waitFlags) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	var w *client.Watcher
	if wf.wait {
		if w, err = c.Watch(ctx); err != nil {
			return err
		}
		defer w.Stop()
	}
	var dups []string
	tracer := a.tel.TracerProvider.Tracer("github.com/azbilling/worker/cmd/enqueue")
	for _, r := range reqs {
		subject := c.Layout().Request(r.kind)
		// Each request starts its trace here; the worker continues it.
		sctx, span := tracer.Start(ctx, "send "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(subject),
			semconv.MessagingOperationTypeSend, semconv.MessagingMessageID(r.msgID),
			attribute.String("billing.request.id", messages.IDToken(r.id)), attribute.String("billing.kind", string(r.kind))))
		hdr := nats.Header{}
		telemetry.Inject(sctx, hdr)
		dup, err := c.SubmitRaw(sctx, subject, r.msgID, r.data, hdr)
		span.End()
		if err != nil {
			return err
		}
		if dup {
			dups = append(dups, r.id)
		}
		if !wf.wait {
			if !a.jsonOut() {
				fmt.Fprintf(a.stdout, "sent %s (%s)%s\n", r.id, r.kind, map[bool]string{true: " (duplicate: already submitted)"}[dup])
			} else {
				fmt.Fprintf(a.stdout, "{\"id\":%q,\"kind\":%q,\"duplicate\":%v}\n", r.id, r.kind, dup)
			}
		}
	}
	if !wf.wait {
		return nil
	}
	return a.await(ctx, c, w, reqs, dups, wf.timeout)
}

// await prints the event of each request as it arrives.
func (a *app) await(ctx context.Context, c *client.Client, w *client.Watcher, reqs []pending, dups []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waiting := map[string]bool{}
	for _, r := range reqs {
		waiting[r.id] = true
	}
	total, failed := len(waiting), 0
	// One request on a terminal: what is happening to it, from its stored
	// state, until its event arrives.
	stopProgress := func() {}
	if total == 1 && !a.jsonOut() {
		stopProgress = a.progress(ctx, c, reqs[0].id)
	}
	show := func(o client.Outcome) {
		if !waiting[o.ID] {
			return
		}
		delete(waiting, o.ID)
		if o.Failed != nil {
			failed++
		}
		if total == 1 && !a.jsonOut() {
			stopProgress()
			fmt.Fprintf(a.stderr, "%s  done\n", time.Now().Format("15:04:05"))
		}
		if !a.jsonOut() {
			if total > 1 {
				fmt.Fprint(a.stderr, "\r\033[K")
			}
			fmt.Fprintln(a.stdout, o.Human())
			if total > 1 {
				fmt.Fprintf(a.stderr, "%d/%d done, %d failed", total-len(waiting), total, failed)
			}
		} else {
			fmt.Fprintln(a.stdout, string(o.Data))
		}
	}
	// The watcher sees the events stored from its start on. A request whose
	// operation had ended before (a resubmission, however old) is answered
	// from the operation's stored state: the worker does not store its
	// event twice. The stored request must be the one sent: a reuse of the
	// id with other content is answered by a new id_conflict event.
	dup := map[string]bool{}
	for _, id := range dups {
		dup[id] = true
	}
	for _, r := range reqs {
		if r.req == nil {
			continue // invalid, sent with --force: its rejection is a new event
		}
		st, err := c.Status(ctx, r.id)
		switch {
		case err == nil && messages.SameOperation(st.Request, *r.req):
			if o, ok := c.OutcomeOf(st); ok {
				show(o)
			}
		case dup[r.id] && (err == nil || errors.Is(err, client.ErrNoState)):
			// Dropped as a duplicate of a request that was refused without
			// an operation of its own (id_conflict, unknown_profile): its
			// answer is the id's last event.
			if o, ok, err := c.Last(ctx, r.id); err == nil && ok {
				show(o)
			}
		case err != nil && !errors.Is(err, client.ErrNoState):
			fmt.Fprintf(a.stderr, "enqueue: reading the state of %s: %v (waiting for its event)\n", r.id, err)
		}
	}
	for len(waiting) > 0 {
		o, err := w.Next(ctx)
		if err != nil {
			stopProgress()
			if ctx.Err() != nil {
				ids := make([]string, 0, len(waiting))
				for id := range waiting {
					ids = append(ids, id)
				}
				sort.Strings(ids)
				fmt.Fprintf(a.stderr, "\nenqueue: gave up waiting for %d request(s): %s\n", len(ids), strings.Join(ids[:min(len(ids), 20)], ", "))
				return exitError(exitTimeout)
			}
			return err
		}
		show(o)
	}
	if !a.jsonOut() && total > 1 {
		fmt.Fprintln(a.stderr)
	}
	if failed > 0 {
		return exitError(exitFailed)
	}
	return nil
}

// progress prints to standard error what the stored state of request id
// says, each time that changes, read every a.pollFor until the returned
// function is called (which waits for the last line to be printed).
func (a *app) progress(ctx context.Context, c *client.Client, id string) (stop func()) {
	every := a.pollFor
	if every <= 0 {
		every = time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		last := ""
		for {
			st, err := c.Status(ctx, id)
			line := ""
			switch {
			case errors.Is(err, client.ErrNoState):
				line = "sent; no worker has accepted it yet"
			case err == nil:
				line = describe(st)
			}
			if line != "" && line != last && ctx.Err() == nil {
				fmt.Fprintf(a.stderr, "%s  %s\n", time.Now().Format("15:04:05"), line)
				last = line
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// describe says in a line where an operation stands.
func describe(st client.Operation) string {
	throttled := ""
	if st.LastStatus == 429 || st.LastStatus == 503 {
		throttled = fmt.Sprintf("throttled by Azure (last status %d); ", st.LastStatus)
	}
	if h := st.Throttled; h != nil && st.Phase == client.PhaseWaiting {
		why := "its budget"
		if !h.PausedUntil.IsZero() {
			why = "a pause"
		}
		throttled += fmt.Sprintf("held by the shared throttle (scope %s, %s); ", h.Scope, why)
	}
	switch st.Phase {
	case client.PhaseStarting:
		return throttled + "accepted; calling Azure"
	case client.PhasePolling:
		return fmt.Sprintf("%spolling Azure (poll %d)", throttled, st.Polls+1)
	case client.PhaseWaiting:
		what := "waiting on Azure"
		if !st.Started {
			what = "waiting to call Azure again"
		}
		return fmt.Sprintf("%s%s until %s (%d calls so far)", throttled, what, st.NextAt.Local().Format("15:04:05"), st.AzureCalls)
	case client.PhaseCompleted, client.PhaseFailed:
		return "ended: " + string(st.Phase)
	}
	return string(st.Phase)
}
