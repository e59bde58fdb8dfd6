package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// collectionPageSize is the listing's page size in the collection part
// (Azure's largest, top=50).
const collectionPageSize = 50

// runCollection measures collections of o.collN documents (invoices of one
// document each, so that the count is exact), the emulator answering every
// download with 202 + Retry-After then 200, each call after
// o.collLatency: wall time from the request to the collection's event
// against the ideal for the collection window, Azure calls per document,
// and the memory of the process holding the worker and the server.
func runCollection(ctx context.Context, o options, r *report) error {
	ra := strconv.Itoa(int(o.collRetryAfter / time.Second))
	r.printf("\n## 6. Collections (%s documents; each download 202 Retry-After %s, then 200; every call answered after %s)\n\n",
		thousands(float64(o.collN)), ra, o.collLatency)
	r.printf("One stack in this process (embedded nats-server, the emulator, one worker of concurrency 64). The collection lists " +
		"invoices of one document each (`documentKinds: [\"Invoice\"]`), 50 to a page, so the count of documents is exact.\n\n")
	r.printf("Ideal = listing + ceil(documents / window) x (latency + Retry-After + latency): the collection window bounds the downloads " +
		"in flight, and each takes a start call, the wait Azure asked for, and a poll. Listing = pages x latency, one page after another.\n\n")
	r.printf("Single requests: while the collection fans out, one `invoice-summary` request every 200 ms, Azure answering 200 after the " +
		"latency; their time from publish to completion event (p50 / p99 / max), against the latency alone.\n\n")
	r.printf("| window | documents | pages | wall time | ideal | wall / ideal | Azure calls per document (min / max) | single requests meanwhile: n, p50 / p99 / max | RSS after (peak) | Go heap after |\n" +
		"|---|---|---|---|---|---|---|---|---|---|\n")
	for _, window := range o.collWindows {
		if err := collectionRun(ctx, o, r, window, ra); err != nil {
			return fmt.Errorf("window %d: %w", window, err)
		}
	}
	r.printf("\nEach download made exactly one start call and the polls Azure asked for (one), checked per document in the emulator's log.\n")
	return nil
}

