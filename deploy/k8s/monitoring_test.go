package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"sigs.k8s.io/yaml"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
)

// Metrics the alerts and the dashboard use that the worker does not
// produce, by source. Named one by one: a typo must fail.
var (
	// kube-state-metrics (KEDA's HPA is an ordinary HPA to it) and
	// Prometheus's own scrape health.
	clusterMetrics = []string{
		"kube_horizontalpodautoscaler_status_current_replicas",
		"kube_horizontalpodautoscaler_spec_max_replicas",
		"kube_pod_status_ready",
		"up",
	}
	// prometheus-nats-exporter with -jsz=all (the NATS chart's promExporter).
	natsExporterMetrics = []string{
		"nats_consumer_num_pending",
		"nats_consumer_num_ack_pending",
		"nats_stream_total_messages",
		"nats_stream_total_bytes",
	}
)

var promParser = parser.NewParser(parser.Options{})

var (
	scrapeOnce  sync.Once
	scraped     map[string]*dto.MetricFamily
	scrapeError error
)

// workerMetrics runs the worker (embedded NATS, the Azure emulator) with
// OTEL_METRICS_EXPORTER=prometheus as the manifests set it, drives one
// request to completion through a 202 and a 429, sends one invalid
// request (dead-lettered), and returns what its /metrics serves then.
func workerMetrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	scrapeOnce.Do(func() { scraped, scrapeError = scrapeWorker() })
	if scrapeError != nil {
		t.Fatal(scrapeError)
	}
	return scraped
}

func scrapeWorker() (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tel, err := telemetry.Setup(ctx, "billing-worker", func(k string) string {
		return map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}[k]
	})
	if err != nil {
		return nil, err
	}
	defer tel.Shutdown(context.Background())
	dir, err := os.MkdirTemp("", "billing-metrics")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := devstack.Start(devstack.Options{
		Dir:           dir,
		WorkerOptions: []worker.Option{worker.WithTelemetry(tel)},
		AzureDeps:     config.AzureDeps{Metering: tel.MeterProvider},
		Emulator: emulator.Options{Default: []emulator.Reply{
			emulator.Accepted("1"), emulator.Throttled(429, "Retry-After", "1"), emulator.OK(),
		}},
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if _, err := s.Client.Submit(ctx, devstack.Sample(messages.KindInvoiceSummary, "metrics-1", "G000000001"), nil); err != nil {
		return nil, err
	}
	if _, err := s.Client.SubmitRaw(ctx, s.Client.Layout().Request(messages.KindInvoice), "metrics-bad", []byte("{not json"), nil); err != nil {
		return nil, err
	}
	// A document whose link storage always refuses: it completes with an
	// archive error (billing_archive_failures_total).
	s.Emulator.SetDownload("G000000002", emulator.Download{Expired: 1000})
	if _, err := s.Client.Submit(ctx, devstack.Sample(messages.KindInvoiceSummary, "metrics-2", "G000000002"), nil); err != nil {
		return nil, err
	}
	// A schedule firing every second whose record is then made unreadable
	// (as a writer past the tools' checks could): its fires count in
	// billing_schedule_errors_total.
	if _, err := s.Client.PutSchedule(ctx, messages.Schedule{Version: 1, ID: "metrics-broken", Cron: "* * * * * *",
		Request: messages.ScheduledRequest{Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: devstack.SampleBillingAccount, InvoiceName: "G000000003"}}}); err != nil {
		return nil, err
	}
	// And one whose periods' requests complete: billing_schedule_periods_total.
	if _, err := s.Client.PutSchedule(ctx, messages.Schedule{Version: 1, ID: "metrics-ok", Cron: "* * * * * *",
		Request: messages.ScheduledRequest{Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: devstack.SampleBillingAccount, InvoiceName: "G000000001"}}}); err != nil {
		return nil, err
	}
	js, err := jetstream.New(s.Conn)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, s.Client.Layout().ScheduleBucket())
	if err != nil {
		return nil, err
	}
	if _, err := kv.Put(ctx, "metrics-broken", []byte("{not json")); err != nil {
		return nil, err
	}
	for {
		rec := httptest.NewRecorder()
		tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		p := expfmt.NewTextParser(model.UTF8Validation)
		mf, err := p.TextToMetricFamilies(rec.Body)
		if err != nil {
			return nil, err
		}
		if hasSample(mf["billing_requests_outcomes_total"], "billing_outcome", "completed") && mf["billing_deadletters_total"] != nil &&
			mf["billing_archive_failures_total"] != nil && mf["billing_throttle_paused_seconds_total"] != nil && mf["billing_schedule_errors_total"] != nil &&
			hasSample(mf["billing_schedule_periods_total"], "billing_outcome", "completed") && mf["billing_schedule_missed_total"] != nil {
			return mf, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the worker's metrics never showed a completion and a dead letter: %v", familyNames(mf))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func hasSample(f *dto.MetricFamily, label, value string) bool {
	if f == nil {
		return false
	}
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}

// familyNames lists the series names a family's samples have (a
// histogram's _bucket, _sum and _count).
func familyNames(mf map[string]*dto.MetricFamily) []string {
	var out []string
	for name, f := range mf {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out = append(out, name+"_bucket", name+"_sum", name+"_count")
		case dto.MetricType_SUMMARY:
			out = append(out, name, name+"_sum", name+"_count")
		default:
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// seriesLabels is every label name the family's samples carry.
func seriesLabels(f *dto.MetricFamily) []string {
	var out []string
	for _, m := range f.Metric {
		for _, l := range m.Label {
			if !slices.Contains(out, l.GetName()) {
				out = append(out, l.GetName())
			}
		}
	}
	return out
}

// metricNames returns the metric names expr selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			if name == "" {
				t.Errorf("%s: a selector without a metric name", expr)
			}
			out = append(out, name)
		}
		return nil
	})
	return out
}

