package worker_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

func collectionRequest(id, account string) messages.Request {
	return messages.Request{Version: 1, ID: id, Kind: messages.KindCollection, Labels: map[string]string{"run": "monthly"},
		Params: messages.Params{BillingAccountName: account, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}}
}

// docKey names one download in the emulator's log.
type docKey struct{ op, invoice, document string }

func TestCollectionFetchesEveryDocumentOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.CollectionWindow = 4 })
	b.emu.SetListing(4, 3) // three months, nine invoices, three pages
	const account = "20000001"

	// What Azure lists, read with a listing request.
	list := listing(messages.KindAccountInvoices, b.id(), account)
	b.submit(list)
	lo := b.wait(list.ID, eventTimeout)
	if lo.Completed == nil || len(lo.Completed.Invoices) != 9 {
		t.Fatalf("listing: %+v %+v", lo.Completed, lo.Failed)
	}
	want := map[string]string{} // child id -> "failed" for the one that is gone
	for _, inv := range lo.Completed.Invoices {
		for _, d := range inv.Documents {
			if !(messages.Params{}).Fetches(d.Kind) {
				continue
			}
			outcome := messages.OutcomeCompleted
			if strings.HasPrefix(d.Name, emulator.MissingDocumentPrefix) {
				outcome = messages.OutcomeFailed
			}
			want[d.Name] = outcome
		}
	}
	before := len(b.emu.Calls())

	req := collectionRequest(b.id(), account)
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected == nil {
		t.Fatalf("want the collection's completion, got %+v %+v", o.Completed, o.Failed)
	}
	sum := o.Completed.Collected
	if sum.Documents != len(want) || sum.Invoices != 9 || sum.Completed+sum.Failed != sum.Documents || len(sum.Children) != len(want) || sum.Failed != 1 {
		t.Fatalf("summary %d documents (%d completed, %d failed), %d children; want %d documents, 1 failed",
			sum.Documents, sum.Completed, sum.Failed, len(sum.Children), len(want))
	}
	if o.Completed.Labels["run"] != "monthly" || o.Completed.AzureCalls != 3 {
		t.Errorf("collection event: labels %v, %d Azure calls (want the 3 pages)", o.Completed.Labels, o.Completed.AzureCalls)
	}
	for _, c := range sum.Children {
		if want[c.DocumentName] != c.Outcome {
			t.Errorf("child %s (%s %s): %s, want %s", c.ID, c.InvoiceName, c.DocumentName, c.Outcome, want[c.DocumentName])
		}
		if c.Outcome == messages.OutcomeFailed && c.Code != messages.CodeAzureError {
			t.Errorf("the missing document failed with %s: %s", c.Code, c.Message)
		}
		if c.Outcome == messages.OutcomeCompleted && !strings.Contains(c.URL, "sig=") {
			t.Errorf("completed child without its link: %+v", c)
		}
		// Each child has its own event, naming the collection.
		co := b.wait(c.ID, eventTimeout)
		var of *messages.ChildOf
		if co.Completed != nil {
			of = co.Completed.Collection
		} else {
			of = co.Failed.Collection
		}
		if of == nil || of.ID != req.ID {
			t.Errorf("child %s's event names collection %+v", c.ID, of)
		}
	}
	if sum.Children[0].Outcome != messages.OutcomeFailed {
		t.Error("failed children are not listed first")
	}
	kinds := map[messages.Kind]bool{}
	for _, c := range sum.Children {
		kinds[c.Kind] = true
	}
	if !kinds[messages.KindAccountDocument] || !kinds[messages.KindInvoiceSummary] || !kinds[messages.KindInvoiceTransactions] {
		t.Errorf("children's kinds %v: want documents, summaries and transactions routed", kinds)
	}

	// The emulator's log: every document started exactly once.
	starts := map[docKey]int{}
	for _, c := range b.emu.Calls()[before:] {
		if c.Phase == emulator.PhaseStart && c.Operation != emulator.OpAccountInvoiceList {
			starts[docKey{c.Operation, c.InvoiceName, c.DocumentName}]++
		}
	}
	if len(starts) != len(want) {
		t.Errorf("%d documents started, want %d", len(starts), len(want))
	}
	for k, n := range starts {
		if n != 1 {
			t.Errorf("%+v started %d times", k, n)
		}
	}
}

func TestCollectionWindowAndFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.CollectionWindow = 2; c.MaxDocuments = 30 })
	b.emu.SetListing(50, 3)

	// A listing that fails: the collection fails as a whole with Azure's error.
	const refused = "20000002"
	b.emu.Script(refused, emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "not yours"))
	req := collectionRequest(b.id(), refused)
	b.submit(req)
	if o := b.wait(req.ID, eventTimeout); o.Failed == nil || o.Failed.Code != messages.CodeAccessDenied || o.Failed.Azure.Code != "AuthorizationFailed" {
		t.Fatalf("refused listing: %+v %+v", o.Completed, o.Failed)
	}

	// More documents than max-documents: too_many, before any download.
	const big = "20000003"
	before := len(b.emu.Calls())
	req = collectionRequest(b.id(), big)
	req.Params.PeriodStartDate = "2025-01-01"
	b.submit(req)
	if o := b.wait(req.ID, eventTimeout); o.Failed == nil || o.Failed.Code != messages.CodeTooMany {
		t.Fatalf("too many: %+v %+v", o.Completed, o.Failed)
	}
	for _, c := range b.emu.Calls()[before:] {
		if c.Operation != emulator.OpAccountInvoiceList {
			t.Errorf("a download (%s) before too_many", c.Operation)
		}
	}

	// Invoices only, never more than the window in flight at once.
	const small = "20000004"
	before = len(b.emu.Calls())
	req = collectionRequest(b.id(), small)
	req.Params.DocumentKinds = []string{"Invoice"}
	req.Params.PeriodEndDate = "2026-02-28"
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected.Documents != 6 || o.Completed.Collected.Failed != 0 {
		t.Fatalf("invoices only: %+v %+v", o.Completed, o.Failed)
	}
	// Each download is a 202 then a 200 one second later: count the
	// operations started and not yet answered 200 at each call.
	open := map[string]bool{}
	most := 0
	for _, c := range b.emu.Calls()[before:] {
		switch {
		case c.Operation == emulator.OpAccountInvoiceList:
		case c.Phase == emulator.PhaseStart:
			open[c.OpID] = true
		case c.Status == http.StatusOK:
			delete(open, c.OpID)
		}
		most = max(most, len(open))
	}
	if most > 2 {
		t.Errorf("%d downloads in flight at once, over the window of 2", most)
	}
}

// Two big collections and a stream of single requests published after
// them: the single requests are not held behind the collections' children.
func TestCollectionsDoNotStarveSingleRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.CollectionWindow = 4 })
	b.emu.SetListing(50, 10) // ten invoices a month
	var colls []messages.Request
	for _, account := range []string{"20000011", "20000012"} {
		req := collectionRequest(b.id(), account)
		b.submit(req)
		colls = append(colls, req)
	}
	// Once both are fanning out, the single requests come.
	for _, c := range colls {
		waitState(t, b.stack.Client, c.ID, func(s stateView) bool { return s.Phase == "collecting" })
	}
	var singles []string
	for range 20 {
		inv := b.invoice()
		b.emu.Script(inv, emulator.OK())
		req := sampleSummary(b.id(), inv)
		b.submit(req)
		singles = append(singles, req.ID)
	}
	for _, id := range singles {
		if o := b.wait(id, eventTimeout); o.Completed == nil {
			t.Fatalf("single request %s: %+v", id, o.Failed)
		}
	}
	// Every single request ended while both collections were still running.
	for _, c := range colls {
		b.mu.Lock()
		ended := len(b.outcomes[c.ID])
		b.mu.Unlock()
		if ended != 0 {
			t.Errorf("collection %s ended before the single requests published after it", c.ID)
		}
		st, err := b.stack.Client.Status(context.Background(), c.ID)
		if err != nil || st.Phase != "collecting" {
			t.Errorf("collection %s: phase %s %v", c.ID, st.Phase, err)
		}
	}
	for _, c := range colls {
		if o := b.wait(c.ID, 4*eventTimeout); o.Completed == nil || o.Completed.Collected.Failed == 0 || o.Completed.Collected.Documents < 50 {
			t.Errorf("collection %s: %+v %+v", c.ID, o.Completed, o.Failed)
		}
	}
}

