package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// invalidToken is what stands for an id or kind that breaks its rule in
// subjects and headers (messages.Invalid).
const invalidToken = "~invalid"

// Ids that break the id rule never reach a subject or a header as they
// are: each request gets one failure event on the placeholder's subject and
// one dead letter, and the worker keeps working (before the fix, a 4,100
// character id closed the worker's NATS connection for good).
func TestPoisonIDsNeverReachSubjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	raw := func(id string) []byte {
		return []byte(`{"version":1,"id":"` + id + `","kind":"invoice-summary","params":{"billingAccountName":"12345678","invoiceName":"G123456789"}}`)
	}
	cases := []struct {
		name string
		json string // the id as written in the request's JSON
		id   string // the id as decoded (and as the event's body carries it)
	}{
		{"4100 characters", strings.Repeat("a", 4100), strings.Repeat("a", 4100)},
		{"129 characters", strings.Repeat("b", 129), strings.Repeat("b", 129)},
		{"NUL", `nul\u0000id`, "nul\x00id"},
		{"CRLF", `crlf\r\nBilling-Outcome: completed`, "crlf\r\nBilling-Outcome: completed"},
		{"invalid UTF-8", "bad\xffid", "bad\uFFFDid"},
		{"emoji", "id-😀", "id-😀"},
		{"slash", "a/b", "a/b"},
		{"dollar", "$JS", "$JS"},
		{"dot", "a.b", "a.b"},
		{"the placeholder itself", invalidToken, invalidToken},
	}
	ctx := context.Background()
	for _, c := range cases {
		if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request(messages.KindInvoiceSummary), "", raw(c.json), nil); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	// A valid request behind them still completes: the worker's connection
	// is alive.
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK())
	good := sampleSummary(b.id(), inv)
	b.submit(good)
	if o := b.wait(good.ID, eventTimeout); o.Completed == nil {
		t.Fatalf("valid request: %+v", o.Failed)
	}
	for _, c := range cases {
		o := b.wait(c.id, eventTimeout)
		if o.Failed == nil || o.Failed.Code != messages.CodeInvalidRequest || !hasField(o.Failed.Fields, "id", "pattern") {
			t.Errorf("%s: want invalid_request naming id, got %+v %+v", c.name, o.Completed, o.Failed)
			continue
		}
		if want := "billing.events.failed.invoice-summary." + invalidToken; o.Subject != want {
			t.Errorf("%s: event subject %q, want %q", c.name, o.Subject, want)
		}
		if h := o.Header.Get(messages.HeaderRequestID); h != invalidToken {
			t.Errorf("%s: %s header %q, want %q", c.name, messages.HeaderRequestID, h, invalidToken)
		}
		if n := len(b.events(c.id)); n != 1 {
			t.Errorf("%s: %d events, want 1", c.name, n)
		}
	}
	dls, err := b.stack.Client.DeadLetters(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != len(cases) {
		t.Errorf("%d dead letters, want %d", len(dls), len(cases))
	}
	for _, dl := range dls {
		if !strings.HasPrefix(dl.Subject, "billing.deadletter.invoice-summary.") {
			t.Errorf("dead letter on %q", dl.Subject)
		}
	}
	if m := messages.IDToken(invalidToken); m != invalidToken || messages.ValidID(invalidToken) {
		t.Errorf("the placeholder must not be a valid id")
	}
}

