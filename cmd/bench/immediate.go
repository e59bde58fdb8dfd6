package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
)

// immediateRow is one line of the immediate-path table.
type immediateRow struct {
	label      string
	conc, n    int
	delay      time.Duration // Azure's answer time
	burst      bool          // the burst row
	worker     float64       // requests/s, publish to completion event
	raw        float64       // raw JetStream: publish to consume+ack, same payload
	rawPublish float64       // raw JetStream: async publish only
	loop       float64       // azcore loop, same concurrency
	workerCPU  float64       // cores this process used during the worker run
	loopCPU    float64       // and during the loop
	runs       string        // each run's figures
}

type immediateResults struct{ rows []immediateRow }

func runImmediate(ctx context.Context, o options, r *report) (*immediateResults, error) {
	r.printf("\n## 1. Immediate path (Azure answers 200 at once)\n\n")
	r.printf("Each row runs on a fresh stack (embedded nats-server, the emulator over HTTPS, one worker) in this process. " +
		"worker: requests/s from the first publish to the last completion event received; raw JetStream: the same payloads " +
		"published async to a work-queue file stream on the same server and consumed by a durable consumer with explicit acks; " +
		"azcore loop: the same POST through an azcore pipeline + runtime.NewPoller + PollUntilDone, no queue, as many goroutines " +
		"as the worker's concurrency, against the same emulator.\n\n")
	r.printf("| worker concurrency | requests | worker req/s (cores busy) | raw JetStream req/s (publish only) | azcore loop req/s (cores busy) | worker / raw | worker / loop |\n")
	r.printf("|---|---|---|---|---|---|---|\n")
	res := &immediateResults{}
	for _, row := range immediateRows(o) {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		progress("immediate: concurrency %d, %d requests", row.conc, row.n)
		if err := immediateRowRun(ctx, o, &row); err != nil {
			return res, fmt.Errorf("concurrency %d: %w", row.conc, err)
		}
		res.rows = append(res.rows, row)
		r.printf("| %s | %s | %s (%.2f) | %s (%s) | %s (%.2f) | %.2f | %.2f |\n", row.label, thousands(float64(row.n)),
			thousands(row.worker), row.workerCPU, thousands(row.raw), thousands(row.rawPublish), thousands(row.loop), row.loopCPU,
			row.worker/row.raw, row.worker/row.loop)
	}
	if o.repeat > 1 {
		r.printf("\nEach figure is the median of %d runs (worker, raw, loop, worker, raw, loop, ...); the runs, in req/s:\n\n", o.repeat)
		for _, row := range res.rows {
			r.printf("- %s: %s\n", row.label, row.runs)
		}
	}
	var instant []immediateRow // Azure answering at once: the set-up
	for _, row := range res.rows {
		if row.delay == 0 {
			instant = append(instant, row)
		}
	}
	if len(instant) > 0 {
		best := instant[0]
		for _, row := range instant {
			if row.worker > best.worker {
				best = row
			}
		}
		r.goal(best.worker >= 10000, "immediate path >= 10,000 req/s: best %s req/s (concurrency %d)", thousands(best.worker), best.conc)
		allHalf := true
		for _, row := range instant {
			allHalf = allHalf && row.worker >= row.loop/2
		}
		r.goal(allHalf, "worker >= half the azcore loop's rate at every concurrency (Azure answering at once): worker/loop %s",
			ratios(instant, func(row immediateRow) float64 { return row.worker / row.loop }))
		for _, burst := range instant {
			if burst.burst {
				r.printf("\nBurst of %s at concurrency %d: worker %s req/s = %.0f%% of the raw JetStream ceiling, %.0f%% of the azcore loop.\n",
					thousands(float64(burst.n)), burst.conc, thousands(burst.worker), 100*burst.worker/burst.raw, 100*burst.worker/burst.loop)
			}
		}
	}
	return res, nil
}

// immediateRows are the rows the options ask for: one per concurrency
// level, the burst, the row with Azure answering late. A count of 0 leaves
// its rows out (-burst-n 0: no burst); nothing runs with 0 requests.
func immediateRows(o options) []immediateRow {
	var rows []immediateRow
	if o.levelN > 0 {
		for _, c := range o.levels {
			rows = append(rows, immediateRow{label: fmt.Sprint(c), conc: c, n: o.levelN})
		}
	}
	if o.burstN > 0 {
		rows = append(rows, immediateRow{label: fmt.Sprintf("%d (burst)", o.burstConc), conc: o.burstConc, n: o.burstN, burst: true})
	}
	if o.latency > 0 && o.latencyN > 0 {
		rows = append(rows, immediateRow{label: fmt.Sprintf("%d, Azure answering in %s", o.latencyConc, o.latency),
			conc: o.latencyConc, n: o.latencyN, delay: o.latency})
	}
	return rows
}

