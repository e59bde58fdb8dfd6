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
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/azbilling/worker/internal/version"
)

// otlpLogReceiver is an OTLP/HTTP endpoint that keeps the log records it
// receives.
type otlpLogReceiver struct {
	mu      sync.Mutex
	records []*logspb.LogRecord
	service []string
	version []string
}

func (rc *otlpLogReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP/HTTP protobuf log export", http.StatusNotFound)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req collogs.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	for _, rl := range req.ResourceLogs {
		for _, a := range rl.GetResource().GetAttributes() {
			switch a.Key {
			case "service.name":
				rc.service = append(rc.service, a.GetValue().GetStringValue())
			case "service.version":
				rc.version = append(rc.version, a.GetValue().GetStringValue())
			}
		}
		for _, sl := range rl.ScopeLogs {
			rc.records = append(rc.records, sl.LogRecords...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&collogs.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// TestLogsOverOTLP: with an OTLP endpoint set, the log lines reach the
// collector as OTLP log records carrying the active span's trace and span
// ids, and still go to the process's own log (with trace_id); the own
// handler's level holds for both. Not parallel: it sets the process
// environment, which the OTLP exporters read.
func TestLogsOverOTLP(t *testing.T) {
	rc := &otlpLogReceiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	// The OTLP exporters read the process environment themselves.
	vars := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_TRACES_EXPORTER":        "none",
		"OTEL_METRICS_EXPORTER":       "none",
		"OTEL_SERVICE_NAME":           "billing-worker-test",
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	tel, err := Setup(context.Background(), "svc", env(vars))
	if err != nil {
		t.Fatal(err)
	}
	if tel.LoggerProvider == nil || tel.Enabled() {
		t.Fatalf("logs on, traces off: logger provider %v, tracing %v", tel.LoggerProvider, tel.Enabled())
	}
	var stderr bytes.Buffer
	log := slog.New(tel.LogHandler(slog.NewJSONHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))).With("request_id", "r1")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "x")
	log.InfoContext(ctx, "operation completed", "azure_calls", 2)
	log.DebugContext(ctx, "below the level")
	span.End()
	// The worker wraps its logger again: no second trace_id.
	slog.New(LogHandler(log.Handler())).Warn("no span")
	if err := tel.Shutdown(context.Background()); err != nil { // flushes the batch
		t.Fatal(err)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.records) != 2 {
		t.Fatalf("received %d log records, want 2: %v", len(rc.records), rc.records)
	}
	first := rc.records[0]
	sc := span.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	if first.GetBody().GetStringValue() != "operation completed" || !bytes.Equal(first.TraceId, tid[:]) || !bytes.Equal(first.SpanId, sid[:]) {
		t.Errorf("record in a span: body %q trace %x span %x; want trace %s span %s", first.GetBody().GetStringValue(), first.TraceId, first.SpanId, sc.TraceID(), sc.SpanID())
	}
	attrs := map[string]string{}
	for _, a := range first.Attributes {
		attrs[a.Key] = a.GetValue().String()
	}
	if _, ok := attrs["request_id"]; !ok {
		t.Errorf("record lacks the logger's attribute request_id: %v", attrs)
	}
	if _, ok := attrs["azure_calls"]; !ok {
		t.Errorf("record lacks its attribute azure_calls: %v", attrs)
	}
	if first.SeverityText != "INFO" {
		t.Errorf("severity %q", first.SeverityText)
	}
	if second := rc.records[1]; len(second.TraceId) != 0 || second.GetBody().GetStringValue() != "no span" {
		t.Errorf("record outside a span: %v", second)
	}
	if len(rc.service) == 0 || rc.service[0] != "billing-worker-test" {
		t.Errorf("resource service.name %v", rc.service)
	}
	if len(rc.version) == 0 || rc.version[0] != version.String() {
		t.Errorf("resource service.version %v, want %q", rc.version, version.String())
	}

	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("stderr has %d lines, want 2:\n%s", len(lines), stderr.String())
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line["trace_id"] != sc.TraceID().String() || line["request_id"] != "r1" {
		t.Errorf("stderr line: %v", line)
	}
	if strings.Count(lines[0], `"trace_id"`) != 1 {
		t.Errorf("trace_id twice: %s", lines[0])
	}
}

// TestLogsExporterChoice: OTEL_LOGS_EXPORTER decides as the other signals'
// variables do.
func TestLogsExporterChoice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		vars map[string]string
		on   bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_LOGS_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:1/v1/logs"}, true},
		{map[string]string{"OTEL_LOGS_EXPORTER": "otlp"}, true},
	} {
		tel, err := Setup(context.Background(), "svc", env(c.vars))
		if err != nil {
			t.Fatalf("%v: %v", c.vars, err)
		}
		if (tel.LoggerProvider != nil) != c.on {
			t.Errorf("%v: logs exported %v, want %v", c.vars, tel.LoggerProvider != nil, c.on)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_ = tel.Shutdown(ctx)
		cancel()
	}
	if _, err := Setup(context.Background(), "svc", env(map[string]string{"OTEL_LOGS_EXPORTER": "console"})); err == nil {
		t.Error("OTEL_LOGS_EXPORTER=console accepted")
	}
}