// prometheusRule is the PrometheusRule of components/monitoring, as the
// production overlay renders it.
func prometheusRule(t *testing.T) *monitoringv1.PrometheusRule {
	t.Helper()
	objs := render(t, "overlays/production").find("PrometheusRule", "")
	if len(objs) != 1 {
		t.Fatalf("production: %d PrometheusRules, want 1", len(objs))
	}
	return objs[0].typed.(*monitoringv1.PrometheusRule)
}

// alertRules parses the PrometheusRule's groups with Prometheus's own rule
// parser, as Prometheus loads the file the operator writes.
func alertRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	pr := prometheusRule(t)
	j, err := json.Marshal(struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}{pr.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(y, false, model.UTF8Validation, promParser, nil)
	for _, err := range errs {
		t.Errorf("rules: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	out := map[string]rulefmt.Rule{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			out[r.Alert] = r
		}
	}
	return out
}

// TestMonitoringManifests: production ships the PodMonitor, on the port
// and path the worker serves /metrics at; every overlay's telemetry
// settings give a /metrics (a scrape works with no extra setting) and send
// logs over OTLP.
func TestMonitoringManifests(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(overlays, "helm:monitoring", "helm:all") {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			env := workerEnv(t, r)
			tel, err := telemetry.Setup(context.Background(), "billing-worker", func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("telemetry settings: %v", err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_ = tel.Shutdown(ctx)
			}()
			if tel.Metrics == nil {
				t.Error("the worker would serve no /metrics: OTEL_METRICS_EXPORTER lacks prometheus")
			}
			if tel.LoggerProvider == nil {
				t.Error("the worker would not send its logs over OTLP")
			}
			if dir == "overlays/dev" {
				return // no Prometheus Operator assumed in development
			}
			pms := r.find("PodMonitor", "")
			if len(pms) != 1 {
				t.Fatalf("%d PodMonitors, want 1", len(pms))
			}
			pm := pms[0].typed.(*monitoringv1.PodMonitor)
			d := r.deployment(t, workerDeployment)
			if !labelSelects(t, &pm.Spec.Selector, d.Spec.Template.Labels) {
				t.Error("the PodMonitor does not select the worker's pods")
			}
			c := container(t, &d.Spec.Template.Spec, workerContainer)
			port := healthPort(t, workerConfig(t, env))
			if len(pm.Spec.PodMetricsEndpoints) != 1 {
				t.Fatalf("PodMonitor: %d endpoints", len(pm.Spec.PodMetricsEndpoints))
			}
			ep := pm.Spec.PodMetricsEndpoints[0]
			var got int
			if ep.Port != nil {
				for _, p := range c.Ports {
					if p.Name == *ep.Port {
						got = int(p.ContainerPort)
					}
				}
			}
			if got != port || ep.Path != "/metrics" {
				t.Errorf("PodMonitor scrapes port %v (%d) path %q; the worker serves /metrics on %d", ep.Port, got, ep.Path, port)
			}
		})
	}
}

