package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
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

// A worker SIGKILLed in the middle of the archive of a report of several
// files: another takes it over once the claim has expired, stores the
// files not yet stored (the one stored before the kill is not downloaded
// again), then the manifest; every file is stored once, and one event
// goes out.
func TestReportArchiveSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process run")
	}
	e := newEnv(t)
	ns := startNATS(t, "report-nats", t.TempDir())
	a := e.worker(t, "report-worker-a", ns.url())
	_, js := connect(t, ns.url())
	waitStream(t, js, messages.NewLayout("").WorkStream(), 30*time.Second)

	// Three blobs of 1 MiB served at 64 KiB every 100 ms: about 1.6 s each.
	inv := devstack.InvoiceName("RK", 1)
	e.emu.Script(inv, emulator.OK())
	sizes := []int64{1 << 20, 1 << 20, 1 << 20}
	e.emu.SetCostReport(inv, emulator.CostReport{BlobSizes: sizes})
	e.emu.SetDownload(inv, emulator.Download{Delay: 100 * time.Millisecond})
	req := devstack.Sample(messages.KindCostDetails, "report-kill-1", inv)
	publishAll(t, js, []messages.Request{req})

	// Kill worker a once the first file is stored and the second is on its
	// way.
	ctx := context.Background()
	var obs jetstream.ObjectStore
	testwait.ForNoError(t, 30*time.Second, "the first file stored, the second begun", func() error {
		checkAlive(t, a)
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		if obs == nil {
			if obs, err = js.ObjectStore(ctx, messages.NewLayout("").ArchiveBucket()); err != nil {
				obs = nil
				return err
			}
		}
		objs, err := obs.List(ctx)
		if err != nil {
			return err
		}
		st, err := obs.Status(ctx)
		if err != nil {
			return err
		}
		if len(objs) != 1 || st.Size() < uint64(sizes[0])+256<<10 {
			return fmt.Errorf("%d objects, %d bytes stored", len(objs), st.Size())
		}
		return nil
	})
	if err := a.signal(t, syscall.SIGKILL, 5*time.Second); err == nil {
		t.Fatal("worker a exited cleanly: it was not killed mid-archive")
	}
	if got := len(e.emu.ServedFor(inv)); got != 1 {
		t.Fatalf("%d files served whole before the kill, want 1", got)
	}

	b := e.worker(t, "report-worker-b", ns.url())
	var counts map[string]int
	if err := testwait.Until(90*time.Second, "the event after the restart", func() bool {
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
	var ev messages.Completed
	if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Archive == nil || ev.Archive.Error != nil || len(ev.Files) != 3 {
		t.Fatalf("event %s: %v", m.Data, err)
	}
	testwait.For(t, 5*time.Second, "every whole download recorded", func() bool { return len(e.emu.ServedFor(inv)) >= 3 })
	served := map[string]int{}
	digests := map[string]string{}
	for _, sv := range e.emu.ServedFor(inv) {
		served[sv.File]++
		digests[sv.File] = sv.SHA256
	}
	for i, f := range ev.Files {
		name := path.Base(f.Archive.Name)
		if served[name] != 1 || digests[name] != f.Archive.SHA256 || f.Archive.Size != sizes[i] {
			t.Errorf("file %d %s: served whole %d times, archive %+v", i, name, served[name], f.Archive)
		}
	}
	objs, err := obs.List(ctx)
	if err != nil || len(objs) != 4 {
		t.Fatalf("objects %v: %v, want the 3 files and the manifest", objs, err)
	}
}
