package worker_test

import (
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A rejected request is counted among the outcomes and logged, whether or
// not a collection made it: a collection's child rejected before it had an
// operation (here, for a profile this worker does not know) is one of the
// requests that ended failed.
func TestRejectedRequestsAreCounted(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	single := sampleSummary(b.id(), b.invoice())
	single.Profile = "nowhere"
	child := sampleSummary(b.id(), b.invoice())
	child.Profile = "nowhere"
	child.Collection = &messages.ChildOf{ID: b.id(), Index: 3}
	for _, req := range []messages.Request{single, child} {
		b.submit(req)
		if o := b.wait(req.ID, eventTimeout); o.Failed == nil || o.Failed.Code != messages.CodeUnknownProfile {
			t.Fatalf("request %s: want unknown_profile, got %+v %+v", req.ID, o.Completed, o.Failed)
		}
	}
	// The count is added just after the event goes out.
	code := attribute.String("billing.code", string(messages.CodeUnknownProfile))
	var n int64
	testwait.For(t, eventTimeout, "the rejection counted", func() bool {
		var rm metricdata.ResourceMetrics
		if err := b.reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		n = counterSum(rm, "billing.requests.outcomes", code)
		return n >= 2
	})
	if n != 2 {
		t.Errorf("outcomes{unknown_profile} = %d, want 2 (one of them a collection's child)", n)
	}
	logged := map[string]bool{}
	for _, line := range b.logs.lines() {
		var rec struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
			Code      string `json:"code"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request rejected" && rec.Code == string(messages.CodeUnknownProfile) {
			logged[rec.RequestID] = true
		}
	}
	if !logged[single.ID] || !logged[child.ID] {
		t.Errorf("rejections logged for %v; want %s and the child %s", logged, single.ID, child.ID)
	}
}
