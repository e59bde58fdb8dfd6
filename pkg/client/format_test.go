package client_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// An operation held by the shared throttle says so, with its scope and
// whether the scope is paused; the scopes print one line each.
func TestHumanThrottle(t *testing.T) {
	t.Parallel()
	now := time.Now()
	until := now.Add(time.Minute)
	st := client.Operation{Phase: client.PhaseWaiting, NextAt: until, LastWaitSource: "throttle",
		Throttled: &client.Hold{Scope: "default.billing.writes", Until: until, Slot: true, PausedUntil: until}}
	if out := client.HumanState(st); !strings.Contains(out, "throttled:") || !strings.Contains(out, "scope default.billing.writes, paused by Azure until") {
		t.Errorf("state:\n%s", out)
	}
	scopes := []client.ThrottleScope{{Scope: "default.billing.reads", Rate: "25/1s", Burst: 250, Calls: 3,
		PausedUntil: until, PauseSource: "retry-after",
		Remaining: &client.ThrottleRemaining{Header: "x-ms-ratelimit-remaining-tenant-reads", Value: 7, At: now}, Tokens: 12}}
	scopes = append(scopes, client.ThrottleScope{Scope: "default.billing.writes", Rate: "10/1s", Burst: 200,
		Learned: &client.ThrottleLearned{Rate: 5.024, Burst: 10, Source: "remaining", At: now}})
	out := client.HumanThrottle(scopes, now)
	for _, want := range []string{"throttle default.billing.reads: configured 25/1s burst 250; learning (first call); 12 free; 3 calls", "PAUSED until", "Azure reported 7 left",
		"throttle default.billing.writes: configured 10/1s burst 200; learned 5.02/s burst 10 (from remaining)"} {
		if !strings.Contains(out, want) {
			t.Errorf("%q not in %q", want, out)
		}
	}
	if client.HumanThrottle(nil, now) != "throttle: no scope yet\n" {
		t.Error("no scopes")
	}
}

// An event's trace id is shown whatever the case of its traceparent
// header.
func TestHumanTraceID(t *testing.T) {
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT"} {
		o := client.Outcome{Failed: nil, Header: nats.Header{key: {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}
		if out := o.Human(); !strings.Contains(out, "trace id:   0af7651916cd43dd8448eb211c80319c") {
			t.Errorf("%s: %q", key, out)
		}
	}
	if out := (client.Outcome{Header: nats.Header{"traceparent": {"garbage"}}}).Human(); strings.Contains(out, "trace id") {
		t.Errorf("a malformed traceparent: %q", out)
	}
}

func TestHumanReportOfSeveralFiles(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := &messages.Completed{ID: "c", Kind: messages.KindCostDetails, AcceptedAt: now, CompletedAt: now, AzureCalls: 2,
		Files: []messages.ReportFile{{URL: "https://s/1.csv?sig=a", ByteCount: 5, Archive: &messages.Archive{Name: "cost-details/x/1.csv", Size: 5, SHA256: "ab"}},
			{URL: "https://s/2.csv?sig=b", ByteCount: 7}}}
	out := client.Outcome{Completed: c}.Human()
	if !strings.Contains(out, "files:      2") || !strings.Contains(out, "cost-details/x/1.csv (5 bytes") || !strings.Contains(out, "https://s/2.csv?sig=b (7 bytes announced)") {
		t.Errorf("%s", out)
	}
	if out := (client.Outcome{Completed: &messages.Completed{ID: "d", Kind: messages.KindCostDetails, NoData: true}}).Human(); !strings.Contains(out, "no data") {
		t.Errorf("%s", out)
	}
}

// A collection's event says what it skipped, and why.
func TestHumanCollectionSkipped(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := &messages.Completed{ID: "c", Kind: messages.KindCollection, AcceptedAt: now, CompletedAt: now, Collected: &messages.CollectionSummary{
		Documents: 1, Completed: 1, Invoices: 1, Listed: 3, Skipped: 2, SkippedDocuments: []messages.SkippedDocument{
			{InvoiceName: "G1", DocumentName: "ST-G1", DocumentKind: "Statement", Reason: messages.SkipKindNotRequested},
			{InvoiceName: "G1", DocumentKind: "Invoice", Reason: messages.SkipExternal, ExternalURL: "https://nfe.invalid/1"},
		}}}
	out := client.Outcome{Completed: c}.Human()
	for _, want := range []string{"skipped:    2 of 3 listed", "G1 ST-G1 (Statement): kind_not_requested", "G1  (Invoice): external"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
