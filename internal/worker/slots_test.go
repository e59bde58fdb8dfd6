package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// mostOpen is the most downloads open at once in the emulator's log
// (started, not yet answered 200), leaving out the listings and the
// invoices in skip.
func mostOpen(calls []emulator.Call, skip map[string]bool) int {
	open := map[string]bool{}
	most := 0
	for _, c := range calls {
		switch {
		case c.Operation == emulator.OpAccountInvoiceList || skip[c.InvoiceName]:
		case c.Phase == emulator.PhaseStart && c.Accepted:
			open[c.OpID] = true
		case c.Status == http.StatusOK:
			delete(open, c.OpID)
		}
		most = max(most, len(open))
	}
	return most
}

// oneMonth is a collection of one month's invoices only.
func oneMonth(id, account, month string) messages.Request {
	req := collectionRequest(id, account)
	req.Params.DocumentKinds = []string{messages.DocInvoice}
	req.Params.PeriodStartDate, req.Params.PeriodEndDate = month+"-01", month+"-28"
	return req
}

// A hundred collections at once share the global window: never more
// downloads open at once than it allows (from the emulator's log), every
// collection completes, and single requests published meanwhile are not
// held behind them.
func TestCollectionsShareTheGlobalWindow(t *testing.T) {
	t.Parallel()
	const window = 12
	b := setup(t, func(c *config.Config) { c.CollectionWindow = 4; c.CollectionsInFlight = window })
	b.emu.SetListing(50, 2) // two invoices a month: two documents a collection
	var colls []messages.Request
	for i := range 100 {
		req := oneMonth(b.id(), strconv.Itoa(30000000+i), "2026-01")
		b.submit(req)
		colls = append(colls, req)
	}
	// Once they are fanning out (every slot taken, collections waiting:
	// what enqueue stats shows), single requests come.
	testwait.ForNoError(t, eventTimeout, "the window full, collections waiting", func() error {
		cw, err := b.stack.Client.CollectionsWindow(context.Background())
		if err == nil && (cw.InUse != window || cw.Waiting == 0) {
			err = fmt.Errorf("%d slots in use, %d collections waiting", cw.InUse, cw.Waiting)
		}
		return err
	})
	singles := map[string]time.Time{}
	skip := map[string]bool{}
	for range 10 {
		inv := b.invoice()
		skip[inv] = true
		b.emu.Script(inv, emulator.OK())
		req := sampleSummary(b.id(), inv)
		singles[req.ID] = time.Now()
		b.submit(req)
	}
	var latencies []time.Duration
	for id, sent := range singles {
		o := b.wait(id, eventTimeout)
		if o.Completed == nil {
			t.Fatalf("single request %s: %+v", id, o.Failed)
		}
		latencies = append(latencies, o.Completed.CompletedAt.Sub(sent))
	}
	var last time.Time
	for _, c := range colls {
		o := b.wait(c.ID, 8*eventTimeout)
		if o.Completed == nil || o.Completed.Collected.Documents != 2 || o.Completed.Collected.Completed != 2 {
			t.Fatalf("collection %s: %+v %+v", c.ID, o.Completed, o.Failed)
		}
		if o.Completed.CompletedAt.After(last) {
			last = o.Completed.CompletedAt
		}
	}
	slices.Sort(latencies)
	for id := range singles {
		if o := b.wait(id, eventTimeout); !o.Completed.CompletedAt.Before(last) {
			t.Errorf("single request %s completed at %s, after the last collection (%s)", id, o.Completed.CompletedAt, last)
		}
	}
	most := mostOpen(b.emu.Calls(), skip)
	t.Logf("100 collections, 200 downloads: at most %d open at once (window %d); single requests' latency: median %s, max %s",
		most, window, latencies[len(latencies)/2], latencies[len(latencies)-1])
	if most > window {
		t.Errorf("%d downloads open at once, over the global window of %d", most, window)
	}
	if most < window/2 {
		t.Errorf("at most %d downloads open at once: the collections did not run side by side (window %d)", most, window)
	}
	// Every slot came back.
	testwait.For(t, eventTimeout, "the window empty", func() bool {
		s := readWindow(t, b)
		return s.InUse() == 0 && len(s.Waiting) == 0
	})
	if cw, err := b.stack.Client.CollectionsWindow(context.Background()); err != nil || cw != (client.CollectionsWindow{}) {
		t.Errorf("the client's view of an empty window: %+v %v", cw, err)
	}
}