// TestWorkerMetricNames: the worker's /metrics, as the manifests configure
// it, serves the names and labels the alerts and the dashboard use.
func TestWorkerMetricNames(t *testing.T) {
	t.Parallel()
	mf := workerMetrics(t)
	want := map[string][]string{
		"billing_requests_received_total":       {"billing_kind"},
		"billing_requests_outcomes_total":       {"billing_kind", "billing_outcome", "billing_code"},
		"billing_azure_calls_total":             {"billing_kind", "http_response_status_code"},
		"billing_azure_throttled_total":         {"billing_kind", "http_response_status_code"},
		"billing_operation_duration_seconds":    {"billing_kind", "billing_outcome"},
		"billing_operation_polls":               {"billing_kind", "billing_outcome"},
		"billing_operations_waiting":            nil,
		"billing_wakeups_overdue":               nil,
		"billing_deadletters_total":             {"billing_kind", "billing_code"},
		"billing_archive_attempts_total":        {"billing_kind", "billing_code"},
		"billing_archive_failures_total":        {"billing_kind", "billing_code"},
		"billing_archive_bytes_total":           {"billing_kind"},
		"billing_throttle_throttled_total":      {"billing_throttle_scope"},
		"billing_throttle_paused_seconds_total": {"billing_throttle_scope"},
		"billing_deadletter_stored":             nil,
		"billing_schedule_errors_total":         {"billing_schedule_error"},
		"billing_schedule_periods_total":        {"billing_schedule_id", "billing_outcome"},
		"billing_schedule_missed_total":         nil,
		"billing_deadletter_size_bytes":         nil,
		"billing_deadletter_limit_bytes":        nil,
		"billing_nats_writes_refused_total":     {"billing_write"},
		"billing_coverage_late":                 {"billing_coverage_status"},
		"http_client_request_duration_seconds":  {"billing_kind", "http_request_method", "http_response_status_code", "server_address", "error_type"},
	}
	for name, lbls := range want {
		f, ok := mf[name]
		if !ok {
			t.Errorf("/metrics has no %s; it has %v", name, familyNames(mf))
			continue
		}
		have := seriesLabels(f)
		for _, l := range lbls {
			if !slices.Contains(have, l) {
				t.Errorf("%s: no label %s (has %v)", name, l, have)
			}
		}
	}
}

// TestAlertRules: Prometheus's parser accepts the rules; each alert has a
// severity, a summary, a description and a runbook section in README.md,
// and uses only metrics the worker serves or the cluster's exporters
// provide.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	alerts := alertRules(t)
	known := append(familyNames(workerMetrics(t)), clusterMetrics...)
	readme := string(readFile(t, "README.md"))
	for name, r := range alerts {
		if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
			t.Errorf("%s: severity %q", name, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s", name, a)
			}
		}
		anchor := strings.ToLower(name)
		if !strings.HasSuffix(r.Annotations["runbook_url"], "/deploy/k8s/README.md#"+anchor) {
			t.Errorf("%s: runbook_url %s is not README.md#%s", name, r.Annotations["runbook_url"], anchor)
		}
		if !strings.Contains(readme, "\n#### "+name+"\n") {
			t.Errorf("README.md has no runbook section #### %s", name)
		}
		if !strings.Contains(readme, "| `"+name+"` |") {
			t.Errorf("README.md's alert table has no row for %s", name)
		}
		for _, m := range metricNames(t, r.Expr) {
			if !slices.Contains(known, m) {
				t.Errorf("%s uses %s, which neither the worker nor the cluster's exporters serve", name, m)
			}
		}
	}
}

// alertCase is synthetic series (promqltest's load syntax, one sample a
// minute from time 0) on which an alert must fire by the end, and healthy
// ones on which it must never fire (a short burst may make it pending:
// its "for" is what keeps it from firing).
type alertCase struct{ firing, healthy string }

