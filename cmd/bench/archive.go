package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// runArchive measures the archive: archiveN documents of archiveSize
// bytes completed at once by one worker process archiving to the NATS
// Object Store (its throughput, and its RSS growth over its idle RSS),
// beside a plain streaming copy of the same documents, from the same
// emulator links to the same bucket, by this process with as many
// goroutines.
func runArchive(ctx context.Context, o options, r *report) error {
	size := o.archiveSize
	r.printf("\n## 8. Archive (%d documents of %s at once, NATS Object Store)\n\n", o.archiveN, mibBytes(size))
	e, closeEmu, err := newProcEnv(ctx, o, "archive", emulator.Options{
		Default: []emulator.Reply{emulator.OK()},
	})
	if err != nil {
		return err
	}
	defer closeEmu()
	ns, url, err := e.startNATS("archive-nats")
	if err != nil {
		return err
	}
	defer ns.stop(20 * time.Second)
	conc := max(o.archiveN, 4)
	wk, err := startChild("archive-worker", e.dir, []string{e.workerBin}, append(devstack.WorkerEnv(e.emu, e.ca, e.secretFile),
		"BILLING_NATS_URL="+url, "BILLING_NATS_NAME=archive-worker",
		"BILLING_CONCURRENCY="+strconv.Itoa(conc), "BILLING_LOG_LEVEL=warn", "BILLING_HEALTH_ADDR=127.0.0.1:0",
		"BILLING_ARCHIVE_STORE=nats",
		"BILLING_THROTTLE=false", // the archive, not Azure's budget
	), false)
	if err != nil {
		return err
	}
	defer wk.stop(30 * time.Second)
	bc, err := connectBench(url)
	if err != nil {
		return err
	}
	defer bc.nc.Close()
	l := bc.cl.Layout()
	if err := waitConsumers(ctx, bc.js, l.WorkStream(), wk); err != nil {
		return err
	}

	// Warm up with small documents (the token, the connections, the
	// bucket), then take the idle RSS.
	progress("archive: warm-up")
	warm := make([]messages.Request, 2*conc)
	for i := range warm {
		warm[i] = devstack.Sample(messages.KindInvoiceSummary, fmt.Sprintf("awarm-%d", i), devstack.InvoiceName("AW", i))
	}
	if _, _, err := archiveRun(ctx, bc.cl, warm, time.Minute); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(o.settle())
	idle, err := readStatus(wk.pid())
	if err != nil {
		return err
	}

	// The measured run, the worker's RSS sampled every 50 ms.
	progress("archive: %d documents of %s through the worker", o.archiveN, mibBytes(size))
	reqs := make([]messages.Request, o.archiveN)
	for i := range reqs {
		inv := devstack.InvoiceName("AR", i)
		e.emu.SetDownload(inv, emulator.Download{Size: size})
		reqs[i] = devstack.Sample(messages.KindInvoiceSummary, fmt.Sprintf("archive-%d", i), inv)
	}
	var (
		mu   sync.Mutex
		peak = idle.rssKB
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
			if s, err := readStatus(wk.pid()); err == nil {
				mu.Lock()
				peak = max(peak, s.rssKB)
				mu.Unlock()
			}
		}
	}()
	events, wall, err := archiveRun(ctx, bc.cl, reqs, timeoutFor(0, time.Duration(o.archiveN)*time.Duration(size>>20)*50*time.Millisecond))
	close(stopSampling)
	<-sampled
	if err != nil {
		return err
	}
	if wk.exited() {
		return fmt.Errorf("the worker exited:\n%s", wk.tail())
	}
	for i, ev := range events {
		a := ev.Completed.Archive
		inv := reqs[i].Params.InvoiceName
		deadline := time.Now().Add(5 * time.Second)
		for len(e.emu.ServedFor(inv)) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		served := e.emu.ServedFor(inv)
		if len(served) != 1 || served[0].SHA256 != a.SHA256 || a.Size != size {
			return fmt.Errorf("%s: archive %+v, the emulator served %+v", ev.ID, a, served)
		}
	}
	total := int64(o.archiveN) * size

	// The plain copy: the same links (still valid), the same bucket, the
	// same concurrency, no worker.
	hc := config.PooledTransport(conc, e.emu.CertPool())
	obs, err := bc.js.ObjectStore(ctx, l.ArchiveBucket())
	if err != nil {
		return err
	}
	store := archive.NewObjectStore(bc.js, obs, l.ArchiveBucket())
	progress("archive: plain streaming copy of the same documents, %d at once", o.archiveN)
	copyTook, err := plainCopy(ctx, events, hc, "plain", o.archiveN, func(ctx context.Context, name string, body io.Reader) error {
		_, err := store.Put(ctx, name, archive.Meta{}, body)
		return err
	})
	if err != nil {
		return fmt.Errorf("plain copy: %w", err)
	}
	libPut := func(ctx context.Context, name string, body io.Reader) error {
		_, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, body)
		return err
	}
	progress("archive: the same with the client library's ObjectStore.Put, %d at once", o.archiveN)
	libTook, libErr := plainCopy(ctx, events, hc, "library", o.archiveN, libPut)
	progress("archive: the same with the client library's ObjectStore.Put, one at a time")
	seqTook, seqErr := plainCopy(ctx, events, hc, "library-seq", 1, libPut)
	rateOf := func(d time.Duration, err error) string {
		if err != nil {
			return "failed: " + err.Error()
		}
		return fmt.Sprintf("%.0f MiB/s", float64(total)/(1<<20)/d.Seconds())
	}
	timeOf := func(d time.Duration, err error) string {
		if err != nil {
			return "—"
		}
		return secs(d)
	}
	wMBs, cMBs := float64(total)/(1<<20)/wall.Seconds(), float64(total)/(1<<20)/copyTook.Seconds()
	growth := (peak - idle.rssKB) * 1024
	r.printf("| what | time | throughput |\n|---|---:|---:|\n")
	r.printf("| the worker: publish to the last completion event (download, SHA-256, Object Store put, event) | %s | %.0f MiB/s |\n", secs(wall), wMBs)
	r.printf("| plain streaming copy: GET each link, internal/archive's Object Store put, %d at once, in the bench process | %s | %.0f MiB/s |\n", o.archiveN, secs(copyTook), cMBs)
	r.printf("| the same copy through the client library's ObjectStore.Put, %d at once | %s | %s |\n", o.archiveN, timeOf(libTook, libErr), rateOf(libTook, libErr))
	r.printf("| the same copy through the client library's ObjectStore.Put, one at a time | %s | %s |\n\n", timeOf(seqTook, seqErr), rateOf(seqTook, seqErr))
	r.printf("Worker RSS: idle %s, peak while archiving %s: growth %s for %s of documents in flight (VmHWM %s).\n",
		mib(idle.rssKB), mib(peak), mibBytes(growth), mibBytes(total), mib(mustHWM(wk.pid())))
	r.goal(wMBs >= 0.8*cMBs, "archive throughput %.0f MiB/s is at least 0.8 of a plain streaming copy's %.0f MiB/s (ratio %.2f)", wMBs, cMBs, wMBs/cMBs)
	r.goal(growth < 64<<20, "worker RSS growth while archiving %d documents of %s at once: %s, under 64 MiB", o.archiveN, mibBytes(size), mibBytes(growth))
	return nil
}

