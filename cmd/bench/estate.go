package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/messages"
)

// runEstate measures an estate of o.estateScopes scopes (half billing
// accounts, half pay-as-you-go subscriptions) of o.estateDocs documents
// each, the worker's shared throttle at its defaults (Azure's documented
// budget) and the emulator enforcing the same budget: wall time from the
// request to the estate's event against the budget's lower bound, Azure
// calls per document, memory, and single requests' latency meanwhile.
func runEstate(ctx context.Context, o options, r *report) error {
	writes, reads := throttle.DefaultLimits()[throttle.BillingWrites], throttle.DefaultLimits()[throttle.BillingReads]
	r.printf("\n## 10. Estate (%d scopes of %d documents; throttle at Azure's documented budget: writes %s burst %d, reads %s burst %d)\n\n",
		o.estateScopes, o.estateDocs, writes.Rate, writes.Burst, reads.Rate, reads.Burst)
	r.printf("One stack in this process (embedded nats-server, the emulator, one worker of concurrency 64, estate-window %d, "+
		"collection-window 16). Half the scopes are billing accounts, half pay-as-you-go subscriptions; each lists %d invoices "+
		"of one document (`documentKinds: [\"Invoice\"]`) in one page, and each download answers 202 Retry-After 1, then 200, every "+
		"call after %s. The shared throttle runs at its defaults; the emulator's budget (every class) is the reads' documented one.\n\n",
		o.estateWindow, o.estateDocs, o.collLatency)
	r.printf("Budget's lower bound = the longer of the two classes' (calls - burst) / rate: the downloads' POSTs are writes, the polls, listings "+
		"and discovery pages reads. Windows' lower bound = the discovery pages, then ceil(scopes / estate-window) collections one after another, "+
		"each a listing page and ceil(documents / 16) rounds of POST, Retry-After and poll. Single requests: one `invoice-summary` every 500 ms while the estate runs (%d), publish to event.\n\n", o.estateSingles)

	progress("estate: %d scopes of %d documents", o.estateScopes, o.estateDocs)
	def := []emulator.Reply{emulator.Accepted("1").After(o.collLatency), emulator.OK().After(o.collLatency)}
	b, err := startBench(ctx, o.dir, "estate", 64, def, func(c *config.Config) {
		c.Throttle = true
		c.EstateWindow = o.estateWindow
		c.CollectionWindow = 16
	})
	if err != nil {
		return err
	}
	defer b.close()
	emu := b.s.Emulator
	emu.SetDefault(def...)
	emu.SetListing(50, o.estateDocs)
	emu.SetBudget(emulator.Budget{Rate: perSecond(reads.Rate), Burst: reads.Burst})
	var est emulator.Estate
	for i := range o.estateScopes {
		if i%2 == 0 {
			est.Accounts = append(est.Accounts, emulator.EstateAccount{Name: fmt.Sprintf("%d", 80000000+i),
				DisplayName: fmt.Sprintf("Enrollment %d", i), AgreementType: "EnterpriseAgreement"})
		} else {
			est.Subscriptions = append(est.Subscriptions, emulator.EstateSubscription{
				ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", 0x90000000+i, i), DisplayName: fmt.Sprintf("PAYG %d", i), QuotaID: "PayAsYouGo_2014-09-01"})
		}
	}
	emu.SetEstate(est)
	// Calls before the estate (the warm-up) are not its.
	before := len(emu.Calls())
	req := messages.Request{Version: 1, ID: "bench-estate", Kind: messages.KindEstate,
		Params: messages.Params{PeriodStartDate: "2026-10-01", PeriodEndDate: "2026-10-31", DocumentKinds: []string{messages.DocInvoice}}}
	w, err := b.s.Client.Watch(ctx)
	if err != nil {
		return err
	}
	defer w.Stop()
	docs := o.estateScopes * o.estateDocs
	// The bound, with the calls known in advance: a POST and a poll per
	// document, a listing page per scope, the discovery pages.
	discovery := (len(est.Accounts)+49)/50 + (len(est.Subscriptions)+49)/50 + 2
	budget := max(classBound(docs, writes), classBound(docs+o.estateScopes+discovery, reads))
	// The windows' bound: the collections one window after another, each
	// its listing page, then its downloads (a POST, Retry-After, a poll)
	// sixteen at a time.
	rounds := (o.estateScopes + o.estateWindow - 1) / o.estateWindow
	perColl := o.collLatency + time.Duration((o.estateDocs+15)/16)*(2*o.collLatency+time.Second)
	window := time.Duration(discovery)*o.collLatency + time.Duration(rounds)*perColl
	bound := max(budget, window)
	wctx, cancel := context.WithTimeout(ctx, 2*bound+timeoutFor(docs, 2*time.Minute))
	defer cancel()
	start := time.Now()
	if _, err := b.s.Client.Submit(ctx, req, nil); err != nil {
		return err
	}
	var (
		mu      sync.Mutex
		sentAt  = map[string]time.Time{}
		singles durations
		stop    = make(chan struct{})
	)
	singleErr := make(chan error, 1)
	go func() {
		singleErr <- func() error {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for i := range o.estateSingles {
				select {
				case <-wctx.Done():
					return wctx.Err()
				case <-stop:
					return nil
				case <-tick.C:
				}
				inv := devstack.InvoiceName("EST", i)
				emu.Script(inv, emulator.OK().After(o.collLatency))
				single := devstack.Sample(messages.KindInvoiceSummary, fmt.Sprintf("bench-estate-single-%d", i), inv)
				mu.Lock()
				sentAt[single.ID] = time.Now()
				mu.Unlock()
				if _, err := b.s.Client.Submit(wctx, single, nil); err != nil {
					return err
				}
			}
			return nil
		}()
	}()
	var sum *messages.EstateSummary
	var elapsed time.Duration
	for sum == nil {
		ev, err := w.Next(wctx)
		if err != nil {
			close(stop)
			return fmt.Errorf("waiting for the estate's event: %w", err)
		}
		mu.Lock()
		at, single := sentAt[ev.ID]
		mu.Unlock()
		switch {
		case single && ev.Completed != nil:
			mu.Lock()
			singles = append(singles, time.Since(at))
			mu.Unlock()
		case single:
			close(stop)
			return fmt.Errorf("single request %s failed: %+v", ev.ID, ev.Failed)
		case ev.ID == req.ID:
			if ev.Completed == nil || ev.Completed.Estate == nil {
				close(stop)
				return fmt.Errorf("the estate failed: %+v", ev.Failed)
			}
			elapsed, sum = time.Since(start), ev.Completed.Estate
		}
	}
	close(stop)
	if err := <-singleErr; err != nil {
		return err
	}
	if sum.Scopes != o.estateScopes || sum.Completed != o.estateScopes || sum.Documents != docs || sum.DocumentsCompleted != docs {
		return fmt.Errorf("estate: %d scopes (%d completed), %d documents (%d completed); want %d scopes of %d documents",
			sum.Scopes, sum.Completed, sum.Documents, sum.DocumentsCompleted, o.estateScopes, o.estateDocs)
	}
	calls := emu.Calls()[before:]
	var total, writesN, throttled int
	starts := map[string]int{}
	for _, c := range calls {
		if c.Operation == emulator.OpInvoiceSummary {
			continue // a single request
		}
		total++
		if c.Status == http.StatusTooManyRequests {
			throttled++
		}
		if c.Method == http.MethodPost {
			writesN++
		}
		if c.Phase == emulator.PhaseStart && c.Method == http.MethodPost && c.Accepted {
			starts[c.Path]++
		}
	}
	for p, n := range starts {
		if n != 1 {
			return fmt.Errorf("document %s started %d times", p, n)
		}
	}
	if len(starts) != docs {
		return fmt.Errorf("%d documents started, want %d", len(starts), docs)
	}
	singles = singles.sorted()
	rss, peak := selfMemory()
	r.printf("| scopes | documents | wall time | budget's lower bound | windows' lower bound | wall / the larger | Azure calls (per document) | 429s | single requests: n, p50 / p99 / max | RSS after (peak) | Go heap after |\n" +
		"|---|---|---|---|---|---|---|---|---|---|---|\n")
	r.printf("| %d | %s | %s | %s | %s | %.2f | %s (%.2f) | %d | %d: %s / %s / %s | %s (%s) | %s |\n", o.estateScopes, thousands(float64(docs)),
		secs(elapsed), secs(budget), secs(window), elapsed.Seconds()/bound.Seconds(), thousands(float64(total)), float64(total)/float64(docs), throttled,
		len(singles), ms(singles.quantile(.5)), ms(singles.quantile(.99)), ms(singles.quantile(1)), rss, peak, heapInUse())
	r.printf("\nEach document was started once (one accepted POST each, checked in the emulator's log); %d POSTs in all.\n", writesN)
	r.goal(throttled == 0, "estate: no call throttled by Azure with the shared throttle at the documented budget: %d 429s", throttled)
	return nil
}

// classBound is the least time n calls of a class take under limit l: the
// burst at once, the rest at the rate.
func classBound(n int, l throttle.Limit) time.Duration {
	if n <= l.Burst {
		return 0
	}
	return time.Duration(float64(n-l.Burst) / perSecond(l.Rate) * float64(time.Second))
}

func perSecond(r throttle.Rate) float64 { return r.Calls / r.Per.Seconds() }