// callAzure sends one request through d to a server answering status.
func callAzure(t *testing.T, d *ClientDuration, method, status string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond) // part of the test: a call that takes some time, for the duration recorded
		switch status {
		case "429":
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer srv.Close()
	req, _ := http.NewRequest(method, srv.URL+"/providers/Microsoft.Billing/x", nil)
	start := time.Now()
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
	}
	d.Record(context.Background(), start, req, resp, err, attribute.String("billing.kind", "invoice"))
}

// TestClientDuration: a call is recorded in http.client.request.duration
// (seconds) with the semantic conventions' attributes and billing.kind.
func TestClientDuration(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	d, err := NewClientDuration(mp, "test")
	if err != nil {
		t.Fatal(err)
	}
	callAzure(t, d, "POST", "202")
	callAzure(t, d, "GET", "429")
	// No answer: the connection is refused.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	req, _ := http.NewRequest(http.MethodGet, closed.URL, nil)
	start := time.Now()
	_, err = http.DefaultClient.Do(req)
	d.Record(context.Background(), start, req, nil, err, attribute.String("billing.kind", "invoice"))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var hist *metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		for i := range sm.Metrics {
			if sm.Metrics[i].Name == "http.client.request.duration" {
				hist = &sm.Metrics[i]
			}
		}
	}
	if hist == nil || hist.Unit != "s" {
		t.Fatalf("no http.client.request.duration in seconds: %+v", rm)
	}
	points := hist.Data.(metricdata.Histogram[float64]).DataPoints
	got := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, p := range points {
		method, _ := p.Attributes.Value("http.request.method")
		status, _ := p.Attributes.Value("http.response.status_code")
		errType, _ := p.Attributes.Value("error.type")
		host, _ := p.Attributes.Value("server.address")
		kind, _ := p.Attributes.Value("billing.kind")
		port, _ := p.Attributes.Value("server.port")
		if host.AsString() != "127.0.0.1" || kind.AsString() != "invoice" || port.AsInt64() == 0 {
			t.Errorf("point %v: server.address, server.port or billing.kind wrong", p.Attributes.ToSlice())
		}
		got[method.AsString()+" "+status.String()+" "+errType.String()] = p
	}
	for _, want := range []string{"POST 202 ", "GET 429 429", "GET  transport"} {
		p, ok := got[want]
		if !ok {
			t.Errorf("no point for %q; have %v", want, keys(got))
			continue
		}
		if p.Count != 1 || (want != "GET  transport" && p.Sum < 0.005) {
			t.Errorf("%q: count %d sum %v", want, p.Count, p.Sum)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestClientDurationExposition: /metrics shows the histogram under the
// name Prometheus users (and the shipped alerts and dashboard) query.
func TestClientDurationExposition(t *testing.T) {
	t.Parallel()
	tel, err := Setup(context.Background(), "svc", env(map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	d, err := NewClientDuration(tel.MeterProvider, "test")
	if err != nil {
		t.Fatal(err)
	}
	callAzure(t, d, "GET", "429")
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE http_client_request_duration_seconds histogram",
		`http_client_request_duration_seconds_count{billing_kind="invoice",error_type="429",http_request_method="GET",http_response_status_code="429"`,
		`le="30"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s:\n%s", want, grep(body, "http_client"))
		}
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
