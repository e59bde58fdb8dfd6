package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// Every event carries the CloudEvents 1.0 attributes as headers (binary
// content mode), besides the worker's own: a completion, and the rejection
// of an invalid request.
func TestImmediateEventsCarryCloudEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	b.submit(req)
	bad := b.id()
	layout := b.stack.Client.Layout()
	body := []byte(`{"version":1,"id":"` + bad + `","kind":"invoice-summary","params":{}}`)
	if _, err := b.stack.Client.SubmitRaw(context.Background(), layout.Request(messages.KindInvoiceSummary), "", body, nil); err != nil {
		t.Fatal(err)
	}

	check := func(name string, got, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: header %s = %q, want %q", name, k, got[k], v)
			}
		}
	}
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("want a completion, got %+v", o.Failed)
	}
	hdr := func(keys ...string) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = o.Header.Get(k)
		}
		return m
	}
	ceKeys := []string{messages.HeaderCESpecVersion, messages.HeaderCEID, messages.HeaderCEType, messages.HeaderCESource,
		messages.HeaderCETime, messages.HeaderContentType, messages.HeaderCEDataSchema}
	check("completed", hdr(ceKeys...), map[string]string{
		messages.HeaderCESpecVersion: "1.0",
		messages.HeaderCEID:          "outcome." + req.ID,
		messages.HeaderCEType:        "com.azbilling.worker.download.completed",
		messages.HeaderCESource:      "/billing-worker/" + layout.Prefix,
		messages.HeaderCETime:        o.Completed.CompletedAt.UTC().Format(time.RFC3339Nano),
		messages.HeaderContentType:   "application/json",
		messages.HeaderCEDataSchema:  messages.SchemaIDCompleted,
	})
	if at, err := time.Parse(time.RFC3339, o.Header.Get(messages.HeaderCETime)); err != nil || !at.Equal(o.Completed.CompletedAt) {
		t.Errorf("ce-time %q: %v", o.Header.Get(messages.HeaderCETime), err)
	}

	o = b.wait(bad, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeInvalidRequest {
		t.Fatalf("want an invalid_request failure, got %+v %+v", o.Completed, o.Failed)
	}
	check("failed", hdr(ceKeys...), map[string]string{
		messages.HeaderCESpecVersion: "1.0",
		messages.HeaderCEType:        "com.azbilling.worker.download.failed",
		messages.HeaderCESource:      "/billing-worker/" + layout.Prefix,
		messages.HeaderCETime:        o.Failed.FailedAt.UTC().Format(time.RFC3339Nano),
		messages.HeaderContentType:   "application/json",
		messages.HeaderCEDataSchema:  messages.SchemaIDFailed,
	})
	if id := o.Header.Get(messages.HeaderCEID); !strings.HasPrefix(id, "rejected.") || id != o.Header.Get(messages.HeaderMsgID) {
		t.Errorf("rejection ce-id %q, Nats-Msg-Id %q", id, o.Header.Get(messages.HeaderMsgID))
	}
}