// archiveRun submits reqs and returns their events in request order and
// the time from the first submission to the last event, failing unless
// every one completed with an archive.
func archiveRun(ctx context.Context, cl *client.Client, reqs []messages.Request, timeout time.Duration) ([]client.Outcome, time.Duration, error) {
	w, err := cl.Watch(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer w.Stop()
	index := map[string]int{}
	start := time.Now()
	for i, req := range reqs {
		index[req.ID] = i
		if _, err := cl.Submit(ctx, req, nil); err != nil {
			return nil, 0, err
		}
	}
	out := make([]client.Outcome, len(reqs))
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for seen := 0; seen < len(reqs); {
		o, err := w.Next(wctx)
		if err != nil {
			return nil, 0, fmt.Errorf("%d of %d events: %w", seen, len(reqs), err)
		}
		i, ok := index[o.ID]
		if !ok {
			continue
		}
		if o.Completed == nil || o.Completed.Archive == nil || o.Completed.Archive.Error != nil {
			return nil, 0, fmt.Errorf("%s: not archived: %s", o.ID, o.Data)
		}
		out[i] = o
		seen++
	}
	return out, time.Since(start), nil
}

// plainCopy streams each event's link through put under a name of its
// own, conc at once, and returns how long it took.
func plainCopy(ctx context.Context, events []client.Outcome, hc *http.Client, tag string, conc int, put func(context.Context, string, io.Reader) error) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, len(events))
	sem := make(chan struct{}, conc)
	for i, ev := range events {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ev.Completed.URL, nil)
			if err != nil {
				errs <- err
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("GET: %s", resp.Status)
				return
			}
			errs <- put(ctx, tag+"-copy/"+strconv.Itoa(i), resp.Body)
		}()
	}
	var first error
	for range events {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return time.Since(start), first
}

func mibBytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func mustHWM(pid int) int64 {
	s, _ := readStatus(pid)
	return s.hwmKB
}
