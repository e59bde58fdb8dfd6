package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A worker started while NATS cannot be reached (a pod scheduled before
// the NATS cluster is up, or started during an outage) waits for it
// instead of exiting, and serves once it comes: no crash loop, nothing
// for the operator to restart.
func TestWorkerStartsBeforeNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process start-up run")
	}
	e := newEnv(t)
	ns := newNATS(t, "late-nats", filepath.Join(t.TempDir(), "js"))
	w := e.worker(t, "early-worker", ns.url())

	// The worker says it is waiting for JetStream, and is still running.
	testwait.For(t, 30*time.Second, "the worker waiting for JetStream", func() bool {
		checkAlive(t, w)
		return strings.Contains(w.tail(), "set up JetStream; retrying")
	})
	checkAlive(t, w)

	ns.start(t)
	ns.waitReady(t)
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)
	inv := devstack.InvoiceName("LATE", 0)
	e.emu.Script(inv, emulator.OK())
	req := devstack.Sample(devstack.ScriptedKinds()[0], "late-nats-0", inv)
	publishAll(t, js, []messages.Request{req})
	testwait.For(t, 30*time.Second, "the event", func() bool {
		checkAlive(t, w)
		return eventsKept(js) >= 1
	})
	if counts, _ := eventCounts(t, js); counts[req.ID] != 1 {
		t.Fatalf("request %s: %d events, want 1", req.ID, counts[req.ID])
	}
}
