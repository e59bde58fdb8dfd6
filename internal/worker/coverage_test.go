package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// Each collection that ends leaves a record per month of its period: the
// grid says complete, partial, failed or never collected exactly as the
// emulator's log has it, and a newer collection of a month replaces the
// older one's record.
func TestCoverageOfCollections(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 2)
	b.emu.SetUnnamedDocuments(true)
	ctx := context.Background()
	const good, refused = "20000021", "20000022"
	b.emu.Script(refused, emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "not yours"))
	// A scope known (discovered, say) and never collected.
	known := client.CoverageScope{Kind: "account", ID: "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31",
		Name: "Contoso MCA", AgreementType: "MicrosoftCustomerAgreement"}
	testwait.ForNoError(t, eventTimeout, "the coverage bucket", func() error { return b.stack.Client.PutScope(ctx, known) })

	// Which month each invoice is in, from the listing.
	list := listing(messages.KindAccountInvoices, b.id(), good)
	list.Params.PeriodStartDate, list.Params.PeriodEndDate = "2026-01-01", "2026-02-28"
	b.submit(list)
	lo := b.wait(list.ID, eventTimeout)
	if lo.Completed == nil {
		t.Fatalf("listing: %+v", lo.Failed)
	}
	monthOf := map[string]string{}
	for _, inv := range lo.Completed.Invoices {
		monthOf[inv.Name] = inv.InvoiceDate.UTC().Format("2006-01")
	}
	before := len(b.emu.Calls())

	req := collectionRequest(b.id(), good)
	req.Params.PeriodStartDate, req.Params.PeriodEndDate = list.Params.PeriodStartDate, list.Params.PeriodEndDate
	b.submit(req)
	if o := b.wait(req.ID, 2*eventTimeout); o.Completed == nil {
		t.Fatalf("collection: %+v", o.Failed)
	}
	bad := collectionRequest(b.id(), refused)
	bad.Params.PeriodStartDate, bad.Params.PeriodEndDate = req.Params.PeriodStartDate, req.Params.PeriodEndDate
	b.submit(bad)
	if o := b.wait(bad.ID, eventTimeout); o.Failed == nil {
		t.Fatalf("refused collection: %+v", o.Completed)
	}

	// The emulator's log, by month: downloads started, and answered 404.
	type tally struct{ started, missing int }
	logged := map[string]*tally{"2026-01": {}, "2026-02": {}}
	for _, c := range b.emu.Calls()[before:] {
		m, ok := monthOf[c.InvoiceName]
		if !ok || c.Operation == emulator.OpAccountInvoiceList {
			continue
		}
		if c.Phase == emulator.PhaseStart {
			logged[m].started++
			if c.Status == http.StatusNotFound {
				logged[m].missing++
			}
		}
	}
	var g client.CoverageGrid
	testwait.ForNoError(t, eventTimeout, "both collections' records", func() error {
		var err error
		g, err = b.stack.Client.Coverage(ctx, "2025-12", "2026-02")
		if err == nil && g.Totals[client.CoverageNever] != 5 {
			return fmt.Errorf("grid %+v", g.Totals)
		}
		return err
	})
	rows := map[string]client.CoverageRow{}
	for _, r := range g.Rows {
		rows[r.Scope.ID] = r
	}
	if len(rows) != 3 || rows[known.ID].Scope.Name != "Contoso MCA" {
		t.Fatalf("rows %+v", g.Rows)
	}
	statuses := func(r client.CoverageRow) (out []string) {
		for _, c := range r.Cells {
			out = append(out, c.Status)
		}
		return out
	}
	want := map[string][]string{
		good:     {client.CoverageNever, client.CoverageComplete, client.CoveragePartial},
		refused:  {client.CoverageNever, client.CoverageFailed, client.CoverageFailed},
		known.ID: {client.CoverageNever, client.CoverageNever, client.CoverageNever},
	}
	for id, w := range want {
		if got := statuses(rows[id]); !slices.Equal(got, w) {
			t.Errorf("%s: %v, want %v", id, got, w)
		}
	}
	for _, cell := range rows[good].Cells[1:] {
		l := logged[cell.Month]
		if cell.Archived+cell.Failed != l.started || cell.Failed != l.missing || cell.Collection != req.ID || cell.Listed != cell.Archived+cell.Failed+cell.Skipped {
			t.Errorf("%s: archived %d, failed %d, skipped %d of %d listed; the emulator started %d, %d of them missing",
				cell.Month, cell.Archived, cell.Failed, cell.Skipped, cell.Listed, l.started, l.missing)
		}
		if cell.Skipped == 0 || cell.Reasons[messages.SkipExternal] == 0 {
			t.Errorf("%s: skipped %d %v: want the external documents counted", cell.Month, cell.Skipped, cell.Reasons)
		}
	}
	if feb := rows[good].Cells[2]; len(feb.Failures) != feb.Failed || feb.Failures[0].Code != messages.CodeAzureError {
		t.Errorf("February's failures %+v", feb.Failures)
	}
	if c := rows[refused].Cells[1]; c.Code != messages.CodeAccessDenied || c.Collection != bad.ID {
		t.Errorf("refused: %+v", c)
	}

	// A newer collection of February (invoices only: nothing missing)
	// replaces its record; January's stays.
	again := collectionRequest(b.id(), good)
	again.Params.PeriodStartDate, again.Params.PeriodEndDate, again.Params.DocumentKinds = "2026-02-01", "2026-02-28", []string{"Invoice"}
	b.submit(again)
	if o := b.wait(again.ID, 2*eventTimeout); o.Completed == nil {
		t.Fatalf("again: %+v", o.Failed)
	}
	testwait.ForNoError(t, eventTimeout, "February's new record", func() error {
		g, err := b.stack.Client.Coverage(ctx, "2026-01", "2026-02")
		if err != nil {
			return err
		}
		for _, r := range g.Rows {
			if r.Scope.ID == good && (r.Cells[1].Collection != again.ID || r.Cells[1].Status != client.CoverageComplete || r.Cells[0].Collection != req.ID) {
				return fmt.Errorf("%+v", r.Cells)
			}
		}
		return nil
	})
}

