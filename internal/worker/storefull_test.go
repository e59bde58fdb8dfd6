package worker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// A dead-letter bound larger than the server's storage (the default 1
// GiB on a server of 48 MB: a stream's byte limit is reserved): the worker
// is not ready, and the error it retries on names the setting to lower.
func TestDeadLetterBoundTooLargeNamesItsSetting(t *testing.T) {
	t.Parallel()
	stack, err := devstack.Start(devstack.Options{Dir: t.TempDir(), NATSMaxFileStore: 48 << 20, NoWorkers: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	cfg := stack.Config
	if cfg.DeadLetterMaxBytes != worker.DefaultDeadLetterMaxBytes {
		t.Fatalf("dead-letter bound %d, want the default", cfg.DeadLetterMaxBytes)
	}
	profiles, err := cfg.AzureProfiles(config.AzureDeps{})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var logs syncBuffer
	w, err := worker.New(cfg.Worker(), nc, profiles, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testwait.For(t, 20*time.Second, "the set-up error", func() bool { return strings.Contains(strings.Join(logs.lines(), "\n"), "set up JetStream; retrying") })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	line := strings.Join(logs.lines(), "\n")
	if w.Ready() || !strings.Contains(line, "deadletter-max-bytes") || !strings.Contains(line, "BILLING_DEADLETTER_MAX_BYTES") {
		t.Errorf("ready %v; the error does not name the setting:\n%s", w.Ready(), line)
	}
}

// A listing that completed while the events stream refused its event
// (here: a stream held full with discard-new, as a full store refuses)
// does not call Azure again on the redeliveries that retry the event:
// the completed state decides, and only the publish is retried.
func TestCompletedListingRetriesOnlyItsEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	events, err := js.Stream(ctx, b.stack.Client.Layout().EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	open := events.CachedInfo().Config
	held := open
	held.MaxMsgs, held.Discard = 1, jetstream.DiscardNew
	if _, err := js.Publish(ctx, b.stack.Client.Layout().Event(messages.OutcomeFailed, messages.KindInvoice, "filler"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateStream(ctx, held); err != nil {
		t.Fatal(err)
	}
	req := devstack.Sample(messages.KindAccountInvoices, b.id(), "")
	before := len(b.emu.Calls())
	b.submit(req)
	var st client.Operation
	testwait.For(t, 30*time.Second, "the listing completed", func() bool {
		st, err = b.stack.Client.Status(ctx, req.ID)
		return err == nil && st.Phase == client.PhaseCompleted
	})
	calls := len(b.emu.Calls()) - before
	// Two deliveries more that find it completed and fail to publish
	// (back after 2 s, then 4 s).
	cons, err := js.Consumer(ctx, b.stack.Client.Layout().WorkStream(), worker.RequestsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "two redeliveries", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumRedelivered > 0 && info.Delivered.Consumer >= 3
	})
	if n := len(b.emu.Calls()) - before; n != calls || st.AzureCalls != calls {
		t.Errorf("Azure was called %d times after the listing completed (%d calls to list; the state counts %d)", n-calls, calls, st.AzureCalls)
	}
	if _, err := js.UpdateStream(ctx, open); err != nil {
		t.Fatal(err)
	}
	var o client.Outcome
	testwait.For(t, 30*time.Second, "the event stored", func() bool {
		var ok bool
		o, ok, err = b.stack.Client.Last(ctx, req.ID)
		return err == nil && ok
	})
	if o.Completed == nil || len(o.Completed.Invoices) == 0 {
		t.Fatalf("the event: %+v", o)
	}
	if n := len(b.emu.Calls()) - before; n != calls {
		t.Errorf("%d Azure calls in all, %d to list", n, calls)
	}
}
