package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/worker"
)

func runPolling(ctx context.Context, o options, r *report) error {
	ra := strconv.Itoa(int(o.pollWait / time.Second))
	r.printf("\n## 2. Polling path (202 Retry-After %s twice, then 200)\n\n", ra)
	r.printf("%s operations per row, worker concurrency %d, on a fresh stack in this process. All completed, each with exactly 3 Azure calls "+
		"(202, 202, 200; checked in the emulator's log and in the events). A row's requests are published as fast as the stream takes them, "+
		"or paced at the rate it names (so that their polls fall due at that rate too).\n\n", thousands(float64(o.pollN)), o.pollConc)
	r.printf("Lateness of a poll = its arrival at the emulator - (arrival of the previous call + Retry-After). The previous call's " +
		"arrival stands in for the time its answer was sent: the worker can only have read the answer later, so this overstates " +
		"lateness by the previous call's processing time, and a poll this measure calls early is truly early.\n\n")
	r.printf("| polls | published | p50 | p99 | max | early | first polls fell due within | total (ideal) | the worker's own measure: sent within 50 ms of due |\n|---|---|---|---|---|---|---|---|---|\n")
	var rates []float64
	if o.pollBurst {
		rates = append(rates, 0)
	}
	if o.pollRate > 0 {
		rates = append(rates, o.pollRate)
	}
	if len(rates) == 0 {
		return errors.New("-poll-at-once=false and -poll-rate 0 leave no row")
	}
	var worst time.Duration
	early := 0
	for _, rate := range rates {
		lat, elapsed, ideal, err := pollingRow(ctx, o, rate)
		if err != nil {
			return err
		}
		pace := "at once"
		if rate > 0 {
			pace = thousands(rate) + "/s"
		}
		share := "not measured (no billing.call.lateness)"
		if lat.measured > 0 {
			share = fmt.Sprintf("%.1f%% of %s (earliest %s after due)", 100*float64(lat.within50)/float64(lat.measured), thousands(float64(lat.measured)), ms(lat.earliest))
		}
		r.printf("| %s | %s | %s | %s | %s | %d | %s | %s (%s) | %s |\n", thousands(float64(len(lat.all))), pace, ms(lat.all.quantile(.5)), ms(lat.all.quantile(.99)),
			ms(lat.all[len(lat.all)-1]), lat.early, secs(lat.dueSpread), secs(elapsed), secs(ideal), share)
		worst = max(worst, lat.all.quantile(.99))
		early += lat.early
	}
	r.printf("\nIdeal: the last first call's arrival after the first publish + 2 x %s s.\n", ra)
	r.goal(early == 0, "no early poll (polling path): %d early", early)
	r.goal(worst < time.Second, "polling p99 lateness < 1 s: worst row %s", ms(worst))
	if early > 0 {
		return fmt.Errorf("%d polls came before the Retry-After had passed", early)
	}
	return nil
}

// pollingRow runs the polling path once, its requests published at rate
// (0: at once).
func pollingRow(ctx context.Context, o options, rate float64) (lateness, time.Duration, time.Duration, error) {
	ra := strconv.Itoa(int(o.pollWait / time.Second))
	progress("polling: %d operations, published at %v/s (0: at once)", o.pollN, rate)
	// The worker's own measure of each call's lateness (billing.call.lateness).
	reader := sdkmetric.NewManualReader()
	tel := telemetry.Noop()
	tel.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var lead func(*config.Config)
	if o.pollLead > 0 {
		lead = func(c *config.Config) { c.PollLead, c.PollHoldMax = o.pollLead, max(c.PollHoldMax, o.pollLead) }
	}
	b, err := startBench(ctx, o.dir, "poll", o.pollConc, []emulator.Reply{emulator.OK()}, lead, worker.WithTelemetry(tel))
	if err != nil {
		return lateness{}, 0, 0, err
	}
	defer b.close()
	batch, err := newBatch(b.s.Client.Layout(), "pol", o.pollN)
	if err != nil {
		return lateness{}, 0, 0, err
	}
	batch.rate = rate
	for _, inv := range batch.invs {
		b.s.Emulator.Script(inv, emulator.Accepted(ra), emulator.Accepted(ra), emulator.OK())
	}
	start := time.Now()
	timeout := timeoutFor(o.pollN, 2*o.pollWait)
	if rate > 0 {
		timeout += time.Duration(float64(o.pollN) / rate * float64(time.Second))
	}
	elapsed, got, err := batch.run(ctx, b.s.Client, b.js, timeout)
	if err != nil {
		return lateness{}, 0, 0, err
	}
	for i, c := range got.completed {
		if c.AzureCalls != 3 {
			return lateness{}, 0, 0, fmt.Errorf("request %s: completion event says %d Azure calls, want 3", batch.ids[i], c.AzureCalls)
		}
	}
	lat, err := pollLateness(b.s.Emulator.Calls(), batch, 3, o.pollWait)
	if err != nil {
		return lateness{}, 0, 0, err
	}
	lat.within50, lat.measured, lat.earliest = workerLateness(ctx, reader)
	return lat, elapsed, lat.lastStart.Sub(start) + 2*o.pollWait, nil
}