// A request id reused with other content is refused with id_conflict and
// dead-lettered, whether or not the publish came within the duplicate
// window; an identical resubmission gets the one outcome the id has.
func TestIDReusedWithOtherContentIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK())
	first := sampleSummary(b.id(), inv)
	b.submit(first)
	if o := b.wait(first.ID, eventTimeout); o.Completed == nil {
		t.Fatalf("first: %+v", o.Failed)
	}
	calls := len(b.emu.Calls())

	// The same id for another kind, through the client (within the
	// window), and with the bare id as message id (as after the window).
	other := first
	other.Kind = messages.KindInvoice
	if _, err := b.stack.Client.Submit(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	otherParams := first
	otherParams.Params.InvoiceName = "G999999999"
	if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request(otherParams.Kind), "late-"+first.ID, mustJSON(t, otherParams), nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, eventTimeout, "three events for the reused id", func() bool { return len(b.events(first.ID)) >= 3 })
	evs := b.events(first.ID)
	conflicts := 0
	for _, o := range evs[1:] {
		if o.Failed != nil && o.Failed.Code == "id_conflict" && strings.Contains(o.Failed.Message, first.ID) {
			conflicts++
		}
	}
	if conflicts != 2 {
		t.Errorf("want two id_conflict failures after the completion, got %d of %d events", conflicts, len(evs))
	}
	if evs[1].Subject != "billing.events.failed.invoice."+first.ID && evs[2].Subject != "billing.events.failed.invoice."+first.ID {
		t.Errorf("no failure on the second kind's subject: %s, %s", evs[1].Subject, evs[2].Subject)
	}
	dls, err := b.stack.Client.DeadLetters(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].Code != "id_conflict" || dls[1].Code != "id_conflict" {
		t.Errorf("want 2 id_conflict dead letters, got %+v", dls)
	}
	if n := len(b.emu.Calls()); n != calls {
		t.Errorf("the conflicting requests made %d Azure calls", n-calls)
	}

	// An identical resubmission (other labels only) is no conflict: the
	// operation's outcome stands, and no new call is made.
	same := first
	same.Labels = map[string]string{"again": "yes"}
	if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request(same.Kind), "again-"+first.ID, mustJSON(t, same), nil); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, b.stack.Client, first.ID, func(s stateView) bool { return s.Phase == string(operation.PhaseCompleted) })
	if st.AzureCalls != 1 || len(b.emu.Calls()) != calls {
		t.Errorf("identical resubmission: %d calls stored, %d made", st.AzureCalls, len(b.emu.Calls())-calls)
	}
	if n, err := countDeadLetters(b); err != nil || n != 2 {
		t.Errorf("identical resubmission was dead-lettered (%d dead letters, %v)", n, err)
	}
}

func countDeadLetters(b *testBundle) (int, error) {
	js, _ := jetstream.New(b.stack.Conn)
	s, err := js.Stream(context.Background(), b.stack.Client.Layout().DeadLetterStream())
	if err != nil {
		return 0, err
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

// A rejected message redelivered after the dead-letter stream's duplicate
// window is still kept once (before the fix, a redelivery after the window
// wrote a second dead letter).
func TestLateRedeliveryKeepsOneDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.DuplicateWindow = time.Second })
	ctx := context.Background()
	js, _ := jetstream.New(b.stack.Conn)
	events := b.stack.Client.Layout().EventsStream()
	setMaxMsgSize := func(n int32) {
		s, err := js.Stream(ctx, events)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.MaxMsgSize = n
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	// The failure event cannot be published at first, so the rejected
	// message comes back after the dead letter was written.
	setMaxMsgSize(16)
	id := b.id()
	if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request(messages.KindInvoice), "", []byte(`{"version":1,"id":"`+id+`","kind":"invoice"}`), nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, eventTimeout, "a dead letter", func() bool { n, _ := countDeadLetters(b); return n >= 1 })
	// The redelivery comes 5 s later, well past the 1 s window.
	setMaxMsgSize(-1)
	o := b.wait(id, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeInvalidRequest {
		t.Fatalf("want invalid_request, got %+v %+v", o.Completed, o.Failed)
	}
	if n, err := countDeadLetters(b); err != nil || n != 1 {
		t.Errorf("%d dead letters (%v), want 1", n, err)
	}
	// The redelivery found the dead letter kept and the event not stored:
	// it stored the event, once.
	if n := countEvents(t, b.stack.Conn, events)[id]; n != 1 {
		t.Errorf("%d rejection events stored, want 1", n)
	}
}
