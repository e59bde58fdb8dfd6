package e2e

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
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

	// Kill worker a once its download has run for a second.
	deadline := time.Now().Add(30 * time.Second)
	for e.emu.Downloads(inv) == 0 {
		checkAlive(t, a)
		if time.Now().After(deadline) {
			t.Fatal("worker a never started the download")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // mid-body: the download takes about three
	if err := a.signal(t, syscall.SIGKILL, 5*time.Second); err == nil {
		t.Fatal("worker a exited cleanly: it was not killed mid-upload")
	}
	if got := len(e.emu.ServedFor(inv)); got != 0 {
		t.Fatalf("the download finished before the kill (%d served whole): nothing was cut", got)
	}
	ctx := context.Background()
	var obs jetstream.ObjectStore
	retry(t, func(ctx context.Context) (err error) {
		obs, err = js.ObjectStore(ctx, messages.NewLayout("").ArchiveBucket())
		return err
	})
	if objs, err := obs.List(ctx); err == nil && len(objs) > 0 {
		t.Fatalf("an object is visible after the kill: %+v", objs[0])
	}

	b := e.worker(t, "archive-worker-b", ns.url())
	var ev messages.Completed
	deadline = time.Now().Add(60 * time.Second)
	for {
		checkAlive(t, b)
		counts, _ := eventCounts(t, js)
		if counts[req.ID] > 0 {
			if counts[req.ID] != 1 {
				t.Fatalf("%d events for %s", counts[req.ID], req.ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event after the restart:\n%s", b.tail())
		}
		time.Sleep(100 * time.Millisecond)
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
	for d := time.Now().Add(5 * time.Second); len(e.emu.ServedFor(inv)) == 0 && time.Now().Before(d); {
		time.Sleep(10 * time.Millisecond) // recorded just after the last byte
	}
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
