package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func TestInvalidRequestsAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := func(id string) map[string]any {
		return map[string]any{"version": 1, "id": id, "kind": "invoice-summary",
			"params": map[string]any{"billingAccountName": "12345678", "invoiceName": "G123456789"}}
	}
	with := func(id string, f func(map[string]any)) []byte {
		m := good(id)
		f(m)
		data, _ := json.Marshal(m)
		return data
	}
	cases := []struct {
		name  string
		id    string // the id the failure event carries ("" when none can be read)
		data  []byte
		field string
		rule  string
	}{
		{"bad json", "", []byte(`{"version":1,"id":`), "", "syntax"},
		{"unknown kind", "inv-kind", with("inv-kind", func(m map[string]any) { m["kind"] = "invoice-magic" }), "kind", "enum"},
		{"missing field", "inv-missing", with("inv-missing", func(m map[string]any) { delete(m["params"].(map[string]any), "invoiceName") }), "params.invoiceName", "required"},
		{"malformed field", "inv-pattern", with("inv-pattern", func(m map[string]any) { m["params"].(map[string]any)["billingAccountName"] = "../../etc" }), "params.billingAccountName", "pattern"},
		{"field of another kind", "inv-other", with("inv-other", func(m map[string]any) { m["params"].(map[string]any)["downloadToken"] = "DRS_1" }), "params.downloadToken", "not_allowed"},
		{"unknown field", "inv-unknown", with("inv-unknown", func(m map[string]any) { m["colour"] = "blue" }), "colour", "unknown_field"},
		{"wrong version", "inv-version", with("inv-version", func(m map[string]any) { m["version"] = 2 }), "version", "version"},
		{"bad deadline", "inv-deadline", with("inv-deadline", func(m map[string]any) { m["deadline"] = "tomorrow" }), "deadline", "format"},
		{"unknown profile", "inv-profile", with("inv-profile", func(m map[string]any) { m["profile"] = "nobody" }), "", ""},
	}
	ctx := context.Background()
	// A request larger than the worker takes is refused by the work stream
	// itself: the publisher learns at once, and nothing is kept.
	big := with("inv-big", func(m map[string]any) { m["labels"] = map[string]string{"pad": strings.Repeat("x", 70<<10)} })
	_, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request("invoice-summary"), "", big, nil)
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Errorf("oversized request: publish error %v, want the stream's size refusal", err)
	}
	for _, c := range cases {
		hdr := nats.Header{"X-Upstream": []string{"case " + c.name}}
		if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request("invoice-summary"), "", c.data, hdr); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	for _, c := range cases {
		o := b.wait(c.id, eventTimeout)
		f := o.Failed
		if f == nil {
			t.Fatalf("%s: want a failure event, got %+v", c.name, o.Completed)
		}
		wantCode := messages.CodeInvalidRequest
		if c.name == "unknown profile" {
			wantCode = messages.CodeUnknownProfile
		}
		if f.Code != wantCode || f.Retryable || f.Message == "" {
			t.Errorf("%s: failure = %+v", c.name, f)
		}
		if c.rule != "" && !hasField(f.Fields, c.field, c.rule) {
			t.Errorf("%s: fields %+v lack %s/%s", c.name, f.Fields, c.field, c.rule)
		}
	}

	// Each is kept, payload and headers intact, in the dead-letter stream.
	dls, err := b.stack.Client.DeadLetters(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(cases))
	}
	byHeader := map[string]client.DeadLetter{}
	for _, dl := range dls {
		byHeader[dl.Header.Get("X-Upstream")] = dl
	}
	for _, c := range cases {
		dl, ok := byHeader["case "+c.name]
		if !ok {
			t.Errorf("%s: no dead letter", c.name)
			continue
		}
		if string(dl.Data) != string(c.data) || dl.Code == "" || dl.Error == "" || !strings.HasPrefix(dl.OriginalSubject, "billing.requests.") {
			t.Errorf("%s: dead letter = code %q error %q subject %q, payload kept %v", c.name, dl.Code, dl.Error, dl.OriginalSubject, string(dl.Data) == string(c.data))
		}
	}
	if calls := b.emu.Calls(); len(calls) != 0 {
		t.Errorf("the emulator saw %d calls for invalid requests", len(calls))
	}
	// Nothing is left to be redelivered.
	js, _ := jetstream.New(b.stack.Conn)
	cons, err := js.Consumer(ctx, "BILLING_WORK", worker.RequestsConsumer)
	if err != nil {
		t.Fatal(err)
	}
	testwait.ForNoError(t, 5*time.Second, "the requests consumer empty", func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("it still holds messages: %+v", info)
		}
		return nil
	})
}

