package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// A request id resubmitted after its operation ended gets the outcome it
// has, at any age of the operation, and the events stream keeps one
// outcome event per id. These tests shorten the duplicate window of both
// streams to resubmitWindow and resubmit within it, past it, and after the
// stored event is gone.

// resubmitWindow is the duplicate window (work and events streams).
const resubmitWindow = time.Second

// prompt is how soon a waiter must have the outcome of an ended request
// (enqueue waits 30 min by default).
const prompt = 5 * time.Second

// errStreamNotMatch is the server's error for a message whose
// Nats-Expected-Stream names another stream (JSStreamNotMatchErr).
const errStreamNotMatch jetstream.ErrorCode = 10060

func shortWindows(c *config.Config) { c.DuplicateWindow = resubmitWindow }

// ended is a request whose operation has ended, and what it ended with.
type ended struct {
	b      *testBundle
	req    messages.Request
	inv    string
	first  client.Outcome
	calls  int       // Azure calls made for it
	sentAt time.Time // when its last submission was stored (at the latest)
	// storedAt is when the events stream last stored its event (at the
	// latest): the events stream's duplicate window starts then, which
	// under load can be well after the submission.
	storedAt time.Time
}

// endOne submits a request that Azure answers with replies and waits for
// its outcome.
func endOne(b *testBundle, replies ...emulator.Reply) *ended {
	b.t.Helper()
	e := &ended{b: b, inv: b.invoice()}
	b.emu.Script(e.inv, replies...)
	e.req = sampleSummary(b.id(), e.inv)
	b.submit(e.req)
	e.sentAt = time.Now()
	e.first = b.wait(e.req.ID, eventTimeout)
	e.storedAt = time.Now() // the waiter reads the events stream
	e.calls = len(b.emu.CallsFor(e.inv))
	return e
}

// resubmit submits the same request again and reports whether the work
// stream dropped it as a duplicate.
func (e *ended) resubmit() bool {
	e.b.t.Helper()
	dup, err := e.b.stack.Client.Submit(context.Background(), e.req, nil)
	if err != nil {
		e.b.t.Fatal(err)
	}
	e.sentAt = time.Now() // acknowledged: the work stream has it
	return dup
}

// windowMargin is how long past a duplicate window pastWindows waits more:
// the server forgets a message id on a timer, which fires up to 50 ms after
// the window and later on a loaded machine.
const windowMargin = 500 * time.Millisecond

// pastWindows returns once the duplicate windows that started with the last
// submission (work stream), and with the last stored event (events stream),
// have passed. The event is stored after the submission, by as much as the
// handling took: a window counted from the submission alone can still hold
// the event's message id, and then an event stored again is taken for a
// duplicate.
func (e *ended) pastWindows() {
	last := e.sentAt
	if e.storedAt.After(last) {
		last = e.storedAt
	}
	// Waiting for a time window to pass: nothing to observe instead.
	time.Sleep(time.Until(last.Add(resubmitWindow + windowMargin)))
}

// noNewCalls checks that no resubmission made Azure calls.
func (e *ended) noNewCalls() {
	e.b.t.Helper()
	if n := len(e.b.emu.CallsFor(e.inv)); n != e.calls {
		e.b.t.Errorf("Azure saw %d calls for %s, want %d: a resubmission called it again", n, e.req.ID, e.calls)
	}
}

// awaitOutcome waits for req's outcome as enqueue -wait does: from the
// stored state when its operation has ended, else from the new events.
func awaitOutcome(ctx context.Context, c *client.Client, w *client.Watcher, req messages.Request) (client.Outcome, error) {
	if o, ok, err := c.Outcome(ctx, req); err != nil || ok {
		return o, err
	}
	for {
		o, err := w.Next(ctx)
		if err != nil || o.ID == req.ID {
			return o, err
		}
	}
}

// submitAndAwait watches, resubmits, and waits for the outcome, failing
// unless it comes within prompt. It returns the outcome and whether the
// resubmission was dropped as a duplicate.
func (e *ended) submitAndAwait() (client.Outcome, bool) {
	t := e.b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), prompt)
	defer cancel()
	w, err := e.b.stack.Client.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	dup := e.resubmit()
	start := time.Now()
	o, err := awaitOutcome(ctx, e.b.stack.Client, w, e.req)
	if err != nil {
		t.Fatalf("no outcome for the resubmitted %s within %s: %v", e.req.ID, prompt, err)
	}
	t.Logf("resubmission (duplicate: %v) answered in %s", dup, time.Since(start).Round(time.Millisecond))
	sameEvent(t, o, e.first)
	return o, dup
}