func ratios(rows []immediateRow, f func(immediateRow) float64) string {
	s := ""
	for i, row := range rows {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.2f (c=%d, n=%d)", f(row), row.conc, row.n)
	}
	return s
}

func immediateRowRun(ctx context.Context, o options, row *immediateRow) error {
	if row.n < 1 {
		// No run to time: the raw JetStream consumer would wait for a
		// last ack that never comes.
		return fmt.Errorf("%d requests: nothing to measure", row.n)
	}
	b, err := startBench(ctx, o.dir, fmt.Sprintf("imm%d", row.conc), row.conc, []emulator.Reply{emulator.OK().After(row.delay)}, nil)
	if err != nil {
		return err
	}
	defer b.close()
	loop, err := newAzLoop(b.s.Emulator.URL(), b.secret, b.loopTr)
	if err != nil {
		return err
	}
	warm := make([]string, 2*row.conc+20)
	for i := range warm {
		warm[i] = devstack.InvoiceName("lwarm", i)
	}
	if _, err := runLoop(ctx, loop, warm, row.conc); err != nil {
		return fmt.Errorf("azcore loop warm-up: %w", err)
	}
	// The three are measured one after the other, repeat times, and each
	// figure is the median of its runs: a noisy moment does not decide a
	// ratio.
	var worker, workerCPU, raw, rawPub, loopRate, loopCPU []float64
	var pauses []string // the worker's longest pause between two Azure calls, each run
	for rep := range o.repeat {
		tag := fmt.Sprintf("i%dn%dd%dr%d", row.conc, row.n, row.delay.Milliseconds(), rep)
		batch, err := newBatch(b.s.Client.Layout(), tag, row.n)
		if err != nil {
			return err
		}

		// The worker.
		b.s.Emulator.Reset()
		cpu0, _ := cpuTime(os.Getpid())
		elapsed, _, err := batch.run(ctx, b.s.Client, b.js, timeoutFor(row.n, 0))
		if err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		cpu1, _ := cpuTime(os.Getpid())
		worker, workerCPU = append(worker, rate(row.n, elapsed)), append(workerCPU, (cpu1-cpu0).Seconds()/elapsed.Seconds())
		if err := checkOneCall(b.s.Emulator, batch); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		pauses = append(pauses, longestPause(b.s.Emulator.Calls()).Round(time.Millisecond).String())

		// The raw JetStream ceiling on the same server.
		e2e, pub, err := rawJetStream(ctx, b.s.NATS.ClientURL(), batch)
		if err != nil {
			return fmt.Errorf("raw JetStream: %w", err)
		}
		raw, rawPub = append(raw, rate(row.n, e2e)), append(rawPub, rate(row.n, pub))

		// The azcore loop against the same emulator.
		b.s.Emulator.Reset()
		cpu0, _ = cpuTime(os.Getpid())
		elapsed, err = runLoop(ctx, loop, batch.invs, row.conc)
		if err != nil {
			return fmt.Errorf("azcore loop: %w", err)
		}
		cpu1, _ = cpuTime(os.Getpid())
		loopRate, loopCPU = append(loopRate, rate(row.n, elapsed)), append(loopCPU, (cpu1-cpu0).Seconds()/elapsed.Seconds())
		if err := checkOneCall(b.s.Emulator, batch); err != nil {
			return fmt.Errorf("azcore loop: %w", err)
		}
	}
	row.worker, row.workerCPU, row.raw, row.rawPublish = median(worker), median(workerCPU), median(raw), median(rawPub)
	row.loop, row.loopCPU = median(loopRate), median(loopCPU)
	row.runs = fmt.Sprintf("worker %s (longest pause between two Azure calls: %s); loop %s", list(worker), strings.Join(pauses, ", "), list(loopRate))
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func list(v []float64) string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = thousands(x)
	}
	return strings.Join(out, ", ")
}