var alertCases = map[string]alertCase{
	"BillingArchiveFailing": {
		firing: `
			billing_archive_failures_total{namespace="billing",pod="w1",billing_kind="invoice-summary",billing_code="store_failed"} 0x60 1+1x120`,
		healthy: `
			billing_archive_failures_total{namespace="billing",pod="w1",billing_kind="invoice-summary",billing_code="store_failed"} 2x180`,
	},
	"BillingDeadLettersGrowing": {
		firing: `
			billing_deadletters_total{namespace="billing",pod="w1",billing_kind="invoice",billing_code="invalid_request"} 0x100 1+1x80
			billing_deadletter_stored{namespace="billing",pod="w1"} 0x100 1+1x80`,
		healthy: `
			billing_deadletters_total{namespace="billing",pod="w1",billing_kind="invoice",billing_code="invalid_request"} 4x180
			billing_deadletter_stored{namespace="billing",pod="w1"} 4x100 0x80`,
	},
	"BillingScheduleFailing": {
		firing: `
			billing_schedule_errors_total{namespace="billing",pod="w1",billing_schedule_error="fire_failed"} 0x150 1x30`,
		healthy: `
			billing_schedule_errors_total{namespace="billing",pod="w1",billing_schedule_error="fire_failed"} 2x180`,
	},
	"BillingSchedulePeriodFailed": {
		firing: `
			billing_schedule_periods_total{namespace="billing",pod="w1",billing_schedule_id="invoices-monthly",billing_outcome="completed"} 3x180
			billing_schedule_periods_total{namespace="billing",pod="w1",billing_schedule_id="invoices-monthly",billing_outcome="failed"} 0x150 1x30`,
		healthy: `
			billing_schedule_periods_total{namespace="billing",pod="w1",billing_schedule_id="invoices-monthly",billing_outcome="completed"} 0+1x180
			billing_schedule_periods_total{namespace="billing",pod="w1",billing_schedule_id="invoices-monthly",billing_outcome="failed"} 2x180`,
	},
	"BillingScheduleMissedFires": {
		firing: `
			billing_schedule_missed_total{namespace="billing",pod="w1"} 0x150 4x30`,
		healthy: `
			billing_schedule_missed_total{namespace="billing",pod="w1"} 4x180`,
	},
	"BillingCoverageIncomplete": {
		firing: `
			billing_coverage_late{namespace="billing",pod="w1",billing_coverage_status="never_collected"} 0x60 2x120
			billing_coverage_late{namespace="billing",pod="w2",billing_coverage_status="never_collected"} 0x60 2x120
			billing_coverage_late{namespace="billing",pod="w1",billing_coverage_status="partial"} 0x180`,
		healthy: `
			billing_coverage_late{namespace="billing",pod="w1",billing_coverage_status="never_collected"} 0x60 3x30 0x90
			billing_coverage_late{namespace="billing",pod="w1",billing_coverage_status="failed"} 0x180`,
	},
	"BillingDeadLetterStreamNearlyFull": {
		firing: `
			billing_deadletter_size_bytes{namespace="billing",pod="w1"} 900+0x180
			billing_deadletter_limit_bytes{namespace="billing",pod="w1"} 1000x180`,
		healthy: `
			billing_deadletter_size_bytes{namespace="billing",pod="w1"} 100+1x180
			billing_deadletter_limit_bytes{namespace="billing",pod="w1"} 1000x180`,
	},
	"BillingFailureRatioHigh": {
		firing: `
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="completed",billing_code=""} 0+10x180
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="failed",billing_code="azure_error"} 0+5x180`,
		healthy: `
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="completed",billing_code=""} 0+100x180
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="failed",billing_code="azure_error"} 0+1x180`,
	},
	"BillingAzureAuthFailing": {
		firing: `
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="failed",billing_code="auth_failed"} 0x60 1+2x120`,
		healthy: `
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="failed",billing_code="auth_failed"} 3x180
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="failed",billing_code="timeout"} 0+1x180`,
	},
	"BillingAzureThrottled": {
		firing: `
			billing_azure_calls_total{namespace="billing",pod="w1",billing_kind="invoice",http_response_status_code="202"} 0+100x180
			billing_azure_throttled_total{namespace="billing",pod="w1",billing_kind="invoice",http_response_status_code="429"} 0+50x180`,
		healthy: `
			billing_azure_calls_total{namespace="billing",pod="w1",billing_kind="invoice",http_response_status_code="202"} 0+100x180
			billing_azure_throttled_total{namespace="billing",pod="w1",billing_kind="invoice",http_response_status_code="429"} 0+50x20 1000x160`,
	},
	"BillingOperationsNotCompleting": {
		firing: `
			billing_operations_waiting{namespace="billing",pod="w1"} 0+1x180
			billing_operations_waiting{namespace="billing",pod="w2"} 0+1x180
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="completed",billing_code=""} 0+5x60 300x120`,
		healthy: `
			billing_operations_waiting{namespace="billing",pod="w1"} 0+1x180
			billing_requests_outcomes_total{namespace="billing",pod="w1",billing_kind="invoice",billing_outcome="completed",billing_code=""} 0+1x180`,
	},
	"BillingWakeUpsOverdue": {
		firing: `
			billing_wakeups_overdue{namespace="billing",pod="w1"} 0x60 3x120
			billing_wakeups_overdue{namespace="billing",pod="w2"} 0x60 3x120`,
		healthy: `
			billing_wakeups_overdue{namespace="billing",pod="w1"} 0x60 2x3 0x117
			billing_wakeups_overdue{namespace="billing",pod="w2"} 0x180`,
	},
	"BillingNATSStoreFull": {
		firing: `
			billing_nats_writes_refused_total{namespace="billing",pod="w1",billing_write="state"} 0x100 1+3x80
			billing_nats_writes_refused_total{namespace="billing",pod="w1",billing_write="event"} 0x100 0+1x80`,
		healthy: `
			billing_nats_writes_refused_total{namespace="billing",pod="w1",billing_write="state"} 0x180
			billing_nats_writes_refused_total{namespace="billing",pod="w2",billing_write="state"} 4x180`,
	},
	"BillingWorkersAtMaxReplicas": {
		firing: `
			kube_horizontalpodautoscaler_status_current_replicas{job="kube-state-metrics",namespace="billing",horizontalpodautoscaler="keda-hpa-billing-worker"} 3+1x27 30x150
			kube_horizontalpodautoscaler_spec_max_replicas{job="kube-state-metrics",namespace="billing",horizontalpodautoscaler="keda-hpa-billing-worker"} 30x180`,
		healthy: `
			kube_horizontalpodautoscaler_status_current_replicas{job="kube-state-metrics",namespace="billing",horizontalpodautoscaler="keda-hpa-billing-worker"} 12x180
			kube_horizontalpodautoscaler_spec_max_replicas{job="kube-state-metrics",namespace="billing",horizontalpodautoscaler="keda-hpa-billing-worker"} 30x180
			kube_horizontalpodautoscaler_status_current_replicas{job="kube-state-metrics",namespace="other",horizontalpodautoscaler="keda-hpa-other"} 5x180
			kube_horizontalpodautoscaler_spec_max_replicas{job="kube-state-metrics",namespace="other",horizontalpodautoscaler="keda-hpa-other"} 5x180`,
	},
	"BillingWorkerNotReady": {
		firing: `
			kube_pod_status_ready{job="kube-state-metrics",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k",condition="true"} 1x100 0x80
			kube_pod_status_ready{job="kube-state-metrics",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k",condition="false"} 0x100 1x80`,
		healthy: `
			kube_pod_status_ready{job="kube-state-metrics",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k",condition="true"} 1x180
			kube_pod_status_ready{job="kube-state-metrics",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k",condition="false"} 0x180
			kube_pod_status_ready{job="kube-state-metrics",namespace="billing",pod="billing-worker-7c9f5d8b6-r8p2q",condition="true"} 0x3 1x177`,
	},
	"BillingWorkerMetricsDown": {
		firing: `
			up{job="billing/billing-worker",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k"} 1x100 0x80`,
		healthy: `
			up{job="billing/billing-worker",namespace="billing",pod="billing-worker-7c9f5d8b6-x2x4k"} 1x180
			up{job="billing/other",namespace="billing",pod="other-1"} 0x180`,
	},
}

