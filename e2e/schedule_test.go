package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// A recurring schedule held by a separate nats-server process, two worker
// processes taking its fires: each fire starts exactly one request, also
// after one of the workers is killed.
func TestScheduleAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process schedule run")
	}
	e := newEnv(t)
	e.emu.SetDefault(emulator.OK())
	n := startNATS(t, "schedules", t.TempDir())
	workers := []*proc{e.worker(t, "schedule-worker-a", n.url()), e.worker(t, "schedule-worker-b", n.url())}
	nc, js := connect(t, n.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), time.Minute)
	c, err := client.New(nc, "")
	if err != nil {
		t.Fatal(err)
	}
	const id = "e2e-every-2s"
	s := messages.Schedule{Version: 1, ID: id, Cron: "*/2 * * * * *", Request: messages.ScheduledRequest{
		Kind:   messages.KindInvoiceSummary,
		Params: devstack.Sample(messages.KindInvoiceSummary, "template", devstack.InvoiceName("SCH", 1)).Params,
	}}
	// The workers set up the schedules' bucket when they start: retry
	// until it takes the schedule.
	testwait.ForNoError(t, 30*time.Second, "the schedule stored", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.PutSchedule(ctx, s)
		return err
	})
	fired := func() map[string]int {
		counts, _ := eventCounts(t, js)
		for k := range counts {
			if !strings.HasPrefix(k, id+"-") {
				delete(counts, k)
			}
		}
		return counts
	}
	testwait.For(t, 30*time.Second, "two fires handled", func() bool { return len(fired()) >= 2 })
	// One worker goes; the other takes the next fires.
	_ = workers[0].signal(t, syscall.SIGKILL, 5*time.Second) // killed: its exit error is expected
	before := len(fired())
	testwait.For(t, 30*time.Second, "two more fires handled by the remaining worker", func() bool { return len(fired()) >= before+2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.DeleteSchedule(ctx, id); err != nil {
		t.Fatal(err)
	}
	checkAlive(t, workers[1])
	for req, count := range fired() {
		if count != 1 {
			t.Errorf("request %s: %d events, want 1 (one request per fire)", req, count)
		}
	}
	// One Azure call per request (each answered at once): no fire started
	// its request twice, and no request was sent twice.
	inv := devstack.InvoiceName("SCH", 1)
	testwait.For(t, 20*time.Second, "one Azure call per fired request", func() bool {
		return len(e.emu.CallsFor(inv)) == len(fired())
	})
}