// longestPause is the longest time between two consecutive Azure calls of
// a run: a run slowed by one stall (the worker waiting on nothing while
// requests are queued) shows it here, where its rate only looks low.
func longestPause(calls []emulator.Call) time.Duration {
	ts := make([]time.Time, len(calls))
	for i, c := range calls {
		ts[i] = c.Time
	}
	slices.SortFunc(ts, time.Time.Compare)
	var longest time.Duration
	for i := 1; i < len(ts); i++ {
		longest = max(longest, ts[i].Sub(ts[i-1]))
	}
	return longest
}

// checkOneCall verifies that each request of the batch made exactly one
// Azure call, answered 200.
func checkOneCall(emu *emulator.Server, b *batch) error {
	calls := emu.Calls()
	if len(calls) != len(b.ids) {
		return fmt.Errorf("%d Azure calls logged, want %d (one each)", len(calls), len(b.ids))
	}
	seen := make(map[string]bool, len(calls))
	for _, c := range calls {
		if c.Status != 200 || c.Phase != emulator.PhaseStart || seen[c.InvoiceName] {
			return fmt.Errorf("unexpected call %s %s -> %d (invoice %s, seen before: %v)", c.Method, c.Path, c.Status, c.InvoiceName, seen[c.InvoiceName])
		}
		seen[c.InvoiceName] = true
	}
	return nil
}

// runLoop runs one azcore operation per invoice with conc goroutines and
// returns the time they took.
func runLoop(ctx context.Context, loop *azLoop, invs []string, conc int) (time.Duration, error) {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(invs) || ctx.Err() != nil {
					return
				}
				if _, err := loop.download(ctx, invs[i], time.Second); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("invoice %s: %w", invs[i], err)
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), first
}

// rawJetStream measures the broker alone on the batch's payloads: a
// work-queue file stream like the worker's, a durable pull consumer with
// explicit acks consuming on its own connection while a publisher sends
// every payload asynchronously (with a Nats-Msg-Id, as requests carry).
// It returns the time to the last ack and the time publishing took.
func rawJetStream(ctx context.Context, url string, b *batch) (e2e, pub time.Duration, err error) {
	pc, err := nats.Connect(url, nats.Name("bench-raw-pub"))
	if err != nil {
		return 0, 0, err
	}
	defer pc.Close()
	cc, err := nats.Connect(url, nats.Name("bench-raw-sub"))
	if err != nil {
		return 0, 0, err
	}
	defer cc.Close()
	pjs, err := jetstream.New(pc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, 0, err
	}
	cjs, err := jetstream.New(cc)
	if err != nil {
		return 0, 0, err
	}
	const stream = "BENCH_RAW"
	if _, err := pjs.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"benchraw.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return 0, 0, err
	}
	defer func() { _ = pjs.DeleteStream(context.WithoutCancel(ctx), stream) }()
	cons, err := cjs.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000, AckWait: time.Minute,
	})
	if err != nil {
		return 0, 0, err
	}
	n := int64(len(b.ids))
	var got atomic.Int64
	done := make(chan time.Time, 1)
	consume, err := cons.Consume(func(m jetstream.Msg) {
		if err := m.Ack(); err != nil {
			return
		}
		if got.Add(1) == n {
			done <- time.Now()
		}
	})
	if err != nil {
		return 0, 0, err
	}
	defer consume.Stop()

	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i, id := range b.ids {
		m := nats.NewMsg("benchraw." + string(benchKind))
		m.Data = b.bodies[i]
		f, err := pjs.PublishMsgAsync(m, jetstream.WithMsgID("raw-"+id))
		if err != nil {
			return 0, 0, err
		}
		futures = append(futures, f)
	}
	<-pjs.PublishAsyncComplete()
	pub = time.Since(start)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return 0, 0, err
		}
	}
	select {
	case end := <-done:
		e2e = end.Sub(start)
	case <-time.After(timeoutFor(int(n), 0)):
		return 0, 0, fmt.Errorf("consumed %d of %d", got.Load(), n)
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	// Make sure the acks were taken: the work queue empties.
	for deadline := time.Now().Add(30 * time.Second); ; {
		s, err := pjs.Stream(ctx, stream)
		if err == nil {
			info, ierr := s.Info(ctx)
			if ierr == nil && info.State.Msgs == 0 {
				return e2e, pub, nil
			}
			err = ierr
		}
		if time.Now().After(deadline) {
			return 0, 0, errors.Join(errors.New("the raw stream did not empty after the acks"), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
