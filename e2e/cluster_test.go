package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A three-node JetStream cluster on loopback, the worker's streams and
// bucket at three replicas, two workers, a few hundred requests in flight;
// one node is killed and later restarted. Every request still ends in
// exactly one event.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster run")
	}
	e := newEnv(t)
	const nodes = 3
	ports := make([]int, nodes)
	var routes []string
	for i := range ports {
		ports[i] = freePort(t)
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	cluster := make([]*natsNode, nodes)
	for i := range cluster {
		cluster[i] = startNATS(t, fmt.Sprintf("node-%d", i+1), filepath.Join(t.TempDir(), "js"),
			"--cluster_name", "billing", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
	}
	var urls []string
	for _, n := range cluster {
		urls = append(urls, n.url())
	}
	all := strings.Join(urls, ",")
	workers := []*proc{
		e.worker(t, "cluster-worker-a", all, "BILLING_REPLICAS=3"),
		e.worker(t, "cluster-worker-b", all, "BILLING_REPLICAS=3"),
	}
	_, js := connect(t, all)
	waitStream(t, js, messages.NewLayout("").WorkStream(), time.Minute)

	const n = 400
	reqs := make([]messages.Request, n)
	for i := range reqs {
		reqs[i] = script(e.emu, i, "CL")
	}
	start := time.Now()
	publishAll(t, js, reqs[:n/2])
	// Kill a node while the first half is in flight, publish the rest
	// without it, and bring it back.
	victim := cluster[1]
	_ = victim.signal(t, syscall.SIGKILL, 5*time.Second) // killed: its exit error is expected
	publishAll(t, js, reqs[n/2:])
	time.Sleep(3 * time.Second) // the outage: the node stays down this long while requests flow (the scenario, not a wait)
	victim.start(t)
	victim.waitReady(t)

	if err := testwait.Until(3*time.Minute, "every event", func() bool {
		checkAlive(t, workers...)
		return eventsKept(js) >= n
	}); err != nil {
		t.Fatalf("%v: %d of %d\n%s", err, eventsKept(js), n, workers[0].tail())
	}
	counts, outcomes := eventCounts(t, js)
	bad := 0
	for _, r := range reqs {
		if counts[r.ID] != 1 {
			bad++
			t.Errorf("request %s: %d events", r.ID, counts[r.ID])
		}
	}
	t.Logf("cluster: %d requests on 3 nodes (R3), 2 workers, node-2 killed and restarted: %d events, %d requests without exactly one, %s; outcomes: %s",
		n, len(counts), bad, time.Since(start).Round(time.Millisecond), summarize(outcomes))
}
