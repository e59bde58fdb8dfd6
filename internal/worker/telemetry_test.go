package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
)

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

type telemetryBundle struct {
	*testBundle
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	logs   *syncBuffer
}

func setupTelemetry(t *testing.T) *telemetryBundle {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tel := telemetry.Noop()
	tel.TracerProvider, tel.MeterProvider = tp, mp
	logs := &syncBuffer{}
	stack, err := devstack.Start(devstack.Options{
		Dir:           t.TempDir(),
		Logger:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		WorkerOptions: []worker.Option{worker.WithTelemetry(tel)},
		AzureDeps:     config.AzureDeps{Tracing: tp},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := watch(t, stack)
	return &telemetryBundle{testBundle: b, spans: spans, reader: reader, tp: tp, logs: logs}
}

// send submits req in a producer span of its own, as cmd/enqueue does, and
// returns that span's trace id.
func (b *telemetryBundle) send(req messages.Request) trace.TraceID {
	ctx, span := b.tp.Tracer("test").Start(context.Background(), "send test", trace.WithSpanKind(trace.SpanKindProducer))
	hdr := nats.Header{}
	telemetry.Inject(ctx, hdr)
	if _, err := b.stack.Client.Submit(ctx, req, hdr); err != nil {
		b.t.Fatal(err)
	}
	span.End()
	return span.SpanContext().TraceID()
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestOneTracePerRequest(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("1"), emulator.Accepted("1"), emulator.OK())
	req := devstack.Sample(messages.KindInvoicePriceSheet, b.id(), inv)
	traceID := b.send(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("want completion, got %+v", o.Failed)
	}
	// The event carries the trace on to its consumers.
	if got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), o.Header)).TraceID(); got != traceID {
		t.Errorf("event's trace id %s, want %s", got, traceID)
	}
	// The event can arrive before its process span has ended.
	testwait.For(t, eventTimeout, "the send span and both poll spans", func() bool {
		return len(spansOf(b.spans, traceID, "send billing.events.completed")) == 1 &&
			len(spansOf(b.spans, traceID, "process billing.internal.polls")) == 2
	})

	spans := spansOf(b.spans, traceID, "")
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s
	}
	parentName := func(s sdktrace.ReadOnlySpan) string {
		if p, ok := byID[s.Parent().SpanID()]; ok {
			return p.Name()
		}
		return ""
	}
	want := []struct {
		name   string
		kind   trace.SpanKind
		parent string
		count  int
	}{
		{"process billing.requests.>", trace.SpanKindConsumer, "send test", 1},
		{"POST", trace.SpanKindClient, "process billing.requests.>", 1},
		{"send billing.internal.schedules", trace.SpanKindProducer, "", 2},
		{"process billing.internal.polls", trace.SpanKindConsumer, "send billing.internal.schedules", 2},
		{"GET", trace.SpanKindClient, "process billing.internal.polls", 2},
		{"send billing.events.completed", trace.SpanKindProducer, "process billing.internal.polls", 1},
	}
	for _, w := range want {
		got := spansOf(b.spans, traceID, w.name)
		if len(got) != w.count {
			t.Errorf("%d spans named %q, want %d (all: %v)", len(got), w.name, w.count, names(spans))
			continue
		}
		for _, s := range got {
			if s.SpanKind() != w.kind {
				t.Errorf("%s: kind %v, want %v", w.name, s.SpanKind(), w.kind)
			}
			if w.parent != "" && parentName(s) != w.parent {
				t.Errorf("%s: parent %q, want %q", w.name, parentName(s), w.parent)
			}
		}
	}
	// Attributes: messaging, HTTP, and the poll's attempt and Retry-After.
	for _, s := range spansOf(b.spans, traceID, "process billing.internal.polls") {
		a := attrs(s)
		if a["messaging.system"].AsString() != "nats" || a["messaging.destination.name"].AsString() != "billing.internal.polls" {
			t.Errorf("poll span attributes %v", a)
		}
		if n := a["billing.poll.attempt"].AsInt64(); n == 1 && a["billing.retry_after.seconds"].AsFloat64() != 1 {
			t.Errorf("first poll: retry after %v, want 1", a["billing.retry_after.seconds"])
		} else if n != 1 && n != 2 {
			t.Errorf("poll attempt %d", n)
		}
	}
	for _, s := range spansOf(b.spans, traceID, "GET") {
		a := attrs(s)
		u, _ := url.Parse(a["url.full"].AsString())
		if a["http.request.method"].AsString() != "GET" || a["server.address"].AsString() != "127.0.0.1" || u == nil || a["http.response.status_code"].AsInt64() == 0 {
			t.Errorf("HTTP span attributes %v", a)
		}
	}
	// No span attribute carries the SAS signature of the result.
	sig, _ := url.Parse(o.Completed.URL)
	assertNoSecret(t, spans, sig.Query().Get("sig"))

	// Log lines about the request carry its trace id.
	found := 0
	for _, line := range b.logs.lines() {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["request_id"] != req.ID {
			continue
		}
		found++
		if rec["trace_id"] != traceID.String() {
			t.Errorf("log line without the request's trace id: %s", line)
		}
	}
	if found < 3 {
		t.Errorf("only %d log lines about the request", found)
	}
}

