package e2e

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// SIGTERM during load: the worker exits 0 within its drain timeout, and
// every request (its in-flight ones included) completes, the rest of the
// work going to the other worker.
func TestSIGTERMDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	e := newEnv(t)
	ns := startNATS(t, "sigterm-nats", filepath.Join(t.TempDir(), "js"))
	a := e.worker(t, "sigterm-worker-a", ns.url())
	b := e.worker(t, "sigterm-worker-b", ns.url())
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	const n = 300
	reqs := make([]messages.Request, n)
	for i := range reqs {
		inv := devstack.InvoiceName("ST", i)
		// Slow answers keep calls in flight when the signal comes.
		e.emu.Script(inv, emulator.Accepted("1").After(200*time.Millisecond), emulator.OK().After(300*time.Millisecond))
		reqs[i] = devstack.Sample(messages.Kinds[i%4], "st-"+inv, inv)
	}
	publishAll(t, js, reqs)
	testwait.For(t, 10*time.Second, "a third of the calls in flight", func() bool {
		checkAlive(t, a, b)
		return len(e.emu.Calls()) >= n/3
	})
	sent := time.Now()
	err := a.signal(t, syscall.SIGTERM, 10*time.Second+5*time.Second)
	took := time.Since(sent)
	if err != nil {
		t.Errorf("worker exited with %v after SIGTERM\n%s", err, a.tail())
	}
	if err := testwait.Until(2*time.Minute-time.Since(sent), "every event", func() bool {
		checkAlive(t, b)
		return eventsKept(js) >= n
	}); err != nil {
		t.Fatalf("%v: %d of %d", err, eventsKept(js), n)
	}
	counts, outcomes := eventCounts(t, js)
	for _, r := range reqs {
		if counts[r.ID] != 1 || outcomes[r.ID] != messages.OutcomeCompleted {
			t.Errorf("request %s: %d events, %s", r.ID, counts[r.ID], outcomes[r.ID])
		}
	}
	t.Logf("sigterm: worker a exited in %s; %d requests, outcomes: %s", took.Round(time.Millisecond), n, summarize(outcomes))
}
