package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// receiver is an OTLP/HTTP receiver: it decodes the protobuf payloads of
// /v1/traces and /v1/metrics and keeps what it got.
type receiver struct {
	mu      sync.Mutex
	spans   []span
	metrics []*collmetrics.ExportMetricsServiceRequest
}

type span struct {
	service, name, traceID string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch req.URL.Path {
	case "/v1/traces":
		var m colltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range m.ResourceSpans {
			service := attrString(rs.Resource.GetAttributes(), "service.name")
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, span{service: service, name: s.Name, traceID: hex.EncodeToString(s.TraceId)})
				}
			}
		}
		r.mu.Unlock()
		resp = &colltrace.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var m collmetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.metrics = append(r.metrics, &m)
		r.mu.Unlock()
		resp = &collmetrics.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func attrString(attrs []*commonpb.KeyValue, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.GetStringValue()
		}
	}
	return ""
}

// lastSum returns the latest cumulative value of a counter from service,
// summed over the data points whose attribute key has value (any when key
// is empty).
func (r *receiver) lastSum(service, name, key, value string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last int64 = -1
	for _, m := range r.metrics {
		for _, rm := range m.ResourceMetrics {
			if attrString(rm.Resource.GetAttributes(), "service.name") != service {
				continue
			}
			for _, sm := range rm.ScopeMetrics {
				for _, met := range sm.Metrics {
					if met.Name != name {
						continue
					}
					sum, ok := met.Data.(*metricspb.Metric_Sum)
					if !ok {
						continue
					}
					var total int64
					for _, dp := range sum.Sum.DataPoints {
						if key == "" || attrString(dp.Attributes, key) == value {
							total += dp.GetAsInt()
						}
					}
					last = total
				}
			}
		}
	}
	return last
}

func (r *receiver) snapshot() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

// Spans from the enqueue process and from a worker process reach a real
// OTLP/HTTP receiver and share one trace id per request; the worker's
// metrics arrive with the counts of what the run did.
func TestOTLPExportAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	otel := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_METRIC_EXPORT_INTERVAL=500",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}
	e := newEnv(t)
	ns := startNATS(t, "otlp-nats", filepath.Join(t.TempDir(), "js"))
	w := e.worker(t, "otlp-worker", ns.url(), otel...)
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	// Four requests that complete (one after a poll) and one that fails.
	var lines []string
	for i := range 5 {
		inv := devstack.InvoiceName("OT", i)
		switch i {
		case 0:
			e.emu.Script(inv, emulator.Accepted("1"), emulator.OK())
		case 4:
			e.emu.Script(inv, emulator.Fail(404, "InvoiceNotFound", "no such invoice"))
		default:
			e.emu.Script(inv, emulator.OK())
		}
		lines = append(lines, string(mustJSON(devstack.Sample(messages.KindInvoiceSummary, "otlp-"+inv, inv))))
	}
	cmd := exec.Command(bin.enqueue, "-nats-url", ns.url(), "file", "-wait", "-timeout", "1m", "-")
	cmd.Env = append(os.Environ(), append(otel, "OTEL_SERVICE_NAME=billing-enqueue")...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 { // one request failed: exit status 1
		t.Fatalf("enqueue: %v\n%s", err, out.String())
	}
	if err := w.signal(t, syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("worker: %v\n%s", err, w.tail())
	}

	// Per request: the enqueue span and the worker's spans share a trace.
	shared := 0
	if err := testwait.Until(10*time.Second, "5 traces with spans from both processes", func() bool {
		traces := map[string]map[string]bool{} // trace id -> services
		for _, s := range rcv.snapshot() {
			if traces[s.traceID] == nil {
				traces[s.traceID] = map[string]bool{}
			}
			traces[s.traceID][s.service] = true
		}
		shared = 0
		for _, services := range traces {
			if services["billing-enqueue"] && services["billing-worker"] {
				shared++
			}
		}
		return shared == 5
	}); err != nil {
		t.Fatalf("%v: %d of 5; spans: %v", err, shared, rcv.snapshot())
	}
	checks := []struct {
		name, key, value string
		want             int64
	}{
		{"billing.requests.received", "", "", 5},
		{"billing.requests.outcomes", "billing.outcome", "completed", 4},
		{"billing.requests.outcomes", "billing.code", "azure_error", 1},
		{"billing.azure.calls", "", "", 6},
	}
	for _, c := range checks {
		if got := rcv.lastSum("billing-worker", c.name, c.key, c.value); got != c.want {
			t.Errorf("%s{%s=%s} = %d, want %d", c.name, c.key, c.value, got, c.want)
		}
	}
}
