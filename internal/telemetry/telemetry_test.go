package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNothingConfiguredIsOff(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), "svc", env(nil))
	if err != nil || tel.Enabled() || tel.Metrics != nil {
		t.Fatalf("Setup with nothing: %+v %v", tel, err)
	}
	if _, span := tel.TracerProvider.Tracer("t").Start(context.Background(), "x"); span.IsRecording() {
		t.Error("a span records with telemetry off")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	// "none" switches a signal off even with an endpoint.
	tel, err = Setup(context.Background(), "svc", env(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}))
	if err != nil || tel.Enabled() {
		t.Fatalf("none: %v %v", tel.Enabled(), err)
	}
}

func TestUnknownExporterIsAnError(t *testing.T) {
	t.Parallel()
	if _, err := Setup(context.Background(), "svc", env(map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"})); err == nil {
		t.Error("zipkin accepted")
	}
}

func TestPrometheusEndpoint(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), "svc", env(map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}))
	if err != nil || tel.Metrics == nil {
		t.Fatalf("prometheus: %v", err)
	}
	defer tel.Shutdown(context.Background())
	c, _ := tel.MeterProvider.Meter("t").Int64Counter("billing.requests.received")
	c.Add(context.Background(), 3)
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), "billing_requests_received") || !strings.Contains(string(body), " 3") {
		t.Errorf("exposition lacks the counter:\n%s", body)
	}
}

func TestCarrierWritesLowerCaseReadsEither(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "x")
	defer span.End()
	h := nats.Header{}
	Inject(ctx, h)
	if len(h["traceparent"]) != 1 || len(h["Traceparent"]) != 0 {
		t.Fatalf("headers %v", h)
	}
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		in := nats.Header{}
		in[key] = h["traceparent"]
		if got := trace.SpanContextFromContext(Extract(context.Background(), in)); got.TraceID() != span.SpanContext().TraceID() {
			t.Errorf("%s: trace id %s", key, got.TraceID())
		}
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("request_id", "r1")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "x")
	log.InfoContext(ctx, "in a span")
	span.End()
	log.Info("no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var first, second map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[1]), &second)
	if first["trace_id"] != span.SpanContext().TraceID().String() || first["span_id"] != span.SpanContext().SpanID().String() || first["request_id"] != "r1" {
		t.Errorf("line in a span: %v", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("line without a span has a trace id: %v", second)
	}
}
