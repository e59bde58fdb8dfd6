package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// runCollections measures many collections at once under the global
// window (collections-in-flight): o.manyN collections of o.manyDocs
// documents each, published together, the emulator answering every
// download with 202 + Retry-After then 200, each call after
// o.collLatency. It reports the wall time against the ideal for the
// window, the most downloads open at once (from the emulator's log)
// against the window, each collection's time to its event, and single
// requests' latency meanwhile.
func runCollections(ctx context.Context, o options, r *report) error {
	ra := strconv.Itoa(int(o.collRetryAfter / time.Second))
	r.printf("\n## 6b. Many collections at once (%d collections of %d documents; each download 202 Retry-After %s, then 200; every call answered after %s)\n\n",
		o.manyN, o.manyDocs, ra, o.collLatency)
	r.printf("One stack in this process (embedded nats-server, the emulator, one worker of concurrency 64, `collection-window` 16). " +
		"Every collection is published at once; the global window (`collections-in-flight`) bounds their children in flight together.\n\n")
	r.printf("Ideal = ceil(all documents / global window) x (latency + Retry-After + latency). Most open = the most downloads started " +
		"and not yet answered 200 at once, in the emulator's log (never above the window). Collections = time from publish to each " +
		"collection's event (p50 / max). Single requests: one `invoice-summary` every 200 ms while they run, publish to event.\n\n")
	r.printf("| global window | collections x documents | wall time | ideal | wall / ideal | most open | collections p50 / max | single requests: n, p50 / p99 / max | RSS after (peak) |\n" +
		"|---|---|---|---|---|---|---|---|---|\n")
	for _, window := range o.manyWindows {
		if err := collectionsRun(ctx, o, r, window, ra); err != nil {
			return fmt.Errorf("global window %d: %w", window, err)
		}
	}
	return nil
}

func collectionsRun(ctx context.Context, o options, r *report, window int, ra string) error {
	progress("collections: %d x %d documents, global window %d", o.manyN, o.manyDocs, window)
	def := []emulator.Reply{emulator.Accepted(ra).After(o.collLatency), emulator.OK().After(o.collLatency)}
	b, err := startBench(ctx, o.dir, "colls", 64, def, func(c *config.Config) {
		c.CollectionWindow = 16
		c.CollectionsInFlight = window
		c.MaxDocuments = max(o.manyDocs, 1)
	})
	if err != nil {
		return err
	}
	defer b.close()
	b.s.Emulator.SetDefault(def...)
	b.s.Emulator.SetListing(collectionPageSize, o.manyDocs) // one month: manyDocs invoices of one document
	w, err := b.s.Client.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	total := o.manyN * o.manyDocs
	rounds := (total + window - 1) / window
	ideal := time.Duration(rounds) * (2*o.collLatency + o.collRetryAfter)
	wctx, cancel := context.WithTimeout(ctx, timeoutFor(total, 3*ideal+time.Minute))
	defer cancel()

	var (
		mu     sync.Mutex
		sentAt = map[string]time.Time{}
		colls  = map[string]bool{}
	)
	start := time.Now()
	for i := range o.manyN {
		account := strconv.Itoa(60000000 + i)
		b.s.Emulator.Script(account, emulator.OK().After(o.collLatency))
		req := messages.Request{Version: 1, ID: fmt.Sprintf("bench-colls-%d-%d", window, i), Kind: messages.KindCollection,
			Params: messages.Params{BillingAccountName: account, PeriodStartDate: "2024-01-01", PeriodEndDate: "2024-01-31",
				DocumentKinds: []string{messages.DocInvoice}}}
		mu.Lock()
		sentAt[req.ID], colls[req.ID] = time.Now(), true
		mu.Unlock()
		if _, err := b.s.Client.Submit(wctx, req, nil); err != nil {
			return err
		}
	}
	singleErr := make(chan error, 1)
	go func() {
		singleErr <- func() error {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := range o.collSingles {
				inv := devstack.InvoiceName("MNY", window*10000+i)
				b.s.Emulator.Script(inv, emulator.OK().After(o.collLatency))
				single := devstack.Sample(messages.KindInvoiceSummary, fmt.Sprintf("bench-many-single-%d-%d", window, i), inv)
				mu.Lock()
				sentAt[single.ID] = time.Now()
				mu.Unlock()
				if _, err := b.s.Client.Submit(wctx, single, nil); err != nil {
					return err
				}
				select {
				case <-wctx.Done():
					return wctx.Err()
				case <-tick.C:
				}
			}
			return nil
		}()
	}()
	var collTimes, singles durations
	for len(collTimes) < o.manyN || len(singles) < o.collSingles {
		ev, err := w.Next(wctx)
		if err != nil {
			return fmt.Errorf("waiting for events (%d of %d collections, %d of %d single requests ended): %w",
				len(collTimes), o.manyN, len(singles), o.collSingles, err)
		}
		mu.Lock()
		at, ok := sentAt[ev.ID]
		coll := colls[ev.ID]
		delete(sentAt, ev.ID)
		mu.Unlock()
		if !ok {
			continue // a child's event, or one seen twice
		}
		if ev.Completed == nil {
			return fmt.Errorf("%s failed: %+v", ev.ID, ev.Failed)
		}
		if coll {
			if s := ev.Completed.Collected; s == nil || s.Completed != o.manyDocs {
				return fmt.Errorf("collection %s: %+v", ev.ID, s)
			}
			collTimes = append(collTimes, time.Since(at))
		} else {
			singles = append(singles, time.Since(at))
		}
	}
	if err := <-singleErr; err != nil {
		return err
	}
	elapsed := time.Since(start)
	collTimes, singles = collTimes.sorted(), singles.sorted()
	open := map[string]bool{}
	most := 0
	for _, c := range b.s.Emulator.Calls() {
		switch {
		case c.Operation == emulator.OpAccountInvoiceList || c.Operation == emulator.OpInvoiceSummary:
		case c.Phase == emulator.PhaseStart && c.Accepted:
			open[c.OpID] = true
		case c.Status == http.StatusOK:
			delete(open, c.OpID)
		}
		most = max(most, len(open))
	}
	rss, peak := selfMemory()
	r.printf("| %d | %d x %d | %s | %s | %.2f | %d | %s / %s | %d: %s / %s / %s | %s (%s) |\n", window, o.manyN, o.manyDocs, secs(elapsed), secs(ideal),
		elapsed.Seconds()/ideal.Seconds(), most, secs(collTimes.quantile(.5)), secs(collTimes.quantile(1)),
		len(singles), ms(singles.quantile(.5)), ms(singles.quantile(.99)), ms(singles.quantile(1)), rss, peak)
	r.goal(most <= window, "collections (global window %d): at most %d downloads open at once", window, most)
	if most > window {
		return fmt.Errorf("%d downloads open at once, over the global window of %d", most, window)
	}
	return nil
}
