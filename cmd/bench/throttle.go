package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/messages"
)

// throttleResult is one run of the throttle part.
type throttleResult struct {
	shared bool
	// learn: the workers' throttle settings at their defaults, against
	// budget (the throttle learns it).
	learn     bool
	budget    emulator.Budget
	elapsed   time.Duration
	calls     int
	throttled int
	early     int
	// perReplicaWindow is the most 429s the emulator answered within one
	// of its announced waits (a pause window), over every window.
	perWindow int
	// throttledAt: when each 429 came (since the run's first call) and
	// the budget class it was charged to, for the report.
	throttledAt []string
}

// runThrottle measures the shared throttle: three worker processes, one
// nats-server process and an emulator budget well below the workers'
// speed, with the shared throttle on, then off (each operation backing off
// alone), side by side.
func runThrottle(ctx context.Context, o options, r *report) error {
	budget := emulator.Budget{Rate: o.throttleRate, Burst: o.throttleBurst}
	r.printf("\n## 5. Shared throttle (%s requests, 3 worker processes, an Azure budget of %g calls/s burst %d)\n\n",
		thousands(float64(o.throttleN)), budget.Rate, budget.Burst)
	// Every request: a POST answered 202 (Retry-After 1), a poll answered
	// 200: one call of each class, each class with its own bucket.
	e, closeEmu, err := newProcEnv(ctx, o, "throttle", emulator.Options{
		Default: []emulator.Reply{emulator.Accepted("1"), emulator.OK()},
		Budget:  budget,
	})
	if err != nil {
		return err
	}
	defer closeEmu()
	var results []throttleResult
	for _, shared := range []bool{true, false} {
		res, err := throttleRun(ctx, o, e, shared, false, budget)
		if err != nil {
			return fmt.Errorf("shared=%v: %w", shared, err)
		}
		results = append(results, res)
	}
	var learned []throttleResult
	for _, lb := range o.throttleLearn {
		e.emu.SetBudget(lb)
		res, err := throttleRun(ctx, o, e, true, true, lb)
		if err != nil {
			return fmt.Errorf("learning %g/s burst %d: %w", lb.Rate, lb.Burst, err)
		}
		learned = append(learned, res)
	}
	e.emu.SetBudget(budget)
	// The budget's lower bound: the burst at once, the other POSTs at the
	// rate, and the last POST's poll one Retry-After (1 s) later.
	bound := time.Duration(float64(o.throttleN-budget.Burst)/budget.Rate*float64(time.Second)) + time.Second
	r.printf("Each request is a POST (answered 202, Retry-After 1) and a poll (200); the emulator keeps one bucket per "+
		"class (POSTs, GETs) for the tenant, shared by the three worker processes (concurrency %d each), answers 429 with "+
		"Retry-After (whole seconds until a token is back) when one is empty (a rejected call takes no token). Shared: "+
		"`-throttle-billing-writes %s` and `-reads` the same, bursts %d. Per replica: `-throttle=false` (each operation "+
		"backs off alone on its own 429s, the behaviour before the shared throttle). The budget's lower bound: the burst "+
		"at once, the remaining POSTs at the rate, plus the last poll's Retry-After: %s.\n\n",
		o.throttleConc, throttleRate(budget).String(), budget.Burst, secs(bound))
	r.printf("| throttle | completion | vs lower bound | 429s received | most 429s in one pause window | early calls | Azure calls per request |\n|---|---|---|---|---|---|---|\n")
	for _, res := range results {
		name := "per replica (off)"
		if res.shared {
			name = "shared"
		}
		r.printf("| %s | %s | %+.1f%% | %d | %d | %d | %.3f |\n", name, secs(res.elapsed),
			100*(res.elapsed.Seconds()/bound.Seconds()-1), res.throttled, res.perWindow, res.early, float64(res.calls)/float64(o.throttleN))
	}
	for _, res := range learned {
		lb := throttleBound(o.throttleN, res.budget)
		r.printf("| learned (settings at their defaults), budget %g/s burst %d, bound %s | %s | %+.1f%% | %d | %d | %d | %.3f |\n",
			res.budget.Rate, res.budget.Burst, secs(lb), secs(res.elapsed),
			100*(res.elapsed.Seconds()/lb.Seconds()-1), res.throttled, res.perWindow, res.early, float64(res.calls)/float64(o.throttleN))
	}
	for _, res := range append(results[:1:1], learned...) {
		if len(res.throttledAt) > 0 && len(res.throttledAt) <= 20 {
			r.printf("\n429s and early calls of the %g/s burst %d run (learned: %v): %s.\n", res.budget.Rate, res.budget.Burst, res.learn, strings.Join(res.throttledAt, "; "))
		}
	}
	sh, off := results[0], results[1]
	r.printf("\nEarly: a call that reached the emulator before the end of the wait its bucket's last 429 announced. " +
		"A pause window: the wait one 429 announced; the column counts the 429s answered within the worst one.\n")
	r.goal(sh.elapsed.Seconds() <= 1.1*bound.Seconds(), "shared throttle: completion within 10%% of the budget's lower bound: %s vs %s", secs(sh.elapsed), secs(bound))
	r.goal(sh.early == 0, "shared throttle: no early call: %d", sh.early)
	r.goal(sh.perWindow <= 3, "shared throttle: at most one 429 per replica per pause window: %d at most in one window", sh.perWindow)
	r.goal(sh.throttled*5 <= off.throttled, "shared throttle: at least five times fewer 429s than per replica: %d vs %d", sh.throttled, off.throttled)
	for _, res := range learned {
		lb := throttleBound(o.throttleN, res.budget)
		r.goal(res.elapsed.Seconds() <= 1.05*lb.Seconds(), "learned %g/s burst %d: completion within 5%% of the budget's lower bound: %s vs %s", res.budget.Rate, res.budget.Burst, secs(res.elapsed), secs(lb))
		r.goal(res.throttled <= 3, "learned %g/s burst %d: at most 3 429s: %d", res.budget.Rate, res.budget.Burst, res.throttled)
		r.goal(res.early == 0, "learned %g/s burst %d: no early call: %d", res.budget.Rate, res.budget.Burst, res.early)
	}
	return nil
}

