package client

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// fullState is a stored state with every field set.
func fullState(t *testing.T) operation.State {
	t.Helper()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	req := messages.Request{ID: "op-1", Kind: messages.KindInvoice, Profile: "default",
		Params: messages.Params{BillingAccountName: "1234", InvoiceName: "G000000001"}, Labels: map[string]string{"team": "a"}}
	st := operation.State{
		Version: operation.StateVersion, Request: req, Phase: operation.PhaseWaiting,
		AcceptedAt: at, Deadline: at.Add(time.Hour), Location: "https://azure.example/op?token=x", Started: true,
		AzureCalls: 4, Polls: 3, Unanswered: 1, Failures: 2, BadAnswers: 1,
		LastStatus: 429, LastError: "throttled", LastErrorClass: operation.ClassAzure,
		LastWait: 3 * time.Second, LastWaitSource: operation.SourceThrottle, NextAt: at.Add(time.Minute), Wake: 7,
		ClaimedBy: "worker-1", ClaimedUntil: at.Add(30 * time.Second),
		Listed:      []messages.Invoice{{Name: "G1"}},
		Found:       []messages.Discovered{{ID: "/providers/Microsoft.Billing/billingAccounts/1", Name: "1"}},
		Collection:  &operation.Collection{Pages: []int{2, 1}, Invoices: 2, Total: 3, Spawned: 3, Ended: []byte{0b101}, Completed: 1, Failed: 1},
		Throttled:   &operation.Hold{Scope: "default.billing.reads", Until: at.Add(time.Minute), Slot: true, PausedUntil: at.Add(50 * time.Second)},
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "vendor=1",
		Completed: &messages.Completed{ID: "op-1", URL: "https://docs.example/x.pdf"},
		Failed:    &messages.Failed{ID: "op-1", Code: messages.CodeInternal},
		UpdatedAt: at.Add(2 * time.Second),
		Archiving: &operation.Archiving{Event: messages.Completed{ID: "op-1"}, NeedLink: true, Attempts: 2, Relinks: 1, LastError: "reset"},
		Calls: []operation.CallRecord{{At: at, Poll: true, Status: 429, Outcome: "throttled", Wait: time.Second,
			WaitSource: "retry-after", Error: "429"}},
		CallsDropped: 5,
	}
	v := reflect.ValueOf(st)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullState leaves operation.State.%s unset: set it, and decide whether Operation shows it", v.Type().Field(i).Name)
		}
	}
	return st
}

// internalOnly are the stored fields Operation leaves out, by JSON name.
var internalOnly = []string{"version", "location", "wake", "listed", "found"}

func jsonMap(t *testing.T, v any) map[string]json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Operation shows every field of the stored state under the stored JSON
// name and value, except the worker's own bookkeeping; a field added to
// the stored state fails here until Operation takes it or it is listed
// as internal.
func TestOperationMirrorsStoredState(t *testing.T) {
	st := fullState(t)
	op := operationOf(st)
	stored, got := jsonMap(t, st), jsonMap(t, op)
	for k, v := range stored {
		if slices.Contains(internalOnly, k) {
			if _, ok := got[k]; ok {
				t.Errorf("%s is internal, yet Operation shows it", k)
			}
			continue
		}
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("Operation has no %q", k)
		case k == "collection" || k == "archiving":
			// Shown in part: checked below.
		case string(g) != string(v):
			t.Errorf("%s: Operation shows %s, stored %s", k, g, v)
		}
	}
	for k := range got {
		if _, ok := stored[k]; !ok {
			t.Errorf("Operation has %q, which is not stored", k)
		}
	}
	want := CollectionState{Invoices: 2, Total: 3, Spawned: 3, Completed: 1, Failed: 1, InFlight: 1}
	if *op.Collection != want {
		t.Errorf("collection %+v, want %+v", *op.Collection, want)
	}
	if a := op.Archiving; *a != (Archiving{NeedLink: true, Attempts: 2, Relinks: 1, LastError: "reset"}) {
		t.Errorf("archiving %+v", *a)
	}
	if p := op.Progress(); p != (Progress{Documents: 3, Completed: 1, Failed: 1, InFlight: 1}) {
		t.Errorf("progress %+v", p)
	}
	// The polling URL may carry a session token: never shown.
	if b, _ := json.Marshal(op); strings.Contains(string(b), "token=x") {
		t.Errorf("Operation shows the polling URL: %s", b)
	}
	// Every phase of the stored state has its client phase.
	for _, p := range []operation.Phase{operation.PhaseStarting, operation.PhaseWaiting, operation.PhasePolling, operation.PhaseArchiving,
		operation.PhaseCollecting, operation.PhaseCompleted, operation.PhaseFailed} {
		cp := Phase(p)
		if cp.Terminal() != p.Terminal() || cp.Claimed() != p.Claimed() {
			t.Errorf("phase %s: terminal %v claimed %v, stored phase says %v %v", p, cp.Terminal(), cp.Claimed(), p.Terminal(), p.Claimed())
		}
		if !slices.Contains([]Phase{PhaseStarting, PhaseWaiting, PhasePolling, PhaseArchiving, PhaseCollecting, PhaseCompleted, PhaseFailed}, cp) {
			t.Errorf("no client constant for phase %s", p)
		}
	}
}