func TestFailedRequestTraceShowsTheError(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Fail(403, "AuthorizationFailed", "no access"))
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	traceID := b.send(req)
	if o := b.wait(req.ID, eventTimeout); o.Failed == nil {
		t.Fatalf("want failure, got %+v", o.Completed)
	}
	testwait.For(t, eventTimeout, "the request's process span", func() bool { return len(spansOf(b.spans, traceID, "process billing.requests.>")) == 1 })
	process := spansOf(b.spans, traceID, "process billing.requests.>")
	if len(process) != 1 || process[0].Status().Code != codes.Error {
		t.Fatalf("process span %v", process)
	}
	a := attrs(process[0])
	if a["billing.code"].AsString() != "access_denied" || a["azure.error.code"].AsString() != "AuthorizationFailed" {
		t.Errorf("process span attributes %v", a)
	}
	post := spansOf(b.spans, traceID, "POST")
	if len(post) != 1 || post[0].Status().Code != codes.Error || attrs(post[0])["error.type"].AsString() != "403" {
		t.Errorf("HTTP span %v", post)
	}

	// The metrics saw it too.
	var rm metricdata.ResourceMetrics
	if err := b.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := counterSum(rm, "billing.requests.outcomes", attribute.String("billing.code", "access_denied")); n != 1 {
		t.Errorf("outcomes{access_denied} = %d", n)
	}
	if n := counterSum(rm, "billing.azure.calls", attribute.Int("http.response.status_code", 403)); n != 1 {
		t.Errorf("azure.calls{403} = %d", n)
	}
}

func assertNoSecret(t *testing.T, spans []sdktrace.ReadOnlySpan, secret string) {
	t.Helper()
	if secret == "" {
		t.Fatal("no secret to look for")
	}
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.String(), secret) || strings.Contains(kv.Value.String(), url.QueryEscape(secret)) {
				t.Errorf("span %s attribute %s carries the secret", s.Name(), kv.Key)
			}
		}
		if strings.Contains(s.Status().Description, secret) {
			t.Errorf("span %s status carries the secret", s.Name())
		}
	}
}

// spansOf returns the ended spans of a trace, those named name (all when
// name is empty).
func spansOf(r *tracetest.SpanRecorder, id trace.TraceID, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.Ended() {
		if s.SpanContext().TraceID() == id && (name == "" || s.Name() == name) {
			out = append(out, s)
		}
	}
	return out
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

// counterSum adds up the data points of a counter that carry attr.
func counterSum(rm metricdata.ResourceMetrics, name string, attr attribute.KeyValue) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != name || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, ok := dp.Attributes.Value(attr.Key); ok && v == attr.Value {
					n += dp.Value
				}
			}
		}
	}
	return n
}

// billing.operations.waiting counts the operations whose next call is
// scheduled, from the server's point of view.
func TestWaitingGauge(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	const n = 3
	for range n {
		inv := b.invoice()
		b.emu.Script(inv, emulator.Accepted("60"))
		req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
		b.submit(req)
		waitState(t, b.stack.Client, req.ID, func(s stateView) bool { return s.Phase == "waiting" })
	}
	// The state says waiting as soon as it is written; the work stream,
	// which the gauge reads on the server, matches it a moment later (seen
	// once polls came every millisecond): read the gauge until it counts n.
	got := int64(-1)
	testwait.ForNoError(t, eventTimeout, "billing.operations.waiting at 3", func() error {
		var rm metricdata.ResourceMetrics
		if err := b.reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		got = -1
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "billing.operations.waiting" && len(g.DataPoints) == 1 {
					got = g.DataPoints[0].Value
				}
			}
		}
		if got != n {
			return fmt.Errorf("it reads %d (-1: no observation)", got)
		}
		return nil
	})
}