// throttleBound is the lower bound of n requests under budget b: the burst
// at once, the other POSTs at the rate, the last POST's poll one
// Retry-After (1 s) later.
func throttleBound(n int, b emulator.Budget) time.Duration {
	return time.Duration(float64(n-b.Burst)/b.Rate*float64(time.Second)) + time.Second
}

// parseLearnBudgets reads "5/10,20/40": budgets <rate>/<burst>.
func parseLearnBudgets(s string) ([]emulator.Budget, error) {
	var out []emulator.Budget
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, b, ok := strings.Cut(part, "/")
		rate, err1 := strconv.ParseFloat(r, 64)
		burst, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || !(rate > 0) || burst < 1 {
			return nil, fmt.Errorf("-throttle-learn %q: want budgets <rate>/<burst> such as 5/10", part)
		}
		out = append(out, emulator.Budget{Rate: rate, Burst: burst})
	}
	return out, nil
}

func throttleRate(b emulator.Budget) throttle.Rate {
	return throttle.Rate{Calls: b.Rate, Per: time.Second}
}

// throttleRun runs the batch once against fresh processes and a full
// budget.
func throttleRun(ctx context.Context, o options, e *procEnv, shared, learn bool, budget emulator.Budget) (throttleResult, error) {
	res := throttleResult{shared: shared, learn: learn, budget: budget}
	name := "throttle-off"
	switch {
	case learn:
		name = fmt.Sprintf("throttle-learn-%g-%d", budget.Rate, budget.Burst)
	case shared:
		name = "throttle-shared"
	}
	progress("throttle: %s, %d requests", name, o.throttleN)
	e.emu.Reset()
	ns, url, err := e.startNATS(name + "-nats")
	if err != nil {
		return res, err
	}
	defer ns.stop(10 * time.Second)
	rate := throttleRate(emulator.Budget{Rate: o.throttleRate}).String()
	burst := strconv.Itoa(o.throttleBurst)
	env := append(devstack.WorkerEnv(e.emu, e.ca, e.secretFile),
		"BILLING_NATS_URL="+url,
		"BILLING_CONCURRENCY="+strconv.Itoa(o.throttleConc),
		"BILLING_LOG_LEVEL=warn",
		"BILLING_HEALTH_ADDR=127.0.0.1:0",
		"BILLING_THROTTLE="+strconv.FormatBool(shared),
	)
	if !learn {
		env = append(env,
			"BILLING_THROTTLE_BILLING_WRITES="+rate, "BILLING_THROTTLE_BILLING_WRITES_BURST="+burst,
			"BILLING_THROTTLE_BILLING_READS="+rate, "BILLING_THROTTLE_BILLING_READS_BURST="+burst)
	}
	var workers []*child
	defer func() {
		for _, w := range workers {
			w.stop(15 * time.Second)
		}
	}()
	for i := range 3 {
		w, err := startChild(fmt.Sprintf("%s-worker-%d", name, i), e.dir, []string{e.workerBin},
			append(env, fmt.Sprintf("BILLING_NATS_NAME=%s-%d", name, i)), false)
		if err != nil {
			return res, err
		}
		workers = append(workers, w)
	}
	bc, err := connectBench(url)
	if err != nil {
		return res, err
	}
	defer bc.nc.Close()
	for _, w := range workers {
		if err := waitConsumers(ctx, bc.js, messages.NewLayout("").WorkStream(), w); err != nil {
			return res, err
		}
	}
	b, err := newBatch(bc.cl.Layout(), "thr", o.throttleN)
	if err != nil {
		return res, err
	}
	// Generous: per replica, storms can take several times the bound.
	timeout := timeoutFor(o.throttleN, 10*time.Duration(float64(o.throttleN)/budget.Rate*float64(time.Second)))
	elapsed, got, err := b.run(ctx, bc.cl, bc.js, timeout)
	if err != nil {
		return res, err
	}
	res.elapsed = elapsed
	for i, c := range got.completed {
		if c == nil {
			return res, fmt.Errorf("request %s: no completion", b.ids[i])
		}
	}
	calls := e.emu.Calls()
	res.calls = len(calls)
	var windowEnd, first time.Time
	if len(calls) > 0 {
		first = calls[0].Time
	}
	inWindow := 0
	for _, c := range calls {
		if c.Early {
			res.early++
		}
		if c.Status == 429 || c.Early {
			what := fmt.Sprintf("%d", c.Status)
			if c.Early {
				what += " early"
			}
			res.throttledAt = append(res.throttledAt, fmt.Sprintf("%s %s at %.2f s", what, c.Budget, c.Time.Sub(first).Seconds()))
		}
		if c.Status != 429 {
			continue
		}
		res.throttled++
		if c.Time.Before(windowEnd) {
			inWindow++
		} else {
			ra, _ := strconv.Atoi(c.RetryAfter)
			windowEnd, inWindow = c.Time.Add(time.Duration(ra)*time.Second), 1
		}
		res.perWindow = max(res.perWindow, inWindow)
	}
	return res, nil
}
