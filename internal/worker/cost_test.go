package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// A cost details report of several blobs completes with every file (link,
// announced size, expiry) and the manifest, each file archived as its own
// object beside an archive manifest listing them.
func TestCostDetailsManifestOfSeveralFiles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	sizes := []int64{1000, 2500, 70000}
	b.emu.SetCostReport(inv, emulator.CostReport{BlobSizes: sizes})
	b.emu.Script(inv, emulator.Accepted("1"), emulator.OK())
	req := devstack.Sample(messages.KindCostDetails, b.id(), inv)
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("want a completion, got %+v", o.Failed)
	}
	c := o.Completed
	if len(c.Files) != len(sizes) || c.URL != "" {
		t.Fatalf("files %+v, url %q: want %d files and no single url", c.Files, c.URL, len(sizes))
	}
	var total int64
	for i, f := range c.Files {
		if f.ByteCount != sizes[i] || !strings.Contains(f.URL, "sig=") || f.ExpiryTime == nil {
			t.Errorf("file %d = %+v, want %d bytes, a SAS link and an expiry", i, f, sizes[i])
		}
		total += sizes[i]
	}
	if m := c.Manifest; m == nil || m.BlobCount != len(sizes) || m.ByteCount != total || m.DataFormat != "Csv" {
		t.Errorf("manifest = %+v", c.Manifest)
	}
	// Each file is archived as its own object, its digest the one the
	// emulator served, and the event's archive is the manifest's.
	served := map[string]string{}
	for _, sv := range b.emu.ServedFor(inv) {
		served[sv.File] = sv.SHA256
	}
	for i, f := range c.Files {
		a := f.Archive
		if a == nil || a.Error != nil || a.Size != sizes[i] || a.SHA256 == "" || served[path.Base(a.Name)] != a.SHA256 {
			t.Errorf("file %d archive = %+v, served %v", i, a, served)
		}
	}
	if a := c.Archive; a == nil || a.Error != nil || path.Base(a.Name) != messages.ManifestFile || a.ContentType != "application/json" {
		t.Fatalf("archive = %+v, want the manifest", c.Archive)
	}
	var m messages.ArchiveManifest
	var buf bytes.Buffer
	if _, err := b.stack.Client.Fetch(context.Background(), req.ID, &buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || len(m.Files) != len(sizes) || m.ID != req.ID || m.Manifest == nil {
		t.Fatalf("manifest %s: %v", buf.String(), err)
	}
	for i, f := range m.Files {
		if f.Name != c.Files[i].Archive.Name || f.SHA256 != c.Files[i].Archive.SHA256 || f.ByteCount != sizes[i] {
			t.Errorf("manifest file %d = %+v", i, f)
		}
	}
	if c.AzureCalls != 2 {
		t.Errorf("azureCalls = %d, want 2", c.AzureCalls)
	}
	// The Location was polled as given: the emulator checks its path and
	// api-version, and logged the poll.
	calls := b.emu.CallsFor(inv)
	if len(calls) != 2 || calls[1].Phase != emulator.PhasePoll || !strings.Contains(calls[1].Path, "/costDetailsOperationResults/") {
		t.Errorf("calls = %+v", calls)
	}
}

// NoDataFound and a 204 both complete without files, saying noData.
func TestCostDetailsNoData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for name, reply := range map[string]emulator.Reply{
		"NoDataFound": emulator.Report(emulator.ReportNoData),
		"204":         emulator.NoContent(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			b.emu.Script(inv, emulator.Accepted("1"), reply)
			req := devstack.Sample(messages.KindCostDetails, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want a completion, got %+v", o.Failed)
			}
			if c := o.Completed; !c.NoData || len(c.Files) != 0 || c.URL != "" || c.Archive != nil {
				t.Errorf("completion = %+v, want noData without files or archive", c)
			}
		})
	}
}

// A report whose status says Failed ends in a failure event with Azure's
// error; one still Running on a 200 is polled again at the same Location.
func TestCostReportFailedAndRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	t.Run("failed", func(t *testing.T) {
		t.Parallel()
		inv := b.invoice()
		failed := emulator.Report(emulator.ReportFailed)
		failed.ErrorCode, failed.ErrorMessage = "ReportTooLarge", "The report is larger than the limit."
		b.emu.Script(inv, emulator.Accepted("1"), failed)
		req := devstack.Sample(messages.KindCostDetails, b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, eventTimeout)
		if o.Failed == nil {
			t.Fatalf("want a failure, got %+v", o.Completed)
		}
		f := o.Failed
		if f.Code != messages.CodeAzureError || f.Azure == nil || f.Azure.Code != "ReportTooLarge" || !strings.Contains(f.Azure.Message, "larger") {
			t.Errorf("failure = %+v azure %+v", f, f.Azure)
		}
	})
	for _, kind := range []messages.Kind{messages.KindReservationDetails, messages.KindBenefitUtilization} {
		t.Run("running "+string(kind), func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			b.emu.Script(inv, emulator.Accepted("1"), emulator.Report(emulator.ReportRunning), emulator.OK())
			req := devstack.Sample(kind, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want a completion, got %+v", o.Failed)
			}
			calls := b.emu.CallsFor(inv)
			if len(calls) != 3 || calls[1].Path != calls[2].Path || calls[1].Query != calls[2].Query {
				t.Errorf("calls = %+v, want the same Location polled twice", calls)
			}
			c := o.Completed
			if len(c.Files) != 1 || c.Files[0].URL != c.URL || c.ExpiryTime == nil {
				t.Errorf("completion = %+v", c)
			}
			if (kind == messages.KindBenefitUtilization) != strings.Contains(c.SecondaryURL, "sig=") {
				t.Errorf("secondaryUrl = %q", c.SecondaryURL)
			}
		})
	}
}

