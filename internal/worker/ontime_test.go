package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
)

// Polls on time: every wake-up is scheduled poll-lead before its poll is
// due, and one that arrives early is held in the worker until due. The
// poll is never early, holds happen, and none is longer than its bound.
func TestPollsHeldUntilDueNeverEarly(t *testing.T) {
	t.Parallel()
	const (
		lead    = 400 * time.Millisecond
		holdMax = 900 * time.Millisecond
		ops     = 12
	)
	reader := sdkmetric.NewManualReader()
	stack, err := devstack.Start(devstack.Options{
		Dir:    t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Configure: func(c *config.Config) {
			c.Concurrency, c.MaxAckPending = 16, 64
			c.PollLead, c.PollHoldMax = lead, holdMax
			roomyThrottle(c)
		},
		WorkerOptionsFor: func(int) []worker.Option {
			tel := telemetry.Noop()
			tel.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			return []worker.Option{worker.WithTelemetry(tel)}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := watch(t, stack)
	invoices := make([]string, ops)
	ids := make([]string, ops)
	for i := range ops {
		invoices[i] = b.invoice()
		b.emu.Script(invoices[i], emulator.Accepted("1"), emulator.Accepted("2"), emulator.OK())
		req := devstack.Sample(messages.KindInvoiceSummary, b.id(), invoices[i])
		ids[i] = req.ID
		b.submit(req)
	}
	for i, id := range ids {
		o := b.wait(id, eventTimeout)
		if o.Completed == nil {
			t.Fatalf("%s: want a completion, got %+v", id, o.Failed)
		}
		calls := b.emu.CallsFor(invoices[i])
		if len(calls) != 3 {
			t.Fatalf("%s: %d calls, want 3", id, len(calls))
		}
		// Never early: each poll at least its Retry-After after the call
		// before it reached the emulator.
		for j, wait := range []time.Duration{time.Second, 2 * time.Second} {
			if gap := calls[j+1].Time.Sub(calls[j].Time); gap < wait {
				t.Errorf("%s: poll %d came %s after the call before, earlier than its Retry-After %s", id, j+1, gap, wait)
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	h, ok := histogram(rm, "billing.poll.hold")
	if !ok {
		t.Fatal("no billing.poll.hold recorded")
	}
	var count uint64
	var longest float64
	for _, dp := range h.DataPoints {
		count += dp.Count
		if m, ok := dp.Max.Value(); ok {
			longest = max(longest, m)
		}
	}
	// 24 wake-ups (and the probe's holds of the first calls), each fired
	// 400 ms before its poll was due: the server's timer (at most 250 ms
	// late on a quiet server) leaves most of them early, and every early
	// one is held.
	if count == 0 {
		t.Errorf("no wake-up was held (of %d)", 2*ops)
	}
	if time.Duration(longest*float64(time.Second)) > holdMax {
		t.Errorf("a hold lasted %.3fs, longer than poll-hold-max %s", longest, holdMax)
	}
	t.Logf("%d of %d wake-ups held, the longest %.0f ms", count, 2*ops, longest*1000)
	// The worker's own measure: no call that waited went out before its
	// due time.
	l, ok := histogram(rm, "billing.call.lateness")
	if !ok {
		t.Fatal("no billing.call.lateness recorded")
	}
	var polls uint64
	for _, dp := range l.DataPoints {
		polls += dp.Count
		if m, ok := dp.Min.Value(); ok && m < 0 {
			t.Errorf("a call went out %.3fs before its due time", -m)
		}
		if m, ok := dp.Max.Value(); ok {
			t.Logf("calls after a wait: %d, latest %.0f ms after its due time", dp.Count, m*1000)
		}
	}
	// Every poll waited; so did the first calls that the scope's probe
	// held (the throttle's wait before the scope's first answer).
	if polls < 2*ops {
		t.Errorf("%d calls after a wait measured, want at least the %d polls", polls, 2*ops)
	}
}

// A wake-up that arrives earlier than poll-hold-max before its poll is
// due (here one published by hand, as a server whose clock runs ahead
// would fire it) is not held: it goes back to waiting, and the poll is
// still made once, at its due time, never before.
func TestWakeUpEarlierThanTheBoundNotHeld(t *testing.T) {
	t.Parallel()
	const (
		lead    = 200 * time.Millisecond
		holdMax = 500 * time.Millisecond
	)
	reader := sdkmetric.NewManualReader()
	stack, err := devstack.Start(devstack.Options{
		Dir:    t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Configure: func(c *config.Config) {
			c.Concurrency, c.MaxAckPending = 16, 64
			c.PollLead, c.PollHoldMax = lead, holdMax
			roomyThrottle(c)
		},
		WorkerOptionsFor: func(int) []worker.Option {
			tel := telemetry.Noop()
			tel.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			return []worker.Option{worker.WithTelemetry(tel)}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := watch(t, stack)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("4"), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	b.submit(req)
	ctx := context.Background()
	js, err := jetstream.New(stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stack.Client.Layout().Prefix+"_operations")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Phase  string    `json:"phase"`
		NextAt time.Time `json:"nextAt"`
		Wake   uint64    `json:"wake"`
	}
	testwait.ForNoError(t, eventTimeout, "the operation waiting for its poll", func() error {
		e, err := kv.Get(ctx, req.ID)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return err
		}
		if st.Phase != "waiting" {
			return errors.New("phase " + st.Phase)
		}
		return nil
	})
	if time.Until(st.NextAt) < 2*holdMax {
		t.Fatalf("the poll is due in %s already: too late to send a wake-up earlier than the bound", time.Until(st.NextAt))
	}
	body, _ := json.Marshal(map[string]any{"id": req.ID, "wake": st.Wake, "due": st.NextAt})
	if _, err := js.Publish(ctx, stack.Client.Layout().Polls(), body); err != nil {
		t.Fatal(err)
	}
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("want a completion, got %+v", o.Failed)
	}
	calls := b.emu.CallsFor(inv)
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2 (the early wake-up made a poll of its own?)", len(calls))
	}
	if gap := calls[1].Time.Sub(calls[0].Time); gap < 4*time.Second {
		t.Errorf("the poll came %s after the first call, before its Retry-After of 4s", gap)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if h, ok := histogram(rm, "billing.poll.hold"); ok {
		for _, dp := range h.DataPoints {
			if m, ok := dp.Max.Value(); ok && time.Duration(m*float64(time.Second)) > holdMax {
				t.Errorf("a hold lasted %.3fs, longer than poll-hold-max %s", m, holdMax)
			}
		}
	}
}

// histogram finds the float histogram name in rm.
func histogram(rm metricdata.ResourceMetrics, name string) (metricdata.Histogram[float64], bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == name {
				return h, true
			}
		}
	}
	return metricdata.Histogram[float64]{}, false
}