// evalAlert evaluates rule r once a minute over three hours of series, as
// Prometheus's rule manager does, and returns the states the alert was in
// at the end and whether it ever fired.
func evalAlert(t *testing.T, name string, r rulefmt.Rule, series string) (final []rules.AlertState, everFired bool) {
	t.Helper()
	storage := promqltest.LoadedStorage(t, "load 1m\n"+strings.TrimLeft(series, "\n"))
	engine := promqltest.NewTestEngine(t, false, 0, 1e6)
	expr, err := promParser.ParseExpr(r.Expr)
	if err != nil {
		t.Fatal(err)
	}
	rule := rules.NewAlertingRule(name, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
		labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, nil)
	query := rules.EngineQueryFunc(engine, storage)
	for m := 0; m <= 180; m++ {
		if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(time.Duration(m)*time.Minute), query, nil, 0); err != nil {
			t.Fatalf("%s at %dm: %v", name, m, err)
		}
		for _, a := range rule.ActiveAlerts() {
			everFired = everFired || a.State == rules.StateFiring
		}
	}
	for _, a := range rule.ActiveAlerts() {
		final = append(final, a.State)
		if a.Labels.Get("namespace") != "billing" {
			t.Errorf("%s: alert labels %v lack the namespace", name, a.Labels)
		}
	}
	return final, everFired
}

