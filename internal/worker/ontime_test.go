package worker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
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
	// 24 wake-ups, each fired 400 ms before its poll was due: the server's
	// timer (at most 250 ms late on a quiet server) leaves most of them
	// early, and every early one is held.
	if count == 0 {
		t.Errorf("no wake-up was held (of %d)", 2*ops)
	}
	if time.Duration(longest*float64(time.Second)) > holdMax {
		t.Errorf("a hold lasted %.3fs, longer than poll-hold-max %s", longest, holdMax)
	}
	t.Logf("%d of %d wake-ups held, the longest %.0f ms", count, 2*ops, longest*1000)
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