func collectionRun(ctx context.Context, o options, r *report, window int, ra string) error {
	progress("collection: %d documents, window %d", o.collN, window)
	def := []emulator.Reply{emulator.Accepted(ra).After(o.collLatency), emulator.OK().After(o.collLatency)}
	b, err := startBench(ctx, o.dir, "coll", 64, def, func(c *config.Config) {
		c.CollectionWindow = window
		c.MaxDocuments = max(o.collN, 1)
	})
	if err != nil {
		return err
	}
	defer b.close()
	// Warm-up left the default at 200: the download script again, and a
	// listing of collN invoices in one month apiece at most 100.
	b.s.Emulator.SetDefault(def...)
	perMonth := min(o.collN, 100)
	months := (o.collN + perMonth - 1) / perMonth
	b.s.Emulator.SetListing(collectionPageSize, perMonth)
	const account = "50000001"
	// The listing's pages take the latency too.
	b.s.Emulator.Script(account, emulator.OK().After(o.collLatency))
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, months, -1)
	req := messages.Request{Version: 1, ID: fmt.Sprintf("bench-coll-%d", window), Kind: messages.KindCollection,
		Params: messages.Params{BillingAccountName: account, PeriodStartDate: from.Format(time.DateOnly),
			PeriodEndDate: to.Format(time.DateOnly), DocumentKinds: []string{messages.DocInvoice}}}

	w, err := b.s.Client.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	start := time.Now()
	if _, err := b.s.Client.Submit(ctx, req, nil); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeoutFor(o.collN, time.Duration(o.collN/window+2)*(o.collRetryAfter+4*o.collLatency)))
	defer cancel()

	// Single requests published while the collection fans out, one every
	// 200 ms: Azure answers each at once (after the latency).
	var (
		mu      sync.Mutex
		sentAt  = map[string]time.Time{}
		singles durations
	)
	singleErr := make(chan error, 1)
	go func() {
		singleErr <- func() error {
			for {
				st, err := b.s.Client.Status(wctx, req.ID)
				if err == nil && st.Phase == "collecting" {
					break
				}
				select {
				case <-wctx.Done():
					return wctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := range o.collSingles {
				inv := devstack.InvoiceName("SGL", window*10000+i)
				b.s.Emulator.Script(inv, emulator.OK().After(o.collLatency))
				single := devstack.Sample(messages.KindInvoiceSummary, fmt.Sprintf("bench-single-%d-%d", window, i), inv)
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
	collDone := false
	for !collDone || len(singles) < o.collSingles {
		ev, err := w.Next(wctx)
		if err != nil {
			return fmt.Errorf("waiting for the collection's event (%d of %d single requests ended): %w", len(singles), o.collSingles, err)
		}
		mu.Lock()
		at, single := sentAt[ev.ID]
		mu.Unlock()
		switch {
		case single:
			if ev.Completed == nil {
				return fmt.Errorf("single request %s failed: %+v", ev.ID, ev.Failed)
			}
			singles = append(singles, time.Since(at))
		case ev.ID == req.ID:
			if ev.Completed == nil || ev.Completed.Collected == nil {
				return fmt.Errorf("the collection failed: %+v", ev.Failed)
			}
			collDone = true
			if len(singles) < o.collSingles {
				// The collection ended first: the singles are not measured
				// while it runs any more; finish them anyway.
				progress("collection ended before %d of the single requests", o.collSingles-len(singles))
			}
		}
		if collDone && len(singles) == 0 && o.collSingles == 0 {
			break
		}
	}
	if err := <-singleErr; err != nil {
		return err
	}
	elapsed := time.Since(start)
	singles = singles.sorted()
	ev, _, err := b.s.Client.Last(ctx, req.ID)
	if err != nil {
		return err
	}
	sum := ev.Completed.Collected
	if sum.Documents != o.collN || sum.Completed != o.collN {
		return fmt.Errorf("%d documents, %d completed, want %d", sum.Documents, sum.Completed, o.collN)
	}
	// Calls per document, from the emulator's log.
	per := map[string]int{}
	starts := map[string]int{}
	pages := 0
	for _, c := range b.s.Emulator.Calls() {
		if c.Operation == emulator.OpAccountInvoiceList {
			pages++
			continue
		}
		if c.Operation == emulator.OpInvoiceSummary {
			continue // a single request
		}
		key := c.InvoiceName + "/" + c.DocumentName
		per[key]++
		if c.Phase == emulator.PhaseStart {
			starts[key]++
		}
	}
	lo, hi := 1<<30, 0
	for k, n := range per {
		lo, hi = min(lo, n), max(hi, n)
		if starts[k] != 1 || n != 2 {
			return fmt.Errorf("document %s: %d calls (%d start calls), want 1 start and 1 poll", k, n, starts[k])
		}
	}
	if len(per) != o.collN {
		return fmt.Errorf("%d documents downloaded, want %d", len(per), o.collN)
	}
	rounds := (o.collN + window - 1) / window
	ideal := time.Duration(pages)*o.collLatency + time.Duration(rounds)*(2*o.collLatency+o.collRetryAfter)
	rss, peak := selfMemory()
	heap := heapInUse()
	r.printf("| %d | %s | %d | %s | %s | %.2f | %d / %d | %d: %s / %s / %s | %s (%s) | %s |\n", window, thousands(float64(o.collN)), pages, secs(elapsed), secs(ideal),
		elapsed.Seconds()/ideal.Seconds(), lo, hi, len(singles), ms(singles.quantile(.5)), ms(singles.quantile(.99)), ms(singles.quantile(1)), rss, peak, heap)
	r.goal(lo == 2 && hi == 2, "collection (window %d): exactly 1 + the polls Azure asked for per document: %d to %d calls", window, lo, hi)
	return nil
}

// selfMemory reads this process's resident set and its peak.
func selfMemory() (rss, peak string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?", "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = fmt.Sprintf("%.0f MB", kb/1024)
		case "VmHWM:":
			peak = fmt.Sprintf("%.0f MB", kb/1024)
		}
	}
	return rss, peak
}

// heapInUse is the Go heap in use after a collection.
func heapInUse() string {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return fmt.Sprintf("%.0f MB", float64(m.HeapInuse)/(1<<20))
}
