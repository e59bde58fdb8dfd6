package worker_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/operation"
	"github.com/azbilling/worker/pkg/throttle"
)

// A 429 pauses its scope: a request of the same scope that falls due
// during the pause waits for its end (its status says so), while another
// scope's request goes at once; the bucket shows the pause.
func TestThrottlePausesTheScope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	first, held, other := b.invoice(), b.invoice(), b.invoice()
	b.emu.Script(first, emulator.Throttled(429, "Retry-After", "3"), emulator.OK())
	b.emu.Script(held, emulator.OK())
	b.emu.Script(other, emulator.OK())
	a := sampleSummary(b.id(), first)
	b.submit(a)
	eventually(t, eventTimeout, func() bool { return len(b.emu.CallsFor(first)) == 1 })
	throttledAt := b.emu.CallsFor(first)[0].Time
	scope := throttle.ScopeOf("default", messages.KindInvoiceSummary, false)
	eventually(t, eventTimeout, func() bool {
		st, err := b.stack.Client.Throttle(ctx)
		return err == nil && len(st) > 0 && st[0].Scope == scope && st[0].Pauses == 1
	})

	h := sampleSummary(b.id(), held)
	o := devstack.Sample(messages.KindInvoice, b.id(), other)
	b.submit(h)
	b.submit(o)
	if got := b.wait(o.ID, eventTimeout); got.Completed == nil {
		t.Fatalf("other scope: %+v", got.Failed)
	}
	if c := b.emu.CallsFor(other)[0]; !c.Time.Before(throttledAt.Add(3 * time.Second)) {
		t.Errorf("the other scope's call waited for the pause: %s after the 429", c.Time.Sub(throttledAt))
	}
	// While it waits, its status names the hold.
	var st operation.State
	eventually(t, eventTimeout, func() bool {
		var err error
		st, err = b.stack.Client.Status(ctx, h.ID)
		return err == nil && (st.Throttled != nil || st.Phase.Terminal())
	})
	if st.Throttled == nil || st.Throttled.Scope != string(scope) || st.Throttled.PausedUntil.IsZero() || st.LastWaitSource != operation.SourceThrottle {
		t.Errorf("status while held: %+v throttled %+v", st.Phase, st.Throttled)
	}
	for _, id := range []string{a.ID, h.ID} {
		if got := b.wait(id, eventTimeout); got.Completed == nil {
			t.Fatalf("%s: %+v", id, got.Failed)
		}
	}
	calls := b.emu.CallsFor(held)
	if len(calls) != 1 || calls[0].Time.Before(throttledAt.Add(3*time.Second)) {
		t.Errorf("the held call went %s after the 429, within its scope's pause (%d calls)", calls[0].Time.Sub(throttledAt), len(calls))
	}
}

// Three replicas and an emulator budget equal to the throttle's: 60
// invoices read at 20 a second, burst 10, complete with no 429 and no
// sooner than the budget allows.
func TestThrottleSharedBudgetNoThrottledAnswers(t *testing.T) {
	t.Parallel()
	stack, err := devstack.Start(devstack.Options{
		Dir:      t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Workers:  3,
		Emulator: emulator.Options{Budget: emulator.Budget{Rate: 20, Burst: 10}},
		Configure: func(c *config.Config) {
			c.Concurrency, c.MaxAckPending = 16, 64
			c.ThrottleBillingReads, c.ThrottleBillingReadsBurst = throttle.Rate{Calls: 20, Per: time.Second}, 10
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	b := watch(t, stack)
	const n = 60
	var ids []string
	start := time.Now()
	for range n {
		inv := b.invoice()
		b.emu.Script(inv, emulator.OK())
		req := devstack.Sample(messages.KindInvoice, b.id(), inv)
		ids = append(ids, req.ID)
		b.submit(req)
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if got := b.wait(id, 30*time.Second); got.Completed == nil {
				t.Errorf("%s: %+v", id, got.Failed)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	throttled := 0
	for _, c := range b.emu.Calls() {
		if c.Status == 429 {
			throttled++
		}
	}
	// The lower bound: the burst at once, the rest at the rate.
	if bound := time.Duration(n-10) * time.Second / 20; took < bound || throttled != 0 {
		t.Errorf("%d requests in %s (bound %s), %d answered 429", n, took, bound, throttled)
	}
	t.Logf("%d requests over 3 replicas in %s, %d calls, %d answered 429", n, took, len(b.emu.Calls()), throttled)
}