// Price sheets on request: one child per invoice, by its billing profile,
// on an MCA account.
func TestCollectionPriceSheets(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 3)
	req := collectionRequest(b.id(), "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31")
	req.Params.PeriodEndDate = "2026-01-31"
	req.Params.DocumentKinds = []string{messages.DocPriceSheet, messages.DocInvoice}
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected.Documents != 6 || o.Completed.Collected.Failed != 0 {
		t.Fatalf("price sheets: %+v %+v", o.Completed, o.Failed)
	}
	sheets := 0
	for _, c := range o.Completed.Collected.Children {
		if c.Kind == messages.KindInvoicePriceSheet && c.DocumentKind == messages.DocPriceSheet && strings.Contains(c.URL, "pricesheet") {
			sheets++
		}
	}
	if sheets != 3 {
		t.Errorf("%d price sheets, want one per invoice (3): %+v", sheets, o.Completed.Collected.Children)
	}
}

// A child whose id another request took first is refused with id_conflict,
// and the collection still ends, listing it as failed.
func TestCollectionChildIDTaken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 2)
	const account = "20000021"
	list := listing(messages.KindAccountInvoices, b.id(), account)
	list.Params.PeriodEndDate = "2026-01-31"
	b.submit(list)
	lo := b.wait(list.ID, eventTimeout)
	if lo.Completed == nil || len(lo.Completed.Invoices) != 2 {
		t.Fatalf("listing: %+v %+v", lo.Completed, lo.Failed)
	}
	req := collectionRequest(b.id(), account)
	req.Params.PeriodEndDate = "2026-01-31"
	req.Params.DocumentKinds = []string{messages.DocInvoice}
	inv := lo.Completed.Invoices[0].Name
	taken := messages.ChildID(req.ID, inv, inv)
	other := sampleSummary(taken, b.invoice())
	b.submit(other)
	if o := b.wait(taken, eventTimeout); o.Completed == nil {
		t.Fatalf("the request that takes the id: %+v", o.Failed)
	}
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected.Documents != 2 || o.Completed.Collected.Failed != 1 {
		t.Fatalf("collection: %+v %+v", o.Completed, o.Failed)
	}
	if c := o.Completed.Collected.Children[0]; c.ID != taken || c.Code != messages.CodeIDConflict {
		t.Errorf("the child whose id was taken: %+v", c)
	}
}

// Cost details on request: on an MCA account one report per invoice, by
// its invoice id, beside the invoice's documents.
func TestCollectionCostDetails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 3)
	req := collectionRequest(b.id(), "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31")
	req.Params.PeriodEndDate = "2026-01-31"
	req.Params.DocumentKinds = []string{messages.DocCostDetails, messages.DocInvoice}
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected.Documents != 6 || o.Completed.Collected.Failed != 0 {
		t.Fatalf("cost details: %+v %+v", o.Completed, o.Failed)
	}
	costs := map[string]int{}
	invoices := map[string]int{}
	for _, c := range o.Completed.Collected.Children {
		switch c.DocumentKind {
		case messages.DocCostDetails:
			if c.Kind == messages.KindCostDetails && strings.Contains(c.URL, "costdetails_") {
				costs[c.InvoiceName]++
			}
		case messages.DocInvoice:
			invoices[c.InvoiceName]++
		}
	}
	if len(costs) != 3 || len(invoices) != 3 {
		t.Fatalf("cost details %v, invoices %v: want one of each per invoice", costs, invoices)
	}
	for inv := range invoices {
		if costs[inv] != 1 {
			t.Errorf("invoice %s has %d cost details reports", inv, costs[inv])
		}
		// The report asked for is the invoice's own.
		found := false
		for _, call := range b.emu.CallsFor(inv) {
			found = found || call.Operation == emulator.OpCostDetails
		}
		if !found {
			t.Errorf("no cost details report was asked for invoice %s", inv)
		}
	}
}