// Cost Management's throttling headers are waited for, and a 4xx ends
// the report with Azure's error.
func TestCostReportThrottledAndRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		inv := b.invoice()
		b.emu.Script(inv, emulator.Throttled(http.StatusTooManyRequests, poll.HeaderCostManagementQPURetryAfter, "1"), emulator.Accepted("1"), emulator.OK())
		req := devstack.Sample(messages.KindAccountPriceSheet, b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, eventTimeout)
		if o.Completed == nil {
			t.Fatalf("want a completion, got %+v", o.Failed)
		}
		calls := b.emu.CallsFor(inv)
		if len(calls) != 3 || calls[1].Time.Sub(calls[0].Time) < 900e6 {
			t.Errorf("calls = %+v, want the second a second after the 429", calls)
		}
		if len(o.Completed.DownloadFileProperties) == 0 || o.Completed.ValidTill == nil {
			t.Errorf("completion = %+v", o.Completed)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		inv := b.invoice()
		b.emu.Script(inv, emulator.Reply{Status: http.StatusBadRequest, ErrorCode: "InvalidBillingPeriod", ErrorMessage: "No data older than 13 months."})
		req := devstack.Sample(messages.KindAccountPriceSheet, b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, eventTimeout)
		if o.Failed == nil || o.Failed.Code != messages.CodeAzureError || o.Failed.Azure.Code != "InvalidBillingPeriod" {
			t.Fatalf("want azure_error InvalidBillingPeriod, got %+v", o)
		}
	})
}

// An invalid cost details request gets a failure event naming the
// problem, and is dead-lettered; Azure is never called.
func TestCostDetailsInvalidRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := devstack.Sample(messages.KindCostDetails, b.id(), b.invoice())
	req.Params.InvoiceName, req.Params.PeriodStartDate, req.Params.PeriodEndDate = "", "2026-01-15", "2026-02-20"
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeInvalidRequest {
		t.Fatalf("want invalid_request, got %+v", o)
	}
	found := false
	for _, f := range o.Failed.Fields {
		found = found || f.Field == "params.periodEndDate" && strings.Contains(f.Message, "at most a month")
	}
	if !found {
		t.Errorf("fields = %+v", o.Failed.Fields)
	}
	// The dead letter is stored before the failure event is published.
	dls, err := b.stack.Client.DeadLetters(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, dl := range dls {
		kept = kept || strings.Contains(string(dl.Data), req.ID) && dl.Code == string(messages.CodeInvalidRequest)
	}
	if !kept {
		t.Errorf("no dead letter of %s among %d", req.ID, len(dls))
	}
	if calls := b.emu.Calls(); len(calls) != 0 {
		t.Errorf("Azure was called %d times", len(calls))
	}
}

// A blob cut mid-body is downloaded again, and the ones stored before it
// are not; a blob whose link has expired gets the report asked for again
// (within the deadline), whose files are all downloaded (a new report).
func TestCostDetailsArchiveFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.BackoffInitial, c.BackoffMax = 50*time.Millisecond, 100*time.Millisecond })
	sizes := []int64{300 << 10, 200 << 10, 100 << 10}
	for name, rep := range map[string]emulator.CostReport{
		"cut":     {BlobSizes: sizes, CutBlob: 2},
		"expired": {BlobSizes: sizes, ExpireBlob: 2},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			b.emu.SetCostReport(inv, rep)
			b.emu.Script(inv, emulator.Accepted("1"), emulator.OK())
			req := devstack.Sample(messages.KindCostDetails, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want a completion, got %+v", o.Failed)
			}
			c := o.Completed
			if c.Archive == nil || c.Archive.Error != nil {
				t.Fatalf("archive = %+v", c.Archive)
			}
			served := map[string]int{}
			for _, sv := range b.emu.ServedFor(inv) {
				served[sv.File]++
			}
			for i, f := range c.Files {
				if f.Archive == nil || f.Archive.Size != sizes[i] {
					t.Errorf("file %d archive = %+v", i, f.Archive)
				}
			}
			// Cut: each blob was served whole once, the first not downloaded
			// again after the second failed. Expired: the report asked for
			// again is a new report, its first blob downloaded again (and
			// found equal to the one stored).
			want := map[string]map[string]int{
				"cut":     {"costdetails_0001.csv": 1, "costdetails_0002.csv": 1, "costdetails_0003.csv": 1},
				"expired": {"costdetails_0001.csv": 2, "costdetails_0002.csv": 1, "costdetails_0003.csv": 1},
			}[name]
			if len(served) != 3 || served["costdetails_0001.csv"] != want["costdetails_0001.csv"] ||
				served["costdetails_0002.csv"] != 1 || served["costdetails_0003.csv"] != 1 {
				t.Errorf("served %v, want %v", served, want)
			}
			if got, want := b.emu.Downloads(inv), map[string]int{"cut": 4, "expired": 5}[name]; got != want {
				t.Errorf("%d downloads asked for, want %d", got, want)
			}
			starts := 0
			for _, call := range b.emu.CallsFor(inv) {
				if call.Phase == emulator.PhaseStart {
					starts++
				}
			}
			if want := map[string]int{"cut": 1, "expired": 2}[name]; starts != want {
				t.Errorf("the report was asked for %d times, want %d", starts, want)
			}
		})
	}
}
