package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// The wake-up watchdog: the NATS server drops a wake-up that falls due
// while its file store is full (it marks the schedule in flight, fails to
// store the fired copy and never tries again); the watchdog finds it and
// schedules it again once the store takes writes.

// wakeOverdue is the watchdog's bound in these tests.
const wakeOverdue = 2 * time.Second

// dueIn is the Retry-After of the operations whose wake-up falls due while
// the store is full: long enough to submit them and fill the store first,
// also under the race detector on a busy machine.
const (
	dueIn      = 6 * time.Second
	retryAfter = "6"
)

// insufficientResources is the JetStream error code of a write the full
// store refused.
const insufficientResources = 10023

// fullBundle is a stack whose NATS server has a small file store, and a
// filler that fills it.
type fullBundle struct {
	*testBundle
	js      jetstream.JetStream
	readers []*sdkmetric.ManualReader
}

func setupSmallStore(t *testing.T, workers int, configure ...func(*config.Config)) *fullBundle {
	t.Helper()
	var readers []*sdkmetric.ManualReader
	stack, err := devstack.Start(devstack.Options{
		Dir:              t.TempDir(),
		NATSMaxFileStore: 24 << 20,
		Workers:          workers,
		Logger:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Configure: func(c *config.Config) {
			c.Concurrency, c.MaxAckPending = 16, 64
			c.DeadLetterMaxBytes = 1 << 20 // a stream's byte limit is reserved in the small store
			c.WakeOverdue = wakeOverdue
			roomyThrottle(c)
			for _, f := range configure {
				f(c)
			}
		},
		WorkerOptionsFor: func(int) []worker.Option {
			reader := sdkmetric.NewManualReader()
			readers = append(readers, reader)
			tel := telemetry.Noop()
			tel.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			return []worker.Option{worker.WithTelemetry(tel)}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := &fullBundle{testBundle: watch(t, stack), readers: readers}
	nc, err := nats.Connect(stack.Config.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return b
}

// fill fills the server's file store with a stream of its own until it
// refuses writes, and returns the function that frees the space again. The
// store must be full before the wake-ups of sts fall due: the test fails
// (the machine too slow for the scenario) otherwise.
func (b *fullBundle) fill(sts ...client.Operation) (free func()) {
	b.t.Helper()
	defer func() {
		for _, st := range sts {
			if !time.Now().Before(st.NextAt) {
				b.t.Fatalf("the store was full only after %s's wake-up fell due (%s): raise dueIn", st.Request.ID, st.NextAt)
			}
		}
	}()
	ctx := context.Background()
	s, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}, Storage: jetstream.FileStorage})
	if err != nil {
		b.t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	for n := 0; ; n++ {
		_, err := b.js.Publish(ctx, "filler", chunk)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == insufficientResources {
			b.t.Logf("store full after %d MiB of filler", n/4)
			break
		}
		if err != nil {
			b.t.Fatalf("filler: %v", err)
		}
	}
	return func() {
		b.t.Helper()
		if err := s.Purge(ctx); err != nil {
			b.t.Fatal(err)
		}
	}
}

// waiting waits for id's operation to wait for the wake-up of its first
// poll (its call answered 202), and returns its state. A wait for the
// throttle before the call (the scope's probe holds it) does not count.
func (b *fullBundle) waiting(id string) client.Operation {
	b.t.Helper()
	var st client.Operation
	testwait.For(b.t, eventTimeout, "operation "+id+" waits", func() bool {
		var err error
		st, err = b.stack.Client.Status(context.Background(), id)
		return err == nil && st.Phase == client.PhaseWaiting && st.AzureCalls > 0
	})
	return st
}

// pastDue waits until every state's wake-up fell due more than a second
// ago: the server's scheduler, which runs at least every 250 ms, has then
// tried to fire it. A wait on the clock: the server gives no signal of a
// fire it dropped.
func pastDue(t *testing.T, sts ...client.Operation) {
	t.Helper()
	var last time.Time
	for _, st := range sts {
		if st.NextAt.After(last) {
			last = st.NextAt
		}
	}
	testwait.For(t, time.Until(last)+10*time.Second, "the wake-ups a second past due", func() bool { return time.Since(last) > time.Second })
}

// counter sums the counter name over the bundle's workers, by the value of
// the attribute by ("" when by is empty: one total).
func (b *fullBundle) counter(name, by string) map[string]int64 {
	got := map[string]int64{}
	for _, r := range b.readers {
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			b.t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
					for _, dp := range sum.DataPoints {
						v, _ := dp.Attributes.Value(attribute.Key(by))
						got[v.AsString()] += dp.Value
					}
				}
			}
		}
	}
	return got
}

// rearmed is how many wake-ups the bundle's watchdogs scheduled again.
func (b *fullBundle) rearmed() int64 { return b.counter("billing.wakeups.rearmed", "")[""] }