// Nameless, external-link and unknown-kind documents: each is fetched
// (the invoice's default document) or named in the collection's event with
// its reason; none is left out of the counts.
func TestCollectionAccountsForUnnamedDocuments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(50, 3)
	b.emu.SetUnnamedDocuments(true)
	const account = "20000011"

	list := listing(messages.KindAccountInvoices, b.id(), account)
	list.Params.PeriodStartDate, list.Params.PeriodEndDate = "2026-01-01", "2026-02-28"
	b.submit(list)
	lo := b.wait(list.ID, eventTimeout)
	if lo.Completed == nil || len(lo.Completed.Invoices) != 6 {
		t.Fatalf("listing: %+v %+v", lo.Completed, lo.Failed)
	}
	listed, defaults := 0, map[string]bool{}
	wantSkipped := map[string]string{} // invoice/kind/name -> reason
	for _, inv := range lo.Completed.Invoices {
		for _, d := range inv.Documents {
			listed++
			key := inv.Name + "/" + d.Kind + "/" + d.Name
			switch {
			case d.Kind == "Statement":
				wantSkipped[key] = messages.SkipKindNotRequested
			case d.Source == "ENF":
				wantSkipped[key] = messages.SkipExternal
			case d.Name == "" && d.Kind == messages.DocInvoice:
				defaults[inv.Name] = true
			case d.Name == "":
				wantSkipped[key] = messages.SkipNoName
			}
		}
	}
	if len(defaults) == 0 || len(wantSkipped) < 4 {
		t.Fatalf("the listing has %d nameless invoices and %d documents to skip: not the mix wanted", len(defaults), len(wantSkipped))
	}
	before := len(b.emu.Calls())

	req := collectionRequest(b.id(), account)
	req.Params.PeriodStartDate, req.Params.PeriodEndDate = list.Params.PeriodStartDate, list.Params.PeriodEndDate
	b.submit(req)
	o := b.wait(req.ID, 2*eventTimeout)
	if o.Completed == nil || o.Completed.Collected == nil {
		t.Fatalf("want the collection's completion, got %+v %+v", o.Completed, o.Failed)
	}
	sum := o.Completed.Collected
	if sum.Listed != listed || sum.Skipped != len(wantSkipped) || len(sum.SkippedDocuments) != len(wantSkipped) || sum.Documents+sum.Skipped != listed {
		t.Fatalf("listed %d, skipped %d (%d named), documents %d; want %d listed, %d skipped",
			sum.Listed, sum.Skipped, len(sum.SkippedDocuments), sum.Documents, listed, len(wantSkipped))
	}
	for _, s := range sum.SkippedDocuments {
		key := s.InvoiceName + "/" + s.DocumentKind + "/" + s.DocumentName
		if wantSkipped[key] != s.Reason {
			t.Errorf("skipped %s with %q, want %q", key, s.Reason, wantSkipped[key])
		}
		if s.Reason == messages.SkipExternal && s.ExternalURL != emulator.ExternalDocumentURL(s.InvoiceName) {
			t.Errorf("external document %s without its link: %q", key, s.ExternalURL)
		}
	}
	for _, c := range sum.Children {
		if c.DocumentName == "" && c.DocumentKind == messages.DocInvoice {
			if !defaults[c.InvoiceName] || c.Outcome != messages.OutcomeCompleted || c.Kind != messages.KindAccountDocument {
				t.Errorf("default document child %+v", c)
			}
			delete(defaults, c.InvoiceName)
		}
	}
	if len(defaults) != 0 {
		t.Errorf("nameless invoices not fetched as their default document: %v", defaults)
	}
	var months []string
	total := 0
	for _, m := range sum.Months {
		months = append(months, m.Month)
		total += m.Documents + m.Skipped
	}
	if strings.Join(months, ",") != "2026-01,2026-02" || total != listed {
		t.Errorf("months %+v: want January and February counting all %d listed documents", sum.Months, listed)
	}
	// The emulator's log: the default documents were asked for without a
	// documentName, and nothing was asked of an external document.
	nameless := 0
	for _, c := range b.emu.Calls()[before:] {
		if c.Phase == emulator.PhaseStart && c.Operation == emulator.OpAccountDocument && c.DocumentName == "" {
			nameless++
		}
		if strings.Contains(c.Host+c.Path, "nfe.invalid") {
			t.Errorf("an external document was fetched: %+v", c)
		}
	}
	if nameless != countDefault(sum) || nameless == 0 {
		t.Errorf("%d downloads without documentName, want %d", nameless, countDefault(sum))
	}
}

func countDefault(sum *messages.CollectionSummary) int {
	n := 0
	for _, c := range sum.Children {
		if c.DocumentName == "" && c.DocumentKind == messages.DocInvoice {
			n++
		}
	}
	return n
}