func hasField(fields []messages.FieldError, field, rule string) bool {
	for _, f := range fields {
		if f.Field == field && f.Rule == rule {
			return true
		}
	}
	return false
}

// A request redelivered while its operation waits for a poll resumes the
// stored operation: no second POST.
func TestRedeliveryWhileWaitingResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("2"), emulator.OK())
	req := sampleSummary(b.id(), inv)
	b.submit(req)
	waitState(t, b.stack.Client, req.ID, func(s stateView) bool { return s.Phase == string(operation.PhaseWaiting) })
	// The same request again, as a redelivery after a lost ack would bring it.
	if _, err := b.stack.Client.SubmitRaw(context.Background(), b.stack.Client.Layout().Request(req.Kind), "redelivered-"+req.ID, mustJSON(t, req), nil); err != nil {
		t.Fatal(err)
	}
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("want completion, got %+v", o.Failed)
	}
	posts := 0
	for _, c := range b.emu.CallsFor(inv) {
		if c.Phase == "start" {
			posts++
		}
	}
	if posts != 1 || o.Completed.AzureCalls != 2 {
		t.Errorf("%d POSTs and %d calls; want 1 and 2", posts, o.Completed.AzureCalls)
	}
}

// A request whose stored state shows a first POST in flight by a worker that
// died (its claim expired) is taken over: the call is made again (these
// calls only create a link), counted in the state; once the count of
// unanswered first calls reaches its bound, the request ends interrupted
// without another call.
func TestExpiredFirstCallIsRepeatedWithinItsBound(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	for _, tc := range []struct {
		name       string
		unanswered int // first calls already unanswered, the dead worker's included
		wantCalls  int
		want       messages.Code // "" for a completion
	}{
		{"repeated", 1, 1, ""},
		{"at the bound", 3, 0, messages.CodeInterrupted},
	} {
		inv := b.invoice()
		b.emu.Script(inv, emulator.OK())
		req := sampleSummary(b.id(), inv)
		st := operation.NewState(req, now.Add(-2*time.Minute), time.Hour, 24*time.Hour)
		st.Claim("dead-worker", now.Add(-2*time.Minute), now.Add(-time.Minute))
		st.Unanswered = tc.unanswered
		putState(t, b, st)
		b.submit(req)
		o := b.wait(req.ID, eventTimeout)
		switch {
		case tc.want == "" && o.Completed == nil:
			t.Errorf("%s: want a completion, got %+v", tc.name, o.Failed)
		case tc.want != "" && (o.Failed == nil || o.Failed.Code != tc.want || !o.Failed.Retryable):
			t.Errorf("%s: want %s, got %+v %+v", tc.name, tc.want, o.Completed, o.Failed)
		}
		if n := len(b.emu.CallsFor(inv)); n != tc.wantCalls {
			t.Errorf("%s: the emulator saw %d calls, want %d", tc.name, n, tc.wantCalls)
		}
		stored, err := b.stack.Client.Status(context.Background(), req.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.unanswered; stored.Unanswered != want && tc.want != "" || tc.want == "" && stored.Unanswered != tc.unanswered {
			t.Errorf("%s: %d unanswered calls stored", tc.name, stored.Unanswered)
		}
	}
}

// A first call that is never answered (Azure hangs) is sent at most
// max-unanswered-calls times, and the count is in the stored state.
func TestUnansweredFirstCallsAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, faultConfig, func(c *config.Config) { c.MaxUnanswered = 2 })
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK().After(3*time.Second))
	req := sampleSummary(b.id(), inv)
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeInterrupted {
		t.Fatalf("want interrupted, got %+v %+v", o.Completed, o.Failed)
	}
	if n := len(b.emu.CallsFor(inv)); n != 2 {
		t.Errorf("the emulator saw %d first calls, want 2", n)
	}
	stored, err := b.stack.Client.Status(context.Background(), req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Unanswered != 2 || stored.AzureCalls != 2 {
		t.Errorf("stored: %d unanswered, %d calls; want 2 and 2", stored.Unanswered, stored.AzureCalls)
	}
}

func putState(t *testing.T, b *testBundle, st operation.State) {
	t.Helper()
	js, _ := jetstream.New(b.stack.Conn)
	kv, err := js.KeyValue(context.Background(), b.stack.Client.Layout().StateBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), st.Request.ID, mustJSON(t, st)); err != nil {
		t.Fatal(err)
	}
}