// A wake-up that falls due while the store is full still comes, within the
// watchdog's bound once the store takes writes again: the operation
// completes. Regression: it waited for ever (until nats-server restarted).
func TestWakeUpDueWhileStoreFull(t *testing.T) {
	t.Parallel()
	b := setupSmallStore(t, 1)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted(retryAfter), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	b.submit(req)
	st := b.waiting(req.ID)
	free := b.fill(st)
	pastDue(t, st)
	free()
	freed := time.Now()
	o := b.wait(req.ID, wakeOverdue+15*time.Second)
	if o.Completed == nil {
		t.Fatalf("want completion, got %+v", o.Failed)
	}
	t.Logf("completed %s after the store was freed (due %s before)", time.Since(freed).Round(time.Millisecond), freed.Sub(st.NextAt).Round(time.Millisecond))
	if n := b.rearmed(); n != 1 {
		t.Errorf("%d wake-ups scheduled again, want 1", n)
	}
	if got := len(b.events(req.ID)); got != 1 {
		t.Errorf("%d events, want 1", got)
	}
}

// An operation whose wake-up and deadline both pass while the store is
// full ends with its timeout event once the store takes writes again.
func TestDeadlinePassesWhileStoreFull(t *testing.T) {
	t.Parallel()
	b := setupSmallStore(t, 1)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted(retryAfter), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	deadline := time.Now().Add(dueIn + time.Second)
	req.Deadline = &deadline
	b.submit(req)
	st := b.waiting(req.ID)
	free := b.fill(st)
	pastDue(t, st)
	testwait.For(t, 10*time.Second, "the deadline a second past", func() bool { return time.Since(deadline) > time.Second })
	free()
	o := b.wait(req.ID, wakeOverdue+15*time.Second)
	if o.Failed == nil || o.Failed.Code != messages.CodeTimeout {
		t.Fatalf("want a timeout failure, got %+v %+v", o.Completed, o.Failed)
	}
	if calls := len(b.emu.CallsFor(inv)); calls != 1 {
		t.Errorf("%d Azure calls, want 1 (none past the deadline)", calls)
	}
}

// With several replicas, each dropped wake-up is scheduled again once
// (operations past their deadline meanwhile end with timeout, the others
// complete, one event each), and wake-ups that fire on time are left alone.
func TestWatchdogReplicas(t *testing.T) {
	t.Parallel()
	b := setupSmallStore(t, 3)
	// Every third stuck operation's deadline passes while the store is
	// full: it must end with timeout, the others complete.
	const stuck, onTime = 30, 6
	var ids []string
	var sts []client.Operation
	timesOut := map[string]bool{}
	for i := range stuck {
		inv := b.invoice()
		b.emu.Script(inv, emulator.Accepted(retryAfter), emulator.OK())
		req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
		if i%3 == 0 {
			deadline := time.Now().Add(dueIn + time.Second)
			req.Deadline = &deadline
			timesOut[req.ID] = true
		}
		b.submit(req)
		ids = append(ids, req.ID)
	}
	for _, id := range ids {
		sts = append(sts, b.waiting(id))
	}
	free := b.fill(sts...)
	pastDue(t, sts...)
	testwait.For(t, 10*time.Second, "the deadlines a second past", func() bool {
		for _, st := range sts {
			if timesOut[st.Request.ID] && time.Since(st.Deadline) <= time.Second {
				return false
			}
		}
		return true
	})
	free()
	for _, id := range ids {
		o := b.wait(id, wakeOverdue+15*time.Second)
		switch {
		case timesOut[id] && (o.Failed == nil || o.Failed.Code != messages.CodeTimeout):
			t.Errorf("%s: want a timeout failure, got %+v %+v", id, o.Completed, o.Failed)
		case !timesOut[id] && o.Completed == nil:
			t.Errorf("%s: want completion, got %+v", id, o.Failed)
		}
	}
	if n := b.rearmed(); n != stuck {
		t.Errorf("%d wake-ups scheduled again, want %d (one per dropped wake-up)", n, stuck)
	}
	// Operations whose wake-ups fire on time: none is scheduled again,
	// though they wait longer than the bound.
	var late []string
	for range onTime {
		inv := b.invoice()
		b.emu.Script(inv, emulator.Accepted("3"), emulator.Accepted("3"), emulator.OK())
		req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
		b.submit(req)
		late = append(late, req.ID)
	}
	for _, id := range late {
		if o := b.wait(id, eventTimeout); o.Completed == nil {
			t.Fatalf("%s: want completion, got %+v", id, o.Failed)
		}
	}
	if n := b.rearmed(); n != stuck {
		t.Errorf("%d wake-ups scheduled again after on-time ones, want still %d", n, stuck)
	}
	for _, id := range append(ids, late...) {
		if got := len(b.events(id)); got != 1 {
			t.Errorf("%s: %d events, want 1", id, got)
		}
	}
}