// TestAlertsFire: every alert fires on series that show its problem and
// stays silent on healthy ones (Prometheus's rule evaluation, in Go: the
// promtool unit-test runner is in package main and cannot be imported).
func TestAlertsFire(t *testing.T) {
	t.Parallel()
	alerts := alertRules(t)
	for name := range alerts {
		if _, ok := alertCases[name]; !ok {
			t.Errorf("alert %s has no synthetic series in alertCases", name)
		}
	}
	for name, c := range alertCases {
		t.Run(name, func(t *testing.T) {
			r, ok := alerts[name]
			if !ok {
				t.Fatalf("no alert %s in the PrometheusRule", name)
			}
			final, _ := evalAlert(t, name, r, c.firing)
			if len(final) == 0 || !slices.Contains(final, rules.StateFiring) {
				t.Errorf("does not fire on its series (states at the end: %v)", final)
			}
			if _, fired := evalAlert(t, name, r, c.healthy); fired {
				t.Error("fires on healthy series")
			}
		})
	}
}

// grafanaDashboard is what the test reads of deploy/grafana's dashboard.
type grafanaDashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaVariables stand in for Grafana's variables before parsing.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "${namespace}", "billing", "$namespace", "billing", "$kind", "invoice")

// TestDashboard: the Grafana dashboard is valid JSON, every query parses
// as PromQL, and every metric it queries is one the worker serves, the
// alerts use, or the NATS exporter provides.
func TestDashboard(t *testing.T) {
	t.Parallel()
	b := readFile(t, "../grafana/billing-worker.json")
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if !json.Valid(b) || d.Title == "" || d.UID == "" {
		t.Fatalf("dashboard: title %q uid %q", d.Title, d.UID)
	}
	known := append(familyNames(workerMetrics(t)), natsExporterMetrics...)
	for _, r := range alertRules(t) {
		known = append(known, metricNames(t, r.Expr)...)
	}
	used := map[string]bool{}
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			for _, m := range metricNames(t, grafanaVariables.Replace(tg.Expr)) {
				used[m] = true
				if !slices.Contains(known, m) {
					t.Errorf("panel %q queries %s, which nothing serves", p.Title, m)
				}
			}
		}
	}
	// The dashboard shows what the alerts watch, and the Azure latency.
	for _, m := range []string{"http_client_request_duration_seconds_bucket", "billing_requests_outcomes_total", "billing_operations_waiting", "billing_deadletter_stored", "nats_consumer_num_pending"} {
		if !used[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	if queries == 0 {
		t.Error("no queries")
	}
	if regexp.MustCompile(`"datasource":\s*"[^$]`).Match(b) {
		t.Error("a panel names a fixed data source; use the ${datasource} variable")
	}
}
