package e2e

import (
	"flag"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

var (
	chaosRequests = flag.Int("chaos.requests", 2000, "requests in the chaos run")
	chaosSoak     = flag.Duration("chaos.soak", 0, "keep killing workers at least this long (a longer soak than CI's)")
)

// Three worker processes, one nats-server process, thousands of requests
// of every kind with polls and throttling; a random worker is killed with
// SIGKILL every couple of seconds and restarted, and the NATS server is
// restarted once. Every request must end in exactly one event, and Azure
// must never see a second accepted POST for a request.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process chaos run")
	}
	e := newEnv(t)
	natsDir := filepath.Join(t.TempDir(), "js")
	ns := startNATS(t, "chaos-nats", natsDir)
	workers := make([]*proc, 3)
	for i := range workers {
		workers[i] = e.worker(t, "chaos-worker-"+string(rune('a'+i)), ns.url())
	}
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	n := *chaosRequests
	reqs := make([]messages.Request, n)
	for i := range reqs {
		reqs[i] = script(e.emu, i, "CH")
	}
	start := time.Now()
	// Requests arrive in ten batches, one per chaos step, so that kills
	// land while work is in flight.
	const batches = 10
	batch := (n + batches - 1) / batches
	next := 0
	publishNext := func() {
		if next < n {
			end := min(next+batch, n)
			publishAll(t, js, reqs[next:end])
			next = end
		}
	}
	publishNext()

	rng := rand.New(rand.NewPCG(1, 2))
	kills, natsRestarts := 0, 0
	deadline := time.Now().Add(4 * time.Minute)
	for {
		time.Sleep(time.Duration(1500+rng.IntN(1000)) * time.Millisecond) // the chaos cadence
		checkAlive(t, workers...)
		w := workers[rng.IntN(len(workers))]
		w.signal(t, syscall.SIGKILL, 5*time.Second)
		kills++
		w.start(t)
		publishNext()
		if natsRestarts == 0 && kills == 4 {
			if err := ns.signal(t, syscall.SIGTERM, 15*time.Second); err != nil {
				t.Logf("nats-server exit: %v", err)
			}
			ns.start(t)
			ns.waitReady(t)
			natsRestarts++
		}
		if eventsKept(js) >= uint64(n) && time.Since(start) >= *chaosSoak {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events after %s\n%s", eventsKept(js), n, time.Since(start), workers[0].tail())
		}
	}
	elapsed := time.Since(start)

	counts, outcomes := eventCounts(t, js)
	duplicates, missing := 0, 0
	for _, r := range reqs {
		switch c := counts[r.ID]; {
		case c == 0:
			missing++
		case c > 1:
			duplicates += c - 1
		}
	}
	all, accepted := starts(e.emu)
	maxPosts, totalPosts, totalAccepted := 0, 0, 0
	for inv, c := range all {
		maxPosts = max(maxPosts, c)
		totalPosts += c
		totalAccepted += accepted[inv]
	}
	t.Logf("chaos: %d requests, %d worker kills (SIGKILL), %d NATS restart(s), %d events, %d missing, %d duplicates seen by consumers, first calls (POSTs) per request max %d (total %d, %d accepted), %s; outcomes: %s",
		n, kills, natsRestarts, len(counts), missing, duplicates, maxPosts, totalPosts, totalAccepted, elapsed.Round(time.Millisecond), summarize(outcomes))
	if missing > 0 || duplicates > 0 || len(counts) != n {
		t.Errorf("want exactly one event per request: %d missing, %d duplicates, %d ids", missing, duplicates, len(counts))
	}
	if maxPosts > 1 {
		t.Errorf("the emulator saw %d POSTs for one request", maxPosts)
	}
}