// A small collection started after a big one has taken every slot gets
// slots as the big one's children end (fewest held first): it ends while
// most of the big one is still to do.
func TestSmallCollectionIsNotHeldBehindABigOne(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.CollectionWindow = 4; c.CollectionsInFlight = 4 })
	b.emu.SetListing(50, 4)
	big := oneMonth(b.id(), "20000021", "2025-01")
	big.Params.PeriodEndDate = "2025-12-31" // twelve months: 48 documents
	b.submit(big)
	testwait.For(t, eventTimeout, "the big collection holding every slot", func() bool {
		st, err := b.stack.Client.Status(context.Background(), big.ID)
		return err == nil && st.Collection != nil && st.Collection.InFlight == 4
	})
	small := oneMonth(b.id(), "20000022", "2026-01") // four documents
	b.submit(small)
	o := b.wait(small.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected.Completed != 4 {
		t.Fatalf("small collection: %+v %+v", o.Completed, o.Failed)
	}
	st, err := b.stack.Client.Status(context.Background(), big.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Collection == nil {
		t.Fatalf("the big collection had ended (%s) before the small one", st.Phase)
	}
	done := st.Collection.Completed + st.Collection.Failed
	t.Logf("when the small collection ended, the big one had %d of %d children ended", done, st.Collection.Total)
	if st.Phase != "collecting" || done > st.Collection.Total/2 {
		t.Errorf("the small collection ended after the big one had %d of %d children ended (phase %s)", done, st.Collection.Total, st.Phase)
	}
	if o := b.wait(big.ID, 8*eventTimeout); o.Completed == nil || o.Completed.Collected.Completed != 48 || !o.Completed.CompletedAt.After(b.wait(small.ID, 0).Completed.CompletedAt) {
		t.Errorf("big collection: %+v %+v", o.Completed, o.Failed)
	}
}

// Slots held by a collection that is gone (its worker killed after taking
// them, its state expired) are given back by the tidying, and the
// collection waiting for them goes on.
func TestLeakedSlotsComeBack(t *testing.T) {
	t.Parallel()
	stack, err := devstack.Start(devstack.Options{
		Dir:    t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Configure: func(c *config.Config) {
			c.Concurrency, c.MaxAckPending = 16, 64
			roomyThrottle(c)
			c.CollectionsInFlight = 3
		},
		WorkerOptions: []worker.Option{worker.WithSlotTidying(200 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := watch(t, stack)
	b.emu.SetListing(50, 2)
	// Every slot held by collections with no state, and one of them
	// waiting: what a worker killed at the wrong time leaves.
	kv := collectionsBucket(t, b)
	leaked, _ := json.Marshal(operation.Slots{Held: map[string]operation.Holding{"gone-1": {N: 2, Rev: 7}, "gone-2": {N: 1, Rev: 3}},
		Waiting: []operation.Waiter{{ID: "gone-1", Want: 2, Since: time.Now()}}})
	if _, err := kv.Put(context.Background(), worker.SlotsKey, leaked); err != nil {
		t.Fatal(err)
	}
	req := oneMonth(b.id(), "20000031", "2026-01")
	b.submit(req)
	if o := b.wait(req.ID, eventTimeout); o.Completed == nil || o.Completed.Collected.Completed != 2 {
		t.Fatalf("collection: %+v %+v", o.Completed, o.Failed)
	}
	testwait.For(t, eventTimeout, "the leaked slots given back", func() bool {
		s := readWindow(t, b)
		return s.InUse() == 0 && len(s.Waiting) == 0
	})
}

func collectionsBucket(t *testing.T, b *testBundle) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), messages.NewLayout(messages.DefaultPrefix).CollectionBucket())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func readWindow(t *testing.T, b *testBundle) operation.Slots {
	t.Helper()
	var s operation.Slots
	entry, err := collectionsBucket(t, b).Get(context.Background(), worker.SlotsKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(entry.Value(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}
