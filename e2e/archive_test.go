package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// A worker SIGKILLed in the middle of an archive upload leaves no object
// visible; another worker takes the operation over once the claim has
// expired, archives the document whole, and one event goes out.
func TestArchiveSurvivesSIGKILLMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	e := newEnv(t)
	ns := startNATS(t, "archive-nats", t.TempDir())
	a := e.worker(t, "archive-worker-a", ns.url())
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	// Two MiB served at 64 KiB every 100 ms: about three seconds a download.
	inv := devstack.InvoiceName("AK", 1)
	e.emu.Script(inv, emulator.OK())
	e.emu.SetDownload(inv, emulator.Download{Size: 2 << 20, Delay: 100 * time.Millisecond})
	req := devstack.Sample(messages.KindInvoiceSummary, "archive-kill-1", inv)
	publishAll(t, js, []messages.Request{req})

	// Kill worker a mid-upload: once a quarter of the document is stored
	// as chunks (under no name yet), of a download that takes about three
	// seconds.
	var obs jetstream.ObjectStore
	testwait.ForNoError(t, 30*time.Second, "a quarter of the document stored", func() error {
		checkAlive(t, a)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var err error
		if obs == nil {
			if obs, err = js.ObjectStore(ctx, messages.NewLayout("").ArchiveBucket()); err != nil {
				obs = nil
				return err
			}
		}
		st, err := obs.Status(ctx)
		if err == nil && st.Size() < 512<<10 {
			err = fmt.Errorf("%d bytes stored", st.Size())
		}
		return err
	})
	if err := a.signal(t, syscall.SIGKILL, 5*time.Second); err == nil {
		t.Fatal("worker a exited cleanly: it was not killed mid-upload")
	}
	if got := len(e.emu.ServedFor(inv)); got != 0 {
		t.Fatalf("the download finished before the kill (%d served whole): nothing was cut", got)
	}
	ctx := context.Background()
	if objs, err := obs.List(ctx); err == nil && len(objs) > 0 {
		t.Fatalf("an object is visible after the kill: %+v", objs[0])
	}

	b := e.worker(t, "archive-worker-b", ns.url())
	var ev messages.Completed
	var counts map[string]int
	if err := testwait.Until(60*time.Second, "the event after the restart", func() bool {
		checkAlive(t, b)
		counts, _ = eventCounts(t, js)
		return counts[req.ID] > 0
	}); err != nil {
		t.Fatalf("%v:\n%s", err, b.tail())
	}
	if counts[req.ID] != 1 {
		t.Fatalf("%d events for %s", counts[req.ID], req.ID)
	}
	stream, err := js.Stream(ctx, messages.NewLayout("").EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, messages.NewLayout("").EventsFor(req.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Archive == nil || ev.Archive.Error != nil {
		t.Fatalf("event %s: %v", m.Data, err)
	}
	// The emulator records a whole download just after its last byte.
	testwait.For(t, 5*time.Second, "the whole download recorded", func() bool { return len(e.emu.ServedFor(inv)) > 0 })
	served := e.emu.ServedFor(inv)
	if len(served) != 1 || served[0].SHA256 != ev.Archive.SHA256 || served[0].Size != ev.Archive.Size || e.emu.Downloads(inv) != 2 {
		t.Fatalf("archive %+v; served whole %+v of %d downloads", ev.Archive, served, e.emu.Downloads(inv))
	}
	objs, err := obs.List(ctx)
	if err != nil || len(objs) != 1 || objs[0].Name != ev.Archive.Name || objs[0].Size != uint64(ev.Archive.Size) {
		t.Fatalf("objects %v: %v", objs, err)
	}
	// What worker a had sent of the cut upload is under no name, and is
	// not read as part of the object.
	r, err := obs.Get(ctx, ev.Archive.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := r.Read(make([]byte, 1))
	if err != nil || n != 1 {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