// billing.coverage.late counts the known scopes whose due month (the last
// that ended coverage-grace ago) is not complete, by status.
func TestCoverageLateGauge(t *testing.T) {
	t.Parallel()
	b := setupTelemetry(t)
	b.emu.SetListing(50, 1)
	ctx := context.Background()
	now := time.Now()
	due := coverage.DueMonth(now, worker.DefaultCoverageGrace)
	first, _ := time.Parse("2006-01", due)
	from, to := first.Format(time.DateOnly), first.AddDate(0, 1, -1).Format(time.DateOnly)
	const done, refused, idle = "20000051", "20000052", "20000053"
	b.emu.Script(refused, emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "not yours"))
	for _, id := range []string{done, refused, idle} {
		testwait.ForNoError(t, eventTimeout, "register "+id, func() error {
			return b.stack.Client.PutScope(ctx, client.CoverageScope{Kind: "account", ID: id})
		})
	}
	for _, id := range []string{done, refused} {
		req := collectionRequest(b.id(), id)
		req.Params.PeriodStartDate, req.Params.PeriodEndDate, req.Params.DocumentKinds = from, to, []string{"Invoice"}
		b.submit(req)
		b.wait(req.ID, 2*eventTimeout)
	}
	testwait.ForNoError(t, eventTimeout, "both records", func() error {
		g, err := b.stack.Client.Coverage(ctx, due, due)
		if err == nil && g.Totals[client.CoverageNever] != 1 {
			err = fmt.Errorf("totals %v", g.Totals)
		}
		return err
	})
	// The first observation reads the bucket.
	var rm metricdata.ResourceMetrics
	if err := b.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "billing.coverage.late" {
				for _, dp := range g.DataPoints {
					s, _ := dp.Attributes.Value("billing.coverage.status")
					got[s.AsString()] = dp.Value
				}
			}
		}
	}
	if want := map[string]int64{"partial": 0, "failed": 1, "never_collected": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("billing.coverage.late for %s: %v, want %v", due, got, want)
	}
}

// A collection's event is published only once its coverage is stored:
// whoever reads the grid on the event sees the collection's months. Here
// the coverage bucket refuses new keys until the test has seen the worker
// try to write them; no event may exist by then.
func TestCoverageStoredBeforeEvent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 1)
	ctx := context.Background()
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	bucket := b.stack.Client.Layout().CoverageBucket()
	testwait.ForNoError(t, eventTimeout, "the coverage bucket", func() error { _, err := js.KeyValue(ctx, bucket); return err })
	stream, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	// closed: the bucket takes no new key (it is at its message limit,
	// discarding new), while the keys it has can still be replaced.
	closeBucket := func(closed bool) {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.MaxMsgs, cfg.Discard = -1, jetstream.DiscardOld
		if closed {
			cfg.MaxMsgs, cfg.Discard = max(int64(info.State.Msgs), 1), jetstream.DiscardNew
		}
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	closeBucket(true) // the collection's scope and records are refused
	tried := make(chan struct{}, 1)
	sub, err := b.stack.Conn.Subscribe("$KV."+bucket+".>", func(*nats.Msg) {
		select {
		case tried <- struct{}{}:
		default: // told already
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	req := collectionRequest(b.id(), "20000041")
	req.Params.PeriodStartDate, req.Params.PeriodEndDate, req.Params.DocumentKinds = "2026-09-01", "2026-10-31", []string{"Invoice"}
	b.submit(req)
	select {
	case <-tried:
	case <-time.After(2 * eventTimeout):
		t.Fatal("the worker never wrote the collection's coverage")
	}
	if evs := b.events(req.ID); len(evs) != 0 {
		t.Fatalf("%d events published before the coverage was stored", len(evs))
	}
	closeBucket(false)
	if o := b.wait(req.ID, 2*eventTimeout); o.Completed == nil {
		t.Fatalf("collection: %+v", o.Failed)
	}
	g, err := b.stack.Client.Coverage(ctx, "2026-09", "2026-10")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range g.Rows {
		if r.Scope.ID == req.Params.BillingAccountName {
			for _, c := range r.Cells {
				if c.Status != client.CoverageComplete || c.Collection != req.ID {
					t.Errorf("on the event, %s is %s by %q", c.Month, c.Status, c.Collection)
				}
			}
			return
		}
	}
	t.Errorf("on the event, no row for %s in %+v", req.Params.BillingAccountName, g.Rows)
}
