package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// An estate of twenty scopes over three months, with both worker
// processes killed (SIGKILL) during the discovery and again during the
// fan-out of its collections, and restarted: one estate event, every
// scope in it with the outcome the emulator's estate gives it, each
// scope's collection made once (one event under its id) and none lost.
func TestEstateSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	e := newEnv(t)
	ns := startNATS(t, "estate-nats", filepath.Join(t.TempDir(), "js"))
	workers := []*proc{e.worker(t, "estate-worker-a", ns.url(), "BILLING_ESTATE_WINDOW=3"),
		e.worker(t, "estate-worker-b", ns.url(), "BILLING_ESTATE_WINDOW=3")}
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	est, want := devstack.SampleEstate(20)
	e.emu.SetEstate(est)
	e.emu.SetListing(3, 1) // three to a page: several pages of accounts and of subscriptions
	// Slow discovery pages, so that the kill lands during the discovery.
	e.emu.Script(emulator.OpBillingAccountList, emulator.OK().After(700*time.Millisecond))
	e.emu.Script(emulator.OpSubscriptionList, emulator.OK().After(300*time.Millisecond))
	req := devstack.Sample(messages.KindEstate, "estate-kill", "")
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
	count := func(op string, phase string) (n int) {
		for _, c := range e.emu.Calls() {
			if c.Operation == op && (phase == "" || c.Phase == phase) {
				n++
			}
		}
		return n
	}
	waitCalls := func(what string, ok func() bool) {
		t.Helper()
		if err := testwait.Until(time.Minute, what, func() bool {
			checkAlive(t, workers...)
			return ok()
		}); err != nil {
			t.Fatalf("%v\n%s", err, workers[0].tail())
		}
	}
	waitCalls("the second page of accounts", func() bool { return count(emulator.OpBillingAccountList, "") >= 2 })
	killAll("during the discovery")
	waitCalls("five collections started", func() bool {
		return count(emulator.OpAccountInvoiceList, emulator.PhaseStart)+count(emulator.OpSubscriptionInvoiceList, emulator.PhaseStart) >= 5
	})
	killAll("during the fan-out")

	var counts map[string]int
	if err := testwait.Until(4*time.Minute, "the estate's event", func() bool {
		counts, _ = eventCounts(t, js)
		checkAlive(t, workers...)
		return counts[req.ID] > 0
	}); err != nil {
		t.Fatalf("%v\n%s", err, workers[0].tail())
	}
	ev := estateEvent(t, js, req.ID)
	sum := ev.Estate
	if counts[req.ID] != 1 || sum == nil || sum.Scopes != len(want) {
		t.Fatalf("estate: %d events, summary %+v", counts[req.ID], sum)
	}
	got := map[string]messages.ScopeOutcome{}
	for _, s := range sum.Children {
		if _, dup := got[s.Scope+"/"+s.ID]; dup {
			t.Errorf("scope %s %s listed twice", s.Scope, s.ID)
		}
		got[s.Scope+"/"+s.ID] = s
	}
	collections := 0
	for _, w := range want {
		s, ok := got[w.Kind+"/"+w.ID]
		switch {
		case !ok:
			t.Errorf("scope %s %s lost", w.Kind, w.ID)
			continue
		case s.Outcome != w.Outcome:
			t.Errorf("scope %s %s: %s %s %s, want %s", w.Kind, w.ID, s.Outcome, s.Code, s.Message, w.Outcome)
		}
		if w.Outcome == messages.OutcomeSkipped {
			continue
		}
		collections++
		if id := messages.EstateChildID(req.ID, w.Kind, w.ID); s.CollectionID != id || counts[id] != 1 {
			t.Errorf("scope %s: collection %s (want %s) with %d events, want one", w.ID, s.CollectionID, id, counts[id])
		}
		// Its listing's first page: once, or again after a kill mid-call
		// (at most max-unanswered-calls).
		first := 0
		for _, c := range e.emu.CallsFor(w.ID) {
			if (c.Operation == emulator.OpAccountInvoiceList || c.Operation == emulator.OpSubscriptionInvoiceList) && c.Phase == emulator.PhaseStart {
				first++
			}
		}
		if first < 1 || first > 3 {
			t.Errorf("scope %s: its listing started %d times", w.ID, first)
		}
	}
	// Every event is the estate's, one of its collections' or one of
	// their documents': no collection of a scope the estate does not list.
	docs := 0
	for _, s := range sum.Children {
		docs += s.Documents
	}
	if len(counts) != 1+collections+docs {
		t.Errorf("%d request ids with events, want the estate, its %d collections and their %d documents", len(counts), collections, docs)
	}
	t.Logf("estate after two SIGKILLs of both workers: %d scopes (%d completed, %d failed, %d skipped), %d documents, %d discovery calls",
		sum.Scopes, sum.Completed, sum.Failed, sum.Skipped, sum.Documents,
		count(emulator.OpBillingAccountList, "")+count(emulator.OpSubscriptionList, ""))
	checkAlive(t, workers...)
}

// estateEvent reads the completion event of estate id.
func estateEvent(t *testing.T, js jetstream.JetStream, id string) messages.Completed {
	t.Helper()
	l := messages.NewLayout("")
	var m *jetstream.RawStreamMsg
	retry(t, func(ctx context.Context) error {
		s, err := js.Stream(ctx, l.EventsStream())
		if err == nil {
			m, err = s.GetLastMsgForSubject(ctx, l.Event(messages.OutcomeCompleted, messages.KindEstate, id))
		}
		return err
	})
	var ev messages.Completed
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}
