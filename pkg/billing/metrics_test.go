package billing

import (
	"context"
	"sort"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/azauth"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// TestMetricsClientDuration: every HTTP call sent to Azure is one
// http.client.request.duration measurement with its method, status and
// kind; a call that got no token sent nothing and records nothing.
func TestMetricsClientDuration(t *testing.T) {
	t.Parallel()
	emu := emulator.Start(emulator.Options{
		Default: []emulator.Reply{emulator.Accepted("1"), emulator.Throttled(429, "Retry-After", "1"), emulator.OK()},
		Clients: map[string]emulator.Client{"app": {Tenant: "t1", Secret: "s"}}})
	t.Cleanup(emu.Close)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	client := func(secret string) *Client {
		cred, err := azauth.NewCredential(secretProfile(t, "t1", "app", secret), emulatorAuthOptions(emu))
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(cred, Options{Endpoint: emu.URL(), Audience: emulator.DefaultAudience, Transport: emu.Client(), MeterProvider: mp})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	c := client("s")
	resp, err := c.Start(ctx, messages.KindInvoiceSummary, summaryParams)
	if err != nil || resp.Location == "" {
		t.Fatalf("start: %+v %v", resp, err)
	}
	if _, err := c.Poll(ctx, messages.KindInvoiceSummary, resp.Location); err == nil {
		t.Fatal("poll: want the 429")
	}
	if _, err := c.Poll(ctx, messages.KindInvoiceSummary, resp.Location); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if _, err := client("wrong").Start(ctx, messages.KindInvoiceSummary, summaryParams); err == nil {
		t.Fatal("a wrong secret got a token")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "http.client.request.duration" {
				continue
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				method, _ := p.Attributes.Value("http.request.method")
				status, _ := p.Attributes.Value("http.response.status_code")
				kind, _ := p.Attributes.Value("billing.kind")
				for range p.Count {
					got = append(got, method.AsString()+" "+status.String()+" "+kind.AsString())
				}
			}
		}
	}
	sort.Strings(got)
	want := []string{"GET 200 invoice-summary", "GET 429 invoice-summary", "POST 202 invoice-summary"}
	if len(got) != len(want) {
		t.Fatalf("recorded %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("recorded %v, want %v", got, want)
			break
		}
	}
}
