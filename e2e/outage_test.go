package e2e

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A NATS outage longer than the JetStream request timeout (5 s), while
// every operation's Azure call is in flight, loses nothing: the worker
// cannot store Azure's answer until the server is back, and must not take
// its own delayed write for another worker's. Every request ends in
// exactly one event, whether the server was killed or stopped.
func TestNATSOutageWithCallsInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process outage run")
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			e := newEnv(t)
			ns := startNATS(t, "outage-nats", filepath.Join(t.TempDir(), "js"))
			extra := []string{"BILLING_HTTP_TIMEOUT=5s", "BILLING_ACK_WAIT=20s"}
			workers := []*proc{
				e.worker(t, "outage-worker-a", ns.url(), extra...),
				e.worker(t, "outage-worker-b", ns.url(), extra...),
			}
			_, js := connect(t, ns.url())
			waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

			const n = 20
			reqs := make([]messages.Request, n)
			for i := range reqs {
				inv := devstack.InvoiceName("OUT", i)
				// Half answer the first call after 2 s with a result, half
				// with a 202 whose poll then completes: both the outcome
				// and the waiting state are written during the outage.
				if i%2 == 0 {
					e.emu.Script(inv, emulator.OK().After(2*time.Second))
				} else {
					e.emu.Script(inv, emulator.Accepted("1").After(2*time.Second), emulator.OK())
				}
				reqs[i] = devstack.Sample(devstack.ScriptedKinds()[i%len(devstack.ScriptedKinds())], fmt.Sprintf("out-%s-%02d", sig, i), inv)
			}
			publishAll(t, js, reqs)
			// Stop the server once every first call is in flight.
			testwait.For(t, 20*time.Second, "the calls before the outage", func() bool { return len(e.emu.Calls()) >= n })
			if err := ns.signal(t, sig, 15*time.Second); err != nil {
				t.Logf("nats-server exit: %v", err)
			}
			time.Sleep(10 * time.Second) // the outage: twice the JetStream request timeout (the scenario, not a wait)
			ns.start(t)
			ns.waitReady(t)

			// On a timeout, the counts below name what is missing.
			_ = testwait.Until(2*time.Minute, "every event", func() bool {
				checkAlive(t, workers...)
				return eventsKept(js) >= n
			})
			counts, outcomes := eventCounts(t, js)
			for _, r := range reqs {
				if counts[r.ID] != 1 {
					t.Errorf("request %s: %d events, want 1", r.ID, counts[r.ID])
				}
			}
			all, _ := starts(e.emu)
			maxPosts := 0
			for _, c := range all {
				maxPosts = max(maxPosts, c)
			}
			t.Logf("outage (%s, 10 s): %d requests, %d events, outcomes %s, first calls per request max %d",
				sig, n, len(counts), summarize(outcomes), maxPosts)
			if t.Failed() {
				t.Logf("worker a:\n%s", workers[0].tail())
			}
		})
	}
}