// lateness is what the emulator's log says about the polls of a batch.
type lateness struct {
	all       durations // sorted
	early     int
	dueSpread time.Duration // between the first and the last due time of the first polls
	lastStart time.Time     // the last start call's arrival
	firstDue  time.Time
	// The worker's own measure (billing.call.lateness): calls measured,
	// of them sent within 50 ms of their due time, and the earliest.
	measured, within50 uint64
	earliest           time.Duration
}

// workerLateness reads billing.call.lateness: how many calls after a wait
// the worker measured, how many of them went out within 50 ms of their
// due time (a bucket boundary, so the count is exact), and the earliest
// (negative: before its due time).
func workerLateness(ctx context.Context, reader *sdkmetric.ManualReader) (within50, measured uint64, earliest time.Duration) {
	var rm metricdata.ResourceMetrics
	if reader.Collect(ctx, &rm) != nil {
		return 0, 0, 0
	}
	first := true
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || m.Name != "billing.call.lateness" {
				continue
			}
			for _, dp := range h.DataPoints {
				measured += dp.Count
				for i, bound := range dp.Bounds {
					if bound <= 0.05 {
						within50 += dp.BucketCounts[i]
					}
				}
				if v, ok := dp.Min.Value(); ok {
					if d := time.Duration(v * float64(time.Second)); first || d < earliest {
						earliest, first = d, false
					}
				}
			}
		}
	}
	return within50, measured, earliest
}

// pollLateness checks that every request of the batch made exactly want
// calls (a start answered 202, polls answered 202 and a last one 200) and
// measures each poll against the previous call's arrival plus wait.
func pollLateness(calls []emulator.Call, b *batch, want int, wait time.Duration) (lateness, error) {
	var out lateness
	idx := make(map[string]int, len(b.invs))
	for i, inv := range b.invs {
		idx[inv] = i
	}
	per := make([][]emulator.Call, len(b.invs))
	for _, c := range calls {
		i, ok := idx[c.InvoiceName]
		if !ok {
			return out, fmt.Errorf("a call for invoice %q, not of this run: %s %s -> %d", c.InvoiceName, c.Method, c.Path, c.Status)
		}
		per[i] = append(per[i], c)
	}
	var firstDueMax time.Time
	for i, cs := range per {
		if len(cs) != want {
			return out, fmt.Errorf("request %s made %d Azure calls, want %d", b.ids[i], len(cs), want)
		}
		for k, c := range cs {
			wantStatus, wantPhase := 202, emulator.PhasePoll
			if k == 0 {
				wantPhase = emulator.PhaseStart
			}
			if k == want-1 {
				wantStatus = 200
			}
			if c.Status != wantStatus || c.Phase != wantPhase {
				return out, fmt.Errorf("request %s call %d: %s %s -> %d (%s), want %d (%s)", b.ids[i], k+1, c.Method, c.Path, c.Status, c.Phase, wantStatus, wantPhase)
			}
			if k == 0 {
				if c.Time.After(out.lastStart) {
					out.lastStart = c.Time
				}
				continue
			}
			due := cs[k-1].Time.Add(wait)
			l := c.Time.Sub(due)
			if l < 0 {
				out.early++
			}
			out.all = append(out.all, l)
			if k == 1 {
				if out.firstDue.IsZero() || due.Before(out.firstDue) {
					out.firstDue = due
				}
				if due.After(firstDueMax) {
					firstDueMax = due
				}
			}
		}
	}
	out.all = out.all.sorted()
	out.dueSpread = firstDueMax.Sub(out.firstDue)
	return out, nil
}
