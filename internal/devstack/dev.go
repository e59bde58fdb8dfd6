package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// DevNATSPort is where dev mode's NATS listens when the port is free, so
// that cmd/enqueue's default URL reaches it.
const DevNATSPort = 4222

// DevOptions configure Dev.
type DevOptions struct {
	// Configure adjusts the worker's configuration.
	Configure func(*config.Config)
	// Logger for the worker.
	Logger *slog.Logger
	// Out receives the events, readable.
	Out io.Writer
	// LogFile, when set, names the file Logger writes to: the summary says
	// where the worker's log lines are.
	LogFile string
	// Exit after the sample requests have ended, instead of running until
	// ctx is done.
	Exit bool
	// Telemetry the worker and the samples use (default: none).
	Telemetry *telemetry.Telemetry
	// ConsoleAddr is where the operations console listens (default
	// DevConsoleAddr, or any free loopback port when that one is taken).
	ConsoleAddr string
}

// DevConsoleAddr is where dev mode's console listens when the port is
// free.
const DevConsoleAddr = "127.0.0.1:8090"

// startConsole serves the operations console on the stack, with write
// actions on behind a token made for this run.
func startConsole(ctx context.Context, stack *Stack, o DevOptions) (url, token string, stop func(), err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", nil, err
	}
	token = hex.EncodeToString(b)
	srv, err := console.New(console.Options{Client: stack.Client, Write: true, Token: token, Logger: o.Logger})
	if err != nil {
		return "", "", nil, err
	}
	addr := o.ConsoleAddr
	if addr == "" {
		addr = DevConsoleAddr
	}
	l, err := console.Listen(addr)
	if err != nil && o.ConsoleAddr == "" {
		l, err = console.Listen("127.0.0.1:0")
	}
	if err != nil {
		return "", "", nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(cctx, l); err != nil && o.Logger != nil {
			o.Logger.Error("console", "error", err)
		}
	}()
	return "http://" + l.Addr().String(), token, func() { cancel(); <-done }, nil
}

// Dev runs the development mode: an embedded NATS server, the emulator and
// one worker; it sends a sample request of every kind, adds a sample
// schedule firing every 10 seconds, prints each event as it arrives, and
// keeps printing events (of requests sent with cmd/enqueue, say) until ctx
// is done.
func Dev(ctx context.Context, o DevOptions) error {
	dir, err := os.MkdirTemp("", "billing-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port := DevNATSPort
	if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		port = -1
	} else {
		l.Close()
	}
	tel := o.Telemetry
	if tel == nil {
		tel = telemetry.Noop()
	}
	// The samples start their traces here, so that every event printed
	// shows its trace id, exported or not.
	tracer := tel.TracerProvider.Tracer("github.com/azbilling/worker/internal/devstack")
	if !tel.Enabled() {
		tracer = sdktrace.NewTracerProvider().Tracer("github.com/azbilling/worker/internal/devstack")
	}
	deps := config.AzureDeps{Metering: tel.MeterProvider}
	if tel.Enabled() {
		deps.Tracing = tel.TracerProvider
	}
	stack, err := Start(Options{
		Dir: dir, NATSPort: port, Logger: o.Logger, Configure: o.Configure,
		WorkerOptions: []worker.Option{worker.WithTelemetry(tel)}, AzureDeps: deps,
		// Each download answers 202 with Retry-After: 1 once, then 200.
		Emulator: emulator.Options{Default: []emulator.Reply{emulator.Accepted("1"), emulator.OK()}},
	})
	if err != nil {
		return err
	}
	defer stack.Close()
	// A small estate for the sample estate request (and for enqueue estate).
	est, _ := SampleEstate(DevEstateScopes)
	stack.Emulator.SetEstate(est)
	fmt.Fprintf(o.Out, "dev mode: NATS %s, Azure Billing emulator %s, one worker\n", stack.NATS.ClientURL(), stack.Emulator.URL())
	if o.LogFile != "" {
		fmt.Fprintf(o.Out, "dev mode: the worker's log (JSON lines) goes to %s; -dev-log-level info shows it on stderr instead\n", o.LogFile)
	}
	consoleURL, token, stopConsole, err := startConsole(ctx, stack, o)
	if err != nil {
		return err
	}
	defer stopConsole()
	// Two scopes known and never collected, beside the sample
	// collection's, on the Coverage page.
	for _, s := range []client.CoverageScope{
		{Kind: "account", ID: SampleMCAAccount, Name: "Contoso (sample MCA account)", AgreementType: "MicrosoftCustomerAgreement"},
		{Kind: "subscription", ID: SampleSubscriptionID, Name: "Pay-as-you-go (sample subscription)", AgreementType: "MicrosoftOnlineServicesProgram"},
	} {
		if err := stack.Client.PutScope(ctx, s); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "dev mode: console %s (replay and delete dead letters after logging in with the token %s)\n", consoleURL, token)
	fmt.Fprintf(o.Out, "dev mode: coverage of the sample collection's months: %s/coverage?from=2026-01&to=2026-03, or enqueue coverage --from 2026-01 --to 2026-03\n", consoleURL)
	fmt.Fprintf(o.Out, "try, from another terminal:\n  go run ./cmd/enqueue --server %s invoice-summary --billing-account %s --invoice-name G123456789 --wait\n\n",
		stack.NATS.ClientURL(), SampleBillingAccount)

	w, err := stack.Client.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	pending := map[string]bool{}
	stamp := strconv.FormatInt(time.Now().Unix(), 36)
	for i, kind := range messages.Kinds {
		req := Sample(kind, fmt.Sprintf("dev-%s-%d", stamp, i+1), InvoiceName("DEV", i+1))
		req.Labels = map[string]string{"source": "dev-mode"}
		sctx, span := tracer.Start(ctx, "send "+stack.Client.Layout().Request(req.Kind), trace.WithSpanKind(trace.SpanKindProducer))
		hdr := nats.Header{}
		telemetry.Inject(sctx, hdr)
		_, err := stack.Client.Submit(sctx, req, hdr)
		span.End()
		if err != nil {
			return err
		}
		pending[req.ID] = true
		fmt.Fprintf(o.Out, "sent      %s %s\n", req.ID, req.Kind)
	}
	awaitFire := addDevSchedule(ctx, stack.Client, o.Out) // -dev-exit waits for its first fire too
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if period, ok := devScheduleFire(ev); ok {
			fmt.Fprintf(o.Out, "fired     %s at %s\n", DevScheduleID, period)
			awaitFire = false
		}
		fmt.Fprintln(o.Out, ev.Human())
		delete(pending, ev.ID)
		if o.Exit && len(pending) == 0 && !awaitFire {
			return nil
		}
	}
}
