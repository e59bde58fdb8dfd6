package e2e

import (
	"context"
	"flag"
	"fmt"
	"github.com/azbilling/worker/internal/throttle"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/messages"
)

var (
	chaosRequests = flag.Int("chaos.requests", 2000, "requests in the chaos run")
	chaosSoak     = flag.Duration("chaos.soak", 0, "keep killing workers at least this long (a longer soak than CI's)")
)

// Three worker processes, one nats-server process, thousands of requests
// of every kind with polls, throttling and slow first answers, and poison
// messages among them; a random worker is killed with SIGKILL every couple
// of seconds and restarted, and the NATS server is stopped three times:
// SIGTERM with a quick restart, SIGKILL with an outage longer than the
// JetStream request timeout while calls are in flight, and SIGKILL with a
// quick restart. Every request must end in exactly one event, every poison
// message in one failure event, no worker may die on its own, and a first
// call is sent again only within its bound (after a worker died mid-call).
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

	poison := 0
	publishPoison := func() {
		// An id far over the limit: before the fix it closed the worker's
		// NATS connection for good.
		id := fmt.Sprintf("%s-%d", strings.Repeat("p", 4100), poison)
		publishRaw(t, js, messages.NewLayout("").Request(messages.KindInvoice),
			[]byte(`{"version":1,"id":"`+id+`","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`))
		poison++
	}
	publishPoison()

	rng := rand.New(rand.NewPCG(1, 2))
	kills, natsRestarts := 0, 0
	// Which kill brings which NATS stop, and how long the server stays away.
	natsStops := map[int]struct {
		sig    syscall.Signal
		outage time.Duration
	}{4: {syscall.SIGTERM, 0}, 6: {syscall.SIGKILL, 7 * time.Second}, 9: {syscall.SIGKILL, 0}}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		time.Sleep(time.Duration(1500+rng.IntN(1000)) * time.Millisecond) // the chaos cadence: the scenario, not a wait
		checkAlive(t, workers...)
		w := workers[rng.IntN(len(workers))]
		_ = w.signal(t, syscall.SIGKILL, 5*time.Second) // killed: its exit error is expected
		kills++
		w.start(t)
		publishNext()
		publishPoison()
		if stop, ok := natsStops[kills]; ok {
			if err := ns.signal(t, stop.sig, 15*time.Second); err != nil {
				t.Logf("nats-server exit: %v", err)
			}
			time.Sleep(stop.outage) // the outage's length is the scenario, not a wait
			ns.start(t)
			ns.waitReady(t)
			natsRestarts++
		}
		if eventsKept(js) >= uint64(n+poison) && kills >= 10 && time.Since(start) >= *chaosSoak {
			break
		}
		if time.Now().After(deadline) {
			if st, err := throttle.List(context.Background(), js, messages.NewLayout("")); err == nil {
				for _, x := range st {
					t.Logf("throttle scope at the deadline: %+v, learned %+v", x, x.Learned)
				}
			}
			t.Fatalf("only %d of %d events after %s\n%s", eventsKept(js), n+poison, time.Since(start), workers[0].tail())
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
	maxPosts, totalPosts, totalAccepted, repeated := 0, 0, 0, 0
	for inv, c := range all {
		maxPosts = max(maxPosts, c)
		totalPosts += c
		totalAccepted += accepted[inv]
		if c > 1 {
			repeated++
		}
	}
	t.Logf("chaos: %d requests + %d poison, %d worker kills (SIGKILL), %d NATS stops (SIGTERM, SIGKILL with a 7 s outage, SIGKILL), %d events for requests, %d missing, %d duplicates, %d poison failures, first calls (POSTs) per request max %d (total %d, %d accepted, %d requests with a repeat), %s; outcomes: %s",
		n, poison, kills, natsRestarts, len(counts)-1, missing, duplicates, counts[messages.Invalid], maxPosts, totalPosts, totalAccepted, repeated, elapsed.Round(time.Millisecond), summarize(outcomes))
	if missing > 0 || duplicates > 0 || len(counts) != n+1 {
		t.Errorf("want exactly one event per request: %d missing, %d duplicates, %d ids", missing, duplicates, len(counts))
	}
	if counts[messages.Invalid] != poison {
		t.Errorf("%d failure events for %d poison messages", counts[messages.Invalid], poison)
	}
	// A first call is repeated only when its answer was lost (a worker or
	// the server died mid-call), at most max-unanswered-calls (3) times.
	if maxPosts > 3 {
		t.Errorf("the emulator saw %d POSTs for one request", maxPosts)
	}
	checkAlive(t, workers...)
}

// publishRaw publishes data as it is, retrying until the server takes it.
func publishRaw(t *testing.T, js jetstream.JetStream, subject string, data []byte) {
	t.Helper()
	retry(t, func(ctx context.Context) error {
		_, err := js.Publish(ctx, subject, data)
		return err
	})
}