// The client's default bound of "overdue" (enqueue stats, the console) is
// the worker's.
func TestOverdueBoundsAgree(t *testing.T) {
	t.Parallel()
	if worker.DefaultWakeOverdue != client.DefaultOverdueAfter {
		t.Errorf("worker.DefaultWakeOverdue %s, client.DefaultOverdueAfter %s", worker.DefaultWakeOverdue, client.DefaultOverdueAfter)
	}
}

// refusedWrites sums billing.nats.writes.refused by what was written, over
// the bundle's workers; every kind of write has its series from the start.
func (b *fullBundle) refusedWrites() map[string]int64 {
	return b.counter("billing.nats.writes.refused", "billing.write")
}

// The writes a full store refuses are counted: here the watchdog's new
// wake-up for an operation whose wake-up the server dropped, refused
// until space is freed; then the operation completes once.
func TestRefusedWritesCounted(t *testing.T) {
	t.Parallel()
	b := setupSmallStore(t, 1)
	if got := b.refusedWrites(); len(got) < 8 || got["schedule"] != 0 || got["state"] != 0 {
		t.Fatalf("before the store is full: %v, want every kind at 0", got)
	}
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted(retryAfter), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	b.submit(req)
	st := b.waiting(req.ID)
	free := b.fill(st)
	pastDue(t, st)
	testwait.For(t, wakeOverdue+20*time.Second, "a refused write counted", func() bool { return b.refusedWrites()["schedule"] > 0 })
	free()
	if o := b.wait(req.ID, wakeOverdue+15*time.Second); o.Completed == nil {
		t.Fatalf("want completion, got %+v", o.Failed)
	}
	if got := len(b.events(req.ID)); got != 1 {
		t.Errorf("%d events, want 1", got)
	}
	t.Logf("refused writes: %v", b.refusedWrites())
}

// fillLeaving fills the store like fill, then frees about room bytes of
// it (1 KiB filler messages deleted), and returns the function that frees
// everything.
func (b *fullBundle) fillLeaving(room int) (free func()) {
	b.t.Helper()
	free = b.fill()
	ctx := context.Background()
	s, err := b.js.Stream(ctx, "FILLER")
	if err != nil {
		b.t.Fatal(err)
	}
	// Room for small fillers: one large one out.
	info, err := s.Info(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, info.State.LastSeq); err != nil {
		b.t.Fatal(err)
	}
	small := make([]byte, 1<<10)
	var seqs []uint64
	for {
		ack, err := b.js.Publish(ctx, "filler", small)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == insufficientResources {
			break
		}
		if err != nil {
			b.t.Fatalf("filler: %v", err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	n := room >> 10
	if len(seqs) < n {
		b.t.Fatalf("only %d small fillers", len(seqs))
	}
	for _, seq := range seqs[len(seqs)-n:] {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			b.t.Fatal(err)
		}
	}
	return free
}

// A listing whose answer's state a nearly full store refuses (while the
// smaller writes before it still fit) is not fetched from Azure again on
// each retry: the worker keeps the answer and the message, and stores it
// once the store takes it. Regression: each redelivery called Azure for
// the page again.
func TestRefusedAnswerNotFetchedAgain(t *testing.T) {
	t.Parallel()
	// A short ack-wait: the message would come back after it.
	const ackWait = 12 * time.Second
	b := setupSmallStore(t, 1, func(c *config.Config) { c.AckWait, c.HTTPTimeout = ackWait, time.Second })
	b.emu.SetListing(5, 30) // 90 invoices: a state of about 100 KB at the end
	ctx := context.Background()
	req := devstack.Sample(messages.KindAccountInvoices, b.id(), "")
	free := b.fillLeaving(24 << 10)
	before := len(b.emu.Calls())
	b.submit(req)
	testwait.For(t, 20*time.Second, "an answer's state refused", func() bool { return b.refusedWrites()["state"] > 0 })
	refusedAt, calls := time.Now(), len(b.emu.Calls())-before
	// Past ack-wait and two redeliveries' delays (2 s, 4 s), had the
	// message been handed back: a wait on the clock, as a message kept
	// gives no signal. Meanwhile the store is retried.
	testwait.For(t, ackWait+15*time.Second, "ack-wait and two redeliveries past the refusal", func() bool {
		return time.Since(refusedAt) > ackWait+7*time.Second
	})
	if n := len(b.emu.Calls()) - before; n != calls {
		t.Errorf("Azure called %d more times while the answer's state could not be stored", n-calls)
	}
	free()
	o := b.wait(req.ID, 30*time.Second)
	if o.Completed == nil || len(o.Completed.Invoices) != 90 {
		t.Fatalf("the listing's event: %+v", o)
	}
	st, err := b.stack.Client.Status(ctx, req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.emu.Calls()) - before; n != st.AzureCalls || n != 18 {
		t.Errorf("Azure was called %d times for a listing of 18 pages (the state counts %d)", n, st.AzureCalls)
	}
}
