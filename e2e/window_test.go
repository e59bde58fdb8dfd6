package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// Twelve collections sharing a global window of 6 across two worker
// processes, both killed (SIGKILL) during the fan-out and restarted:
// before the kill the downloads open at once never exceed the window;
// afterwards every collection ends with exactly one event and every
// document, and the window's entry ends empty (no slot leaked).
func TestGlobalWindowSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	// Not parallel: it runs two worker processes and a NATS server.
	const window, collections, docs = 6, 12, 4
	e := newEnv(t)
	ns := startNATS(t, "window-nats", filepath.Join(t.TempDir(), "js"))
	settings := []string{"BILLING_COLLECTIONS_IN_FLIGHT=" + strconv.Itoa(window), "BILLING_COLLECTION_WINDOW=4"}
	workers := []*proc{e.worker(t, "window-worker-a", ns.url(), settings...), e.worker(t, "window-worker-b", ns.url(), settings...)}
	_, js := connect(t, ns.url())
	l := messages.NewLayout("")
	waitStream(t, js, l.WorkStream(), 30*time.Second)

	e.emu.SetDefault(emulator.Accepted("1"), emulator.OK())
	e.emu.SetListing(50, docs) // one month: docs invoices of one Invoice each
	var reqs []messages.Request
	for i := range collections {
		reqs = append(reqs, messages.Request{Version: 1, ID: fmt.Sprintf("window-kill-%02d", i), Kind: messages.KindCollection,
			Params: messages.Params{BillingAccountName: strconv.Itoa(41000000 + i), PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31",
				DocumentKinds: []string{messages.DocInvoice}}})
	}
	publishAll(t, js, reqs)

	downloads := func(calls []emulator.Call) (n int) {
		for _, c := range calls {
			if c.Phase == emulator.PhaseStart && c.Operation != emulator.OpAccountInvoiceList {
				n++
			}
		}
		return n
	}
	if err := testwait.Until(time.Minute, "a third of the downloads", func() bool {
		checkAlive(t, workers...)
		return downloads(e.emu.Calls()) >= collections*docs/3
	}); err != nil {
		t.Fatalf("%v\n%s", err, workers[0].tail())
	}
	before := e.emu.Calls()
	for _, w := range workers {
		_ = w.signal(t, syscall.SIGKILL, 5*time.Second) // killed: its exit error is expected
	}
	for _, w := range workers {
		w.start(t)
	}

	var counts map[string]int
	if err := testwait.Until(3*time.Minute, "every collection's event", func() bool {
		counts, _ = eventCounts(t, js)
		checkAlive(t, workers...)
		for _, r := range reqs {
			if counts[r.ID] == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("%v\n%s", err, workers[0].tail())
	}
	for _, r := range reqs {
		ev := collectionEvent(t, js, r.ID)
		if counts[r.ID] != 1 || ev.Collected == nil || ev.Collected.Completed != docs {
			t.Errorf("collection %s: %d events, %+v", r.ID, counts[r.ID], ev.Collected)
		}
	}
	// Every slot came back, without waiting for the tidying (every 30 s)
	// to find a leak: the ends and redeliveries give them back.
	var s operation.Slots
	if err := testwait.UntilNoError(20*time.Second, "the window empty", func() error {
		kv, err := js.KeyValue(context.Background(), l.CollectionBucket())
		if err != nil {
			return err
		}
		entry, err := kv.Get(context.Background(), operation.SlotsKey)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(entry.Value(), &s); err != nil {
			return err
		}
		if s.InUse() != 0 || len(s.Waiting) != 0 {
			return errors.New("not empty")
		}
		return nil
	}); err != nil {
		t.Errorf("%v: %+v", err, s)
	}
	// Over the whole run the figure is an upper bound only: a download
	// accepted by Azure just before its worker was killed, with the answer
	// never stored, is started again and the first one stays open in the
	// log for ever; and children published by a killed worker but not yet
	// recorded may run uncounted for a while (docs/contract.md, "The
	// global window"). So it is reported, not asserted.
	mostBefore, mostAll := mostOpen(before), mostOpen(e.emu.Calls())
	t.Logf("%d collections of %d, window %d, two SIGKILLs: at most %d downloads open at once before the kill, %d over the whole run",
		collections, docs, window, mostBefore, mostAll)
	if mostBefore > window {
		t.Errorf("%d downloads open at once before the kill, over the window of %d", mostBefore, window)
	}
}

// mostOpen is the most downloads open at once in the emulator's log
// (started, not yet answered 200).
func mostOpen(calls []emulator.Call) int {
	open := map[string]bool{}
	most := 0
	for _, c := range calls {
		switch {
		case c.Operation == emulator.OpAccountInvoiceList:
		case c.Phase == emulator.PhaseStart && c.Accepted:
			open[c.OpID] = true
		case c.Status == http.StatusOK:
			delete(open, c.OpID)
		}
		most = max(most, len(open))
	}
	return most
}
