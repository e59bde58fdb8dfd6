package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/telemetry"
)

const usage = `usage: enqueue [global flags] <command> [flags]

commands:
  <kind> [flags]            submit one request; kinds: %s
  file <path|->             submit requests from NDJSON (one request per line)
  status <request id>       show an operation's stored state
  deadletters               list rejected requests
  replay <seq>...           submit dead letters again (as they are, or -payload)
  delete-deadletter <seq>...  delete dead letters

global flags:
`

func (a *app) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		kinds := make([]string, len(messages.Kinds))
		for i, k := range messages.Kinds {
			kinds[i] = string(k)
		}
		fmt.Fprintf(a.stderr, usage, strings.Join(kinds, ", "))
		fs.PrintDefaults()
		fmt.Fprintln(a.stderr, "\nrun 'enqueue <command> -h' for a command's flags")
	}
	fs.StringVar(&a.natsURL, "nats-url", envOr(a.getenv, "BILLING_NATS_URL", nats.DefaultURL), "NATS server URL (env BILLING_NATS_URL)")
	fs.StringVar(&a.prefix, "prefix", envOr(a.getenv, "BILLING_PREFIX", messages.DefaultPrefix), "subject prefix (env BILLING_PREFIX)")
	fs.StringVar(&a.creds, "creds", a.getenv("BILLING_NATS_CREDS"), "NATS credentials file (env BILLING_NATS_CREDS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usagef("a command is required")
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch {
	case messages.Kind(cmd).Valid():
		return a.submitKind(ctx, messages.Kind(cmd), rest)
	case cmd == "file":
		return a.submitFile(ctx, rest)
	case cmd == "status":
		return a.status(ctx, rest)
	case cmd == "deadletters":
		return a.deadLetters(ctx, rest)
	case cmd == "replay":
		return a.replay(ctx, rest)
	case cmd == "delete-deadletter":
		return a.deleteDeadLetters(ctx, rest)
	}
	return usagef("unknown command %q", cmd)
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func (a *app) connect() (*nats.Conn, *client.Client, error) {
	opts := []nats.Option{nats.Name("enqueue")}
	if a.creds != "" {
		opts = append(opts, nats.UserCredentials(a.creds))
	}
	nc, err := nats.Connect(a.natsURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", a.natsURL, err)
	}
	c, err := client.New(nc, a.prefix)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, c, nil
}

// waitFlags are shared by the submitting commands.
type waitFlags struct {
	wait    bool
	timeout time.Duration
}

func (w *waitFlags) bind(fs *flag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", false, "wait for each request's completion or failure event and print it")
	fs.DurationVar(&w.timeout, "timeout", 30*time.Minute, "with -wait: give up after this long")
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// flagOf maps request fields to the flags that set them, for error messages.
var flagOf = map[string]string{
	"params.subscriptionId":     "-subscription-id",
	"params.billingAccountName": "-billing-account",
	"params.billingProfileName": "-billing-profile",
	"params.invoiceName":        "-invoice-name",
	"params.downloadToken":      "-download-token",
	"params.documents":          "-document",
	"id":                        "-id",
	"labels":                    "-label",
	"profile":                   "-profile",
	"deadline":                  "-deadline",
}

func (a *app) submitKind(ctx context.Context, kind messages.Kind, args []string) error {
	fs := flag.NewFlagSet("enqueue "+string(kind), flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	req := messages.Request{Version: messages.Version, Kind: kind}
	var (
		docs, labels listFlag
		deadline     string
		wf           waitFlags
	)
	fs.StringVar(&req.ID, "id", "", "request id (default: generated)")
	fs.StringVar(&req.Params.SubscriptionID, "subscription-id", "", "billing subscription id, a GUID (subscription-invoice, subscription-documents)")
	fs.StringVar(&req.Params.BillingAccountName, "billing-account", "", "billing account name (invoice-summary, invoice-pricesheet, invoice)")
	fs.StringVar(&req.Params.BillingProfileName, "billing-profile", "", "billing profile name (invoice-pricesheet)")
	fs.StringVar(&req.Params.InvoiceName, "invoice-name", "", "invoice name (all but subscription-documents)")
	fs.StringVar(&req.Params.DownloadToken, "download-token", "", "download token, e.g. DRS_12345 (subscription-invoice)")
	fs.Var(&docs, "document", "documentName:invoiceName, repeatable (subscription-documents)")
	fs.Var(&labels, "label", "key=value echoed in the events, repeatable")
	fs.StringVar(&deadline, "deadline", "", "deadline: a duration from now (45m) or an RFC 3339 time")
	fs.StringVar(&req.Profile, "profile", "", "credential profile (default: the worker's default)")
	wf.bind(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
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
	req       *messages.Request // the decoded request; nil for an invalid one sent with -force
}

func (a *app) submitFile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue file", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var wf waitFlags
	wf.bind(fs)
	force := fs.Bool("force", false, "send invalid lines too (the worker rejects them into the dead-letter stream)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("file takes one argument: a path, or - for standard input")
	}
	var r io.Reader = a.stdin
	if p := fs.Arg(0); p != "-" {
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
			if !*force {
				continue
			}
		}
		seen[req.ID] = line
		p := pending{id: req.ID, kind: req.Kind, data: []byte(text)} // an invalid request sent with -force: no de-duplication
		if err == nil {
			p.msgID, p.req = messages.DedupID(req), &req
		}
		reqs = append(reqs, p)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read requests: %w", err)
	}
	if len(problems) > 0 && !*force {
		return usagef("%d invalid request(s), nothing sent:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	if len(reqs) == 0 {
		return usagef("no requests in the input")
	}
	return a.submit(ctx, reqs, wf)
}

// submit publishes the requests and, with -wait, prints their events.
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
			if a.tty {
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
	show := func(o client.Outcome) {
		if !waiting[o.ID] {
			return
		}
		delete(waiting, o.ID)
		if o.Failed != nil {
			failed++
		}
		if a.tty {
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
			continue // invalid, sent with -force: its rejection is a new event
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
	if a.tty && total > 1 {
		fmt.Fprintln(a.stderr)
	}
	if failed > 0 {
		return exitError(exitFailed)
	}
	return nil
}

func (a *app) status(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue status", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	asJSON := fs.Bool("json", !a.tty, "print the stored state as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("status takes one request id")
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := c.Status(ctx, fs.Arg(0))
	if errors.Is(err, client.ErrNoState) {
		return fmt.Errorf("%s: %w (never accepted, rejected as invalid, or expired)", fs.Arg(0), err)
	} else if err != nil {
		return err
	}
	st.Location = "" // internal, and may carry a session token
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprint(a.stdout, client.HumanState(st))
	return nil
}

func (a *app) deadLetters(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue deadletters", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	from := fs.Uint64("from", 0, "first sequence to list")
	limit := fs.Int("limit", 100, "how many to list")
	asJSON := fs.Bool("json", !a.tty, "print JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	dls, err := c.DeadLetters(ctx, *from, *limit)
	if err != nil {
		return err
	}
	for _, dl := range dls {
		if *asJSON {
			b, _ := json.Marshal(map[string]any{
				"seq": dl.Sequence, "time": dl.Time, "code": dl.Code, "error": dl.Error,
				"subject": dl.OriginalSubject, "headers": dl.Header, "payload": string(dl.Data),
			})
			fmt.Fprintln(a.stdout, string(b))
			continue
		}
		payload := string(dl.Data)
		if len(payload) > 200 {
			payload = payload[:200] + "..."
		}
		fmt.Fprintf(a.stdout, "%d  %s  %s  %s\n    %s\n    %s\n", dl.Sequence, dl.Time.Format(time.RFC3339), dl.Code, dl.OriginalSubject, dl.Error, payload)
	}
	if a.tty && len(dls) == 0 {
		fmt.Fprintln(a.stdout, "no dead letters")
	}
	return nil
}

func (a *app) replay(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue replay", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	payload := fs.String("payload", "", "file with a corrected request to send instead of the stored payload (one sequence only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seqs, err := parseSeqs(fs.Args())
	if err != nil {
		return err
	}
	var data []byte
	if *payload != "" {
		if len(seqs) != 1 {
			return usagef("-payload replaces one dead letter; give one sequence")
		}
		if data, err = os.ReadFile(*payload); err != nil {
			return usagef("%v", err)
		}
		if _, err := messages.DecodeRequest(data, 0); err != nil {
			return usagef("-payload: %v", err)
		}
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, seq := range seqs {
		if err := c.Replay(ctx, seq, data); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "replayed dead letter %d (kept; delete it with delete-deadletter %d)\n", seq, seq)
	}
	return nil
}

func (a *app) deleteDeadLetters(ctx context.Context, args []string) error {
	seqs, err := parseSeqs(args)
	if err != nil {
		return err
	}
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, seq := range seqs {
		if err := c.DeleteDeadLetter(ctx, seq); err != nil {
			return fmt.Errorf("delete dead letter %d: %w", seq, err)
		}
		fmt.Fprintf(a.stdout, "deleted dead letter %d\n", seq)
	}
	return nil
}

func parseSeqs(args []string) ([]uint64, error) {
	if len(args) == 0 {
		return nil, usagef("give at least one dead-letter sequence number")
	}
	out := make([]uint64, 0, len(args))
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return nil, usagef("%q is not a sequence number", a)
		}
		out = append(out, n)
	}
	return out, nil
}
