package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A collection over three months, six listing pages and about eighty
// documents, with both worker processes killed (SIGKILL) during the
// listing and again during the fan-out, and restarted: one collection
// event, every listed document a child exactly once with exactly one
// event, and the listing resumed from its stored page.
func TestCollectionSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	e := newEnv(t)
	ns := startNATS(t, "coll-nats", filepath.Join(t.TempDir(), "js"))
	workers := []*proc{e.worker(t, "coll-worker-a", ns.url()), e.worker(t, "coll-worker-b", ns.url())}
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	const account = "40000001"
	e.emu.SetListing(5, 10)
	// Slow pages, so that the kill lands during the listing.
	e.emu.Script(account, emulator.OK().After(700*time.Millisecond))
	req := messages.Request{Version: 1, ID: "coll-kill", Kind: messages.KindCollection,
		Params: messages.Params{BillingAccountName: account, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}}
	publishAll(t, js, []messages.Request{req})

	killAll := func(when string) {
		for _, w := range workers {
			_ = w.signal(t, syscall.SIGKILL, 5*time.Second) // killed: its exit error is expected
		}
		for _, w := range workers {
			w.start(t)
		}
		t.Logf("killed both workers %s", when)
	}
	waitCalls := func(what string, ok func([]emulator.Call) bool) {
		t.Helper()
		if err := testwait.Until(time.Minute, what, func() bool {
			checkAlive(t, workers...)
			return ok(e.emu.Calls())
		}); err != nil {
			t.Fatalf("%v\n%s", err, workers[0].tail())
		}
	}
	pages := func(calls []emulator.Call) (n int) {
		for _, c := range calls {
			if c.Operation == emulator.OpAccountInvoiceList {
				n++
			}
		}
		return n
	}
	downloads := func(calls []emulator.Call) (n int) {
		for _, c := range calls {
			if c.Phase == emulator.PhaseStart && c.Operation != emulator.OpAccountInvoiceList {
				n++
			}
		}
		return n
	}
	waitCalls("the second page", func(c []emulator.Call) bool { return pages(c) >= 2 })
	killAll("during the listing")
	waitCalls("twenty downloads", func(c []emulator.Call) bool { return downloads(c) >= 20 })
	killAll("during the fan-out")

	// The collection's event.
	var counts map[string]int
	if err := testwait.Until(3*time.Minute, "the collection's event", func() bool {
		counts, _ = eventCounts(t, js)
		checkAlive(t, workers...)
		return counts[req.ID] > 0
	}); err != nil {
		t.Fatalf("%v\n%s", err, workers[0].tail())
	}
	ev := collectionEvent(t, js, req.ID)
	sum := ev.Collected
	if counts[req.ID] != 1 || sum == nil || sum.Invoices != 30 || sum.Documents < 60 || len(sum.Children) != sum.Documents {
		t.Fatalf("collection: %d events, summary %+v", counts[req.ID], sum)
	}
	// Every child exactly once, each with one event.
	ids := map[string]bool{}
	gone := 0
	for _, c := range sum.Children {
		if ids[c.ID] {
			t.Errorf("child %s listed twice", c.ID)
		}
		ids[c.ID] = true
		if counts[c.ID] != 1 {
			t.Errorf("child %s (%s %s): %d events", c.ID, c.InvoiceName, c.DocumentName, counts[c.ID])
		}
		wantFailed := strings.HasPrefix(c.DocumentName, emulator.MissingDocumentPrefix)
		if wantFailed {
			gone++
		}
		if (c.Outcome == messages.OutcomeFailed) != wantFailed {
			t.Errorf("child %s (%s): %s %s", c.ID, c.DocumentName, c.Outcome, c.Message)
		}
	}
	if len(counts) != 1+len(sum.Children) {
		t.Errorf("%d request ids with events, want the collection and its %d children", len(counts), len(sum.Children))
	}
	// Each document was started at least once and, after a kill mid-call,
	// at most max-unanswered-calls (3) times; accepted once but for a kill
	// between Azure's answer and the stored state.
	type doc struct{ op, inv, name string }
	started, accepted := map[doc]int{}, map[doc]int{}
	firstPages := 0
	for _, c := range e.emu.Calls() {
		switch {
		case c.Operation == emulator.OpAccountInvoiceList && c.Phase == emulator.PhaseStart:
			firstPages++
		case c.Phase == emulator.PhaseStart:
			d := doc{c.Operation, c.InvoiceName, c.DocumentName}
			started[d]++
			if c.Accepted {
				accepted[d]++
			}
		}
	}
	repeated := 0
	for d, n := range started {
		if n > 3 {
			t.Errorf("%+v started %d times", d, n)
		}
		if n > 1 {
			repeated++
		}
	}
	if len(started) != sum.Documents {
		t.Errorf("%d documents started, %d listed", len(started), sum.Documents)
	}
	if firstPages > 2 {
		t.Errorf("the listing started over %d times: it should resume from its stored page", firstPages)
	}
	t.Logf("collection after two SIGKILLs of both workers: %d invoices, %d documents (%d failed as listed but gone: %d), %d listing calls (%d from the first page), %d documents started more than once",
		sum.Invoices, sum.Documents, sum.Failed, gone, pages(e.emu.Calls()), firstPages, repeated)
	checkAlive(t, workers...)
}

// collectionEvent reads the completion event of collection id.
func collectionEvent(t *testing.T, js jetstream.JetStream, id string) messages.Completed {
	t.Helper()
	l := messages.NewLayout("")
	var m *jetstream.RawStreamMsg
	retry(t, func(ctx context.Context) error {
		s, err := js.Stream(ctx, l.EventsStream())
		if err == nil {
			m, err = s.GetLastMsgForSubject(ctx, l.Event(messages.OutcomeCompleted, messages.KindCollection, id))
		}
		return err
	})
	var ev messages.Completed
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}