// sameEvent checks that got is the event want: same subject and body.
func sameEvent(t *testing.T, got, want client.Outcome) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got.Data, &g); err != nil {
		t.Fatalf("event body %q: %v", got.Data, err)
	}
	_ = json.Unmarshal(want.Data, &w)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if got.Subject != want.Subject || string(gb) != string(wb) {
		t.Errorf("got event %s %s\nwant the first one %s %s", got.Subject, got.Data, want.Subject, want.Data)
	}
	for _, h := range []string{messages.HeaderRequestID, messages.HeaderKind, messages.HeaderOutcome,
		messages.HeaderCEID, messages.HeaderCEType, messages.HeaderCESource, messages.HeaderCETime, messages.HeaderCEDataSchema} {
		if got.Header != nil && got.Header.Get(h) != want.Header.Get(h) {
			t.Errorf("%s: %q, want %q", h, got.Header.Get(h), want.Header.Get(h))
		}
	}
}

// storedMsgIDs returns the Nats-Msg-Id of every event the events stream
// holds about id, in order.
func storedMsgIDs(t *testing.T, b *testBundle, id string) []string {
	t.Helper()
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := b.stack.Client.Layout()
	cons, err := js.OrderedConsumer(ctx, l.EventsStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{l.EventsFor(id)}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	return ids
}

// oneStored checks that the events stream holds exactly one event about
// id, its outcome.
func oneStored(t *testing.T, b *testBundle, id string) {
	t.Helper()
	if got := storedMsgIDs(t, b, id); len(got) != 1 || got[0] != "outcome."+id {
		t.Errorf("the events stream holds %q about %s, want one outcome event", got, id)
	}
	if n := countEvents(t, b.stack.Conn, b.stack.Client.Layout().EventsStream())[id]; n != 1 {
		t.Errorf("countEvents: %d events for %s, want 1", n, id)
	}
}

// subscribe is a consumer of the id's event subject with a plain (core)
// subscription, as `nats sub billing.events.*.*.<id>` is.
func subscribe(t *testing.T, b *testBundle, id string) *nats.Subscription {
	t.Helper()
	sub, err := b.stack.Conn.SubscribeSync(b.stack.Client.Layout().EventsFor(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.stack.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// oneCopy checks that sub receives the first event again, promptly, and
// once; it returns that copy.
func (e *ended) oneCopy(sub *nats.Subscription) *nats.Msg {
	t := e.b.t
	t.Helper()
	m, err := sub.NextMsg(prompt)
	if err != nil {
		t.Fatalf("the subscriber of %s got nothing within %s: %v", e.req.ID, prompt, err)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != "outcome."+e.req.ID {
		t.Errorf("copy has Nats-Msg-Id %q, want outcome.%s", got, e.req.ID)
	}
	sameEvent(t, client.Outcome{Subject: m.Subject, Header: m.Header, Data: m.Data}, e.first)
	// Long enough for a second copy, and for the stream to have taken (or
	// refused) the first.
	if extra, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("a second copy reached the subscriber: %s %s", extra.Subject, extra.Data)
	}
	return m
}

// (a) Within the work stream's window the resubmission never reaches the
// worker (the publish ack says duplicate): the waiter reads the outcome
// from the stored state.
func TestResubmitWithinTheWindow(t *testing.T) {
	t.Parallel()
	// A window the test surely stays within.
	b := setup(t, func(c *config.Config) { c.DuplicateWindow = time.Minute })
	e := endOne(b, emulator.OK())
	if e.first.Completed == nil {
		t.Fatalf("want a completion, got %+v", e.first.Failed)
	}
	if _, dup := e.submitAndAwait(); !dup {
		t.Errorf("the resubmission within the window was not a duplicate")
	}
	oneStored(t, b, e.req.ID)
	e.noNewCalls()
}

// (b) Past both streams' windows the worker sees the resubmission and
// sends the stored event again to live subscribers only: a subscriber that
// came after the first event gets one copy, a waiter gets the outcome, and
// the events stream still holds one event. Twice.
func TestResubmitAfterTheWindows(t *testing.T) {
	t.Parallel()
	b := setup(t, shortWindows)
	e := endOne(b, emulator.OK())
	if e.first.Completed == nil {
		t.Fatalf("want a completion, got %+v", e.first.Failed)
	}
	sub := subscribe(t, b, e.req.ID)
	var live *nats.Msg
	for range 2 {
		e.pastWindows()
		if _, dup := e.submitAndAwait(); dup {
			t.Fatalf("a resubmission past the window was dropped as a duplicate")
		}
		live = e.oneCopy(sub)
		oneStored(t, b, e.req.ID)
	}
	if n := len(b.events(e.req.ID)); n != 1 {
		t.Errorf("a watcher of the events stream saw %d events, want 1", n)
	}
	e.noNewCalls()

	// The copy is kept out of the stream by its Nats-Expected-Stream, not by
	// its message id (the events window has passed): the stream refuses it
	// when asked, and stores nothing.
	events := b.stack.Client.Layout().EventsStream()
	expected := live.Header.Get(jetstream.ExpectedStreamHeader)
	if expected == "" || expected == events {
		t.Fatalf("copy has Nats-Expected-Stream %q", expected)
	}
	js, _ := jetstream.New(b.stack.Conn)
	stream, err := js.Stream(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	before := stream.CachedInfo().State.Msgs
	m := nats.NewMsg(live.Subject)
	m.Data, m.Header = live.Data, live.Header
	m.Header.Set(jetstream.MsgIDHeader, "probe."+e.req.ID)
	reply, err := b.stack.Conn.RequestMsg(m, prompt)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil || ack.Error == nil || ack.Error.ErrorCode != errStreamNotMatch {
		t.Errorf("the stream answered %s, want error %d (expected stream does not match)", reply.Data, errStreamNotMatch)
	}
	if _, err := sub.NextMsg(prompt); err != nil {
		t.Errorf("the subscriber did not get the probe: %v", err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != before {
		t.Errorf("the events stream went from %d to %d messages", before, info.State.Msgs)
	}
}

// (c) When the events stream no longer holds the event (deleted here; aged
// out alike), a resubmission stores it again, once.
func TestResubmitAfterTheEventIsGone(t *testing.T) {
	t.Parallel()
	b := setup(t, shortWindows)
	e := endOne(b, emulator.OK())
	ctx := context.Background()
	js, _ := jetstream.New(b.stack.Conn)
	stream, err := js.Stream(ctx, b.stack.Client.Layout().EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, e.first.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, stored.Sequence); err != nil {
		t.Fatal(err)
	}
	if got := storedMsgIDs(t, b, e.req.ID); len(got) != 0 {
		t.Fatalf("still stored after the delete: %q", got)
	}
	sub := subscribe(t, b, e.req.ID)
	e.pastWindows()
	e.submitAndAwait()
	e.oneCopy(sub)
	testwait.For(t, prompt, "the second event", func() bool { return len(b.events(e.req.ID)) == 2 })
	e.storedAt = time.Now()
	oneStored(t, b, e.req.ID)

	// And once stored again, it is not stored a third time.
	e.pastWindows()
	e.submitAndAwait()
	e.oneCopy(sub)
	oneStored(t, b, e.req.ID)
	e.noNewCalls()
}

// A failure subject can also hold the rejection of a conflicting request
// with the same id and kind (id_conflict, its own message id), after the
// outcome: a resubmission finds the outcome behind it and stores nothing.
func TestResubmitAfterARejectionOnTheSameSubject(t *testing.T) {
	t.Parallel()
	b := setup(t, shortWindows)
	e := endOne(b, emulator.Fail(404, "InvoiceNotFound", "no such invoice"))
	if e.first.Failed == nil {
		t.Fatalf("want a failure, got %+v", e.first.Completed)
	}
	other := sampleSummary(e.req.ID, b.invoice())
	b.submit(other)
	testwait.For(t, eventTimeout, "the conflict's event", func() bool { return len(b.events(e.req.ID)) == 2 })
	if r := b.events(e.req.ID)[1]; r.Failed == nil || r.Failed.Code != messages.CodeIDConflict || r.Subject != e.first.Subject {
		t.Fatalf("want an id_conflict on %s, got %+v on %s", e.first.Subject, r.Failed, r.Subject)
	}
	if got := storedMsgIDs(t, b, e.req.ID); len(got) != 2 || got[0] != "outcome."+e.req.ID {
		t.Fatalf("stored %q, want the outcome and the rejection", got)
	}
	if _, ok, err := b.stack.Client.Outcome(context.Background(), other); ok || err != nil {
		t.Errorf("Outcome of the conflicting request = %v, %v; want none (the id holds another operation)", ok, err)
	}

	sub := subscribe(t, b, e.req.ID)
	e.pastWindows()
	e.submitAndAwait()
	e.oneCopy(sub)
	if got := storedMsgIDs(t, b, e.req.ID); len(got) != 2 || got[0] != "outcome."+e.req.ID || got[1] == got[0] {
		t.Errorf("stored %q, want the outcome and the rejection only", got)
	}
	e.noNewCalls()
}

// Client.Outcome reads an ended operation's event from its state, and
// nothing for an id that has none or has not ended.
func TestResubmitClientOutcome(t *testing.T) {
	t.Parallel()
	b := setup(t, shortWindows)
	ctx := context.Background()
	if _, ok, err := b.stack.Client.Outcome(ctx, sampleSummary(b.id(), b.invoice())); ok || err != nil {
		t.Errorf("Outcome of an unknown id = %v, %v", ok, err)
	}
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("30"), emulator.OK())
	req := sampleSummary(b.id(), inv)
	b.submit(req)
	testwait.For(t, eventTimeout, "the operation waiting", func() bool {
		st, err := b.stack.Client.Status(ctx, req.ID)
		return err == nil && st.Phase == "waiting"
	})
	if _, ok, err := b.stack.Client.Outcome(ctx, req); ok || err != nil {
		t.Errorf("Outcome of a waiting operation = %v, %v", ok, err)
	}
	if _, err := b.stack.Client.Status(ctx, "nobody"); !errors.Is(err, client.ErrNoState) {
		t.Errorf("Status of an unknown id: %v", err)
	}
}
