package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/azurite"
	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// runReport measures the archive of a cost details report of several
// blobs: one report of reportBlobs blobs of reportBlobSize bytes archived
// by one worker process (every blob streamed into its own object, then the
// archive manifest), beside a plain streaming copy of the same links, one
// after the other as the worker takes them, to the same store; and the
// worker's RSS growth. Once with the NATS Object Store, once with Azure
// Blob Storage (Azurite), when it is installed.
func runReport(ctx context.Context, o options, r *report) error {
	r.printf("\n## 9. Cost details report archive (%d blobs of %s, one report)\n\n", o.reportBlobs, mibBytes(o.reportBlobSize))
	r.printf("| store | the worker: publish to completion event | plain streaming copy of the same links | ratio | worker RSS idle → peak (growth) |\n|---|---:|---:|---:|---|\n")
	var errs []error
	for _, store := range []string{messages.StoreNATS, messages.StoreAzureBlob} {
		if err := reportStore(ctx, o, r, store); errors.Is(err, azurite.ErrNotInstalled) {
			r.printf("| %s | skipped: %v | | | |\n", store, err)
		} else if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", store, err))
		}
	}
	r.printf("\n")
	return errors.Join(errs...)
}

func reportStore(ctx context.Context, o options, r *report, store string) error {
	e, closeEmu, err := newProcEnv(ctx, o, "report-"+store, emulator.Options{Default: []emulator.Reply{emulator.OK()}})
	if err != nil {
		return err
	}
	defer closeEmu()
	env := []string{"BILLING_ARCHIVE_STORE=" + store}
	var connString string
	if store == messages.StoreAzureBlob {
		conn, stop, err := azurite.Launch(filepath.Join(e.dir, "azurite"))
		if err != nil {
			return err
		}
		defer stop()
		connFile := filepath.Join(e.dir, "azurite-conn")
		if err := os.WriteFile(connFile, []byte(conn), 0o600); err != nil {
			return err
		}
		connString = conn
		env = append(env, "BILLING_ARCHIVE_BUCKET=costs", "BILLING_ARCHIVE_CONNECTION_STRING_FILE="+connFile)
	}
	ns, url, err := e.startNATS("report-nats")
	if err != nil {
		return err
	}
	defer ns.stop(20 * time.Second)
	wk, err := startChild("report-worker", e.dir, []string{e.workerBin}, append(append(devstack.WorkerEnv(e.emu, e.ca, e.secretFile),
		"BILLING_NATS_URL="+url, "BILLING_NATS_NAME=report-worker", "BILLING_CONCURRENCY=4",
		"BILLING_LOG_LEVEL=warn", "BILLING_HEALTH_ADDR=127.0.0.1:0", "BILLING_THROTTLE=false"), env...), false)
	if err != nil {
		return err
	}
	defer wk.stop(30 * time.Second)
	bc, err := connectBench(url)
	if err != nil {
		return err
	}
	defer bc.nc.Close()
	if err := waitConsumers(ctx, bc.js, bc.cl.Layout().WorkStream(), wk); err != nil {
		return err
	}
	if connString != "" {
		bc.cl.SetBlobOpener(client.BlobConnectionString(connString))
	}

	// Warm up with a small report, then take the idle RSS.
	progress("report (%s): warm-up", store)
	warmInv := devstack.InvoiceName("RW", 1)
	e.emu.SetCostReport(warmInv, emulator.CostReport{BlobSizes: []int64{1 << 20, 1 << 20}})
	if _, _, err := archiveRun(ctx, bc.cl, []messages.Request{devstack.Sample(messages.KindCostDetails, "report-warm", warmInv)}, time.Minute); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(o.settle())
	idle, err := readStatus(wk.pid())
	if err != nil {
		return err
	}

	inv := devstack.InvoiceName("RB", 1)
	sizes := make([]int64, o.reportBlobs)
	for i := range sizes {
		sizes[i] = o.reportBlobSize
	}
	e.emu.SetCostReport(inv, emulator.CostReport{BlobSizes: sizes})
	req := devstack.Sample(messages.KindCostDetails, "report-1", inv)
	progress("report (%s): %d blobs of %s through the worker", store, o.reportBlobs, mibBytes(o.reportBlobSize))
	var (
		mu   sync.Mutex
		peak = idle.rssKB
	)
	stopSampling, sampled := make(chan struct{}), make(chan struct{})
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
	total := int64(o.reportBlobs) * o.reportBlobSize
	events, wall, err := archiveRun(ctx, bc.cl, []messages.Request{req}, timeoutFor(0, time.Duration(total>>20)*50*time.Millisecond))
	close(stopSampling)
	<-sampled
	if err != nil {
		return err
	}
	ev := events[0].Completed
	served := map[string]string{}
	for deadline := time.Now().Add(5 * time.Second); len(e.emu.ServedFor(inv)) < o.reportBlobs && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range e.emu.ServedFor(inv) {
		served[s.File] = s.SHA256
	}
	if len(ev.Files) != o.reportBlobs {
		return fmt.Errorf("%d files in the event, want %d", len(ev.Files), o.reportBlobs)
	}
	for i, f := range ev.Files {
		if f.Archive == nil || f.Archive.Size != o.reportBlobSize || served[filepath.Base(f.Archive.Name)] != f.Archive.SHA256 {
			return fmt.Errorf("file %d: archive %+v, the emulator served %v", i, f.Archive, served)
		}
	}

	// The plain copy: the same links (still valid), the same store, one
	// after the other, no worker.
	var st archive.Store
	switch store {
	case messages.StoreNATS:
		obs, err := bc.js.ObjectStore(ctx, bc.cl.Layout().ArchiveBucket())
		if err != nil {
			return err
		}
		st = archive.NewObjectStore(bc.js, obs, bc.cl.Layout().ArchiveBucket())
	default:
		cc, err := client.BlobConnectionString(connString)("costs")
		if err != nil {
			return err
		}
		st = archive.NewBlobStore(cc, "costs")
	}
	hc := config.PooledTransport(4, e.emu.CertPool())
	progress("report (%s): plain streaming copy of the same %d links", store, len(ev.Files))
	start := time.Now()
	for i, f := range ev.Files {
		if err := copyLink(ctx, hc, f.URL, func(body io.Reader) error {
			_, err := st.Put(ctx, "plain-copy/"+strconv.Itoa(i), archive.Meta{}, body)
			return err
		}); err != nil {
			return fmt.Errorf("plain copy: %w", err)
		}
	}
	copyTook := time.Since(start)
	wMBs, cMBs := float64(total)/(1<<20)/wall.Seconds(), float64(total)/(1<<20)/copyTook.Seconds()
	growth := (peak - idle.rssKB) * 1024
	r.printf("| %s | %s, %.0f MiB/s | %s, %.0f MiB/s | %.2f | %s → %s (%s; VmHWM %s) |\n", store, secs(wall), wMBs, secs(copyTook), cMBs, wMBs/cMBs,
		mib(idle.rssKB), mib(peak), mibBytes(growth), mib(mustHWM(wk.pid())))
	r.goal(wMBs >= 0.9*cMBs, "%s: report archive throughput %.0f MiB/s is at least 0.9 of a plain streaming copy's %.0f MiB/s (ratio %.2f)", store, wMBs, cMBs, wMBs/cMBs)
	r.goal(growth < 64<<20, "%s: worker RSS growth while archiving %d blobs of %s: %s, under 64 MiB", store, o.reportBlobs, mibBytes(o.reportBlobSize), mibBytes(growth))
	return nil
}

// copyLink GETs link and hands its body to put.
func copyLink(ctx context.Context, hc *http.Client, link string, put func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	return put(resp.Body)
}
