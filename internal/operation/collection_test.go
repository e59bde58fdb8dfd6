package operation_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

func collectionMachine() operation.Machine {
	m := machine()
	m.MaxDocuments, m.Window = 10, 2
	return m
}

func collectionRequest(kinds ...string) messages.Request {
	return messages.Request{Version: 1, ID: "coll-1", Kind: messages.KindCollection, Labels: map[string]string{"team": "finops"},
		Params: messages.Params{BillingAccountName: "12345678", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31", DocumentKinds: kinds}}
}

// listedPage makes invoices named G00000000<n>, each with the given
// document kinds (a document named <kind>-<invoice>).
func listedPage(first, n int, kinds ...string) []messages.Invoice {
	var out []messages.Invoice
	for i := first; i < first+n; i++ {
		inv := messages.Invoice{ID: "/x", Name: fmt.Sprintf("G%09d", i)}
		for _, k := range kinds {
			inv.Documents = append(inv.Documents, messages.InvoiceDocument{Kind: k, Name: k + "-" + inv.Name})
		}
		out = append(out, inv)
	}
	return out
}

// collecting is a collection state that listed total children (none
// invalid) and requested spawned of them.
func collecting(total, spawned int) operation.State {
	st := operation.NewState(collectionRequest(), t0.Add(-time.Minute), time.Hour, 24*time.Hour)
	st.Phase = operation.PhaseCollecting
	st.Collection = &operation.Collection{Pages: []int{total}, Total: total, Spawned: spawned, Invoices: total}
	return st
}

func TestCollectionListing(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	first := operation.NewState(collectionRequest(), t0, time.Hour, 24*time.Hour)
	m.Accept(first.Request, operation.Trace{}, t0) // a collection is accepted as any request
	first.Phase, first.ClaimedBy, first.Unanswered = operation.PhaseStarting, me, 1
	next := "https://management.azure.com/providers/Microsoft.Billing/billingAccounts/12345678/invoices?skiptoken=2"
	page := func(invoices []messages.Invoice, link string) operation.Answer {
		return operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices, NextLink: link}}
	}

	// A page with a nextLink: its documents (the kinds asked for, by default
	// not the unknown Statement) go into chunk 0; the next page is fetched.
	s := m.Answer(first, page(listedPage(0, 2, "Invoice", "Statement", "Summary"), next), t0)
	if s.Action != operation.Call || s.Chunk == nil || s.Chunk.Key != "coll-1.0" || len(s.Chunk.Children) != 4 || s.Next.Location != next {
		t.Fatalf("first page: %v %+v %+v", s.Action, s.Chunk, s.Next)
	}
	if c := s.Next.Collection; c.Total != 4 || c.Invoices != 2 || len(c.Pages) != 1 || c.Spawned != 0 {
		t.Errorf("collection after page 1: %+v", c)
	}
	// The last page: collecting, and the first children (up to the window)
	// requested.
	s2 := m.Answer(*s.Next, page(listedPage(2, 1, "Invoice", "CreditNote"), ""), t0)
	if s2.Action != operation.Spawn || s2.Spawn == nil || *s2.Spawn != (operation.Range{From: 0, To: 2}) || s2.Chunk.Key != "coll-1.1" {
		t.Fatalf("last page: %v %+v %+v", s2.Action, s2.Spawn, s2.Chunk)
	}
	if n := s2.Next; n.Phase != operation.PhaseCollecting || n.Location != "" || n.ClaimedBy != "" || n.Collection.Total != 6 || n.Collection.Spawned != 2 {
		t.Errorf("collecting state %+v %+v", n, n.Collection)
	}
	// The page before is unchanged (the machine copies what it changes).
	if s.Next.Collection.Total != 4 {
		t.Error("a transition changed the state it was given")
	}

	// Named kinds, the unknown one included.
	firstKinds := first
	firstKinds.Request = collectionRequest("Statement")
	s3 := m.Answer(firstKinds, page(listedPage(0, 2, "Invoice", "Statement"), ""), t0)
	if len(s3.Chunk.Children) != 2 || s3.Chunk.Children[0].DocKind != "Statement" {
		t.Errorf("documentKinds [Statement]: %+v", s3.Chunk.Children)
	}
	// No documents at all: finished at once.
	if s := m.Answer(first, page(nil, ""), t0); s.Action != operation.Finish || s.Next.Collection.Total != 0 {
		t.Errorf("empty period: %v %+v", s.Action, s.Next)
	}
	// Price sheets on request: one per invoice, by the invoice's billing
	// profile (an MCA account; an EA account's breaks Cost Management's
	// pattern and the child is failed from the start).
	mca := first
	mca.Request = collectionRequest("PriceSheet")
	mca.Request.Params.BillingAccountName = "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31"
	withProfile := listedPage(0, 2, "Invoice")
	for i := range withProfile {
		withProfile[i].BillingProfileID = "/providers/Microsoft.Billing/billingAccounts/x/billingProfiles/AB-CD-EF"
	}
	s7 := m.Answer(mca, page(withProfile, ""), t0)
	if kids := s7.Chunk.Children; len(kids) != 2 || kids[0].DocKind != "PriceSheet" || kids[0].Profile != "AB-CD-EF" || kids[0].Invalid != "" {
		t.Fatalf("price sheets: %+v", kids)
	}
	if r := operation.ChildRequest(mca.Request, 0, s7.Chunk.Children[0]); r.Kind != messages.KindInvoicePriceSheet || r.Params.BillingProfileName != "AB-CD-EF" {
		t.Errorf("price sheet child %+v", r)
	}
	ea := first
	ea.Request = collectionRequest("PriceSheet")
	if s := m.Answer(ea, page(withProfile, ""), t0); s.Chunk.Children[0].Invalid == "" || s.Next.Collection.Failed != 2 {
		t.Errorf("price sheets of an EA account: %+v", s.Chunk.Children)
	}
	// Too many documents: failed before any child, with too_many.
	s4 := m.Answer(first, page(listedPage(0, 6, "Invoice", "CreditNote"), next), t0)
	if s4.Action != operation.Publish || s4.Next.Failed == nil || s4.Next.Failed.Code != messages.CodeTooMany || s4.Chunk != nil {
		t.Errorf("too many: %v %+v", s4.Action, s4.Next.Failed)
	}
	// A document whose names break the request rules is failed from the
	// start: the cursor passes it without using the window (the worker
	// requests no child for it).
	bad := listedPage(0, 1, "Invoice")
	bad[0].Documents = append(bad[0].Documents, messages.InvoiceDocument{Kind: "CreditNote", Name: "bad\u0001name"})
	s5 := m.Answer(first, page(bad, ""), t0)
	c := s5.Next.Collection
	if s5.Chunk.Children[1].Invalid == "" || c.Failed != 1 || c.Spawned != 2 || *s5.Spawn != (operation.Range{From: 0, To: 2}) || c.InFlight() != 1 {
		t.Errorf("invalid child: %+v %+v %+v", s5.Chunk.Children, c, s5.Spawn)
	}
	// A listing throttled: waits like any operation.
	s6 := m.Answer(first, operation.Answer{Outcome: operation.Throttled, Status: 429, Error: "throttled"}, t0)
	if s6.Action != operation.Schedule {
		t.Errorf("throttled listing: %v", s6.Action)
	}
}

func TestCollectionChildEnded(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	for _, tc := range []struct {
		name   string
		st     operation.State
		child  int
		failed bool
		action operation.Action
		check  func(t *testing.T, s operation.Step)
	}{
		{"a child ends: counted, the next one requested", collecting(5, 2), 0, false, operation.Spawn, func(t *testing.T, s operation.Step) {
			c := s.Next.Collection
			if c.Completed != 1 || c.Spawned != 3 || *s.Spawn != (operation.Range{From: 2, To: 3}) || c.InFlight() != 2 {
				t.Errorf("%+v %+v", c, s.Spawn)
			}
		}},
		{"a failed child: counted as failed", collecting(5, 2), 1, true, operation.Spawn, func(t *testing.T, s operation.Step) {
			if s.Next.Collection.Failed != 1 || s.Next.Collection.Completed != 0 {
				t.Errorf("%+v", s.Next.Collection)
			}
		}},
		{"every child requested: stored, nothing more to request", collecting(2, 2), 1, false, operation.Ack, func(t *testing.T, s operation.Step) {
			if s.Next == nil || s.Next.Collection.Completed != 1 {
				t.Errorf("%+v", s.Next)
			}
		}},
		{"the last child: finish", func() operation.State {
			st := collecting(2, 2)
			_ = m // child 0 ended before
			st.Collection.Ended, st.Collection.Completed = []byte{1}, 1
			return st
		}(), 1, true, operation.Finish, func(t *testing.T, s operation.Step) {
			if !s.Next.Collection.Done() || s.Next.Collection.Failed != 1 {
				t.Errorf("%+v", s.Next.Collection)
			}
		}},
		{"told twice: counted once", func() operation.State {
			st := collecting(3, 2)
			st.Collection.Ended, st.Collection.Completed = []byte{1}, 1
			return st
		}(), 0, false, operation.Ack, func(t *testing.T, s operation.Step) {
			if s.Next != nil {
				t.Errorf("stored %+v", s.Next)
			}
		}},
		{"told twice after all ended, not finished yet: finish again", func() operation.State {
			st := collecting(1, 1)
			st.Collection.Ended, st.Collection.Completed = []byte{1}, 1
			return st
		}(), 0, false, operation.Finish, nil},
		{"an index it never listed: ignored", collecting(2, 2), 7, false, operation.Ack, nil},
		{"a child ahead of the stored cursor (ended before its spawn was stored): come back", collecting(5, 2), 3, false, operation.Retry, nil},
		{"a child ended while the last page's state was not stored yet: come back", func() operation.State {
			st := collecting(0, 0)
			st.Phase, st.Location = operation.PhasePolling, "https://management.azure.com/next"
			return st
		}(), 0, false, operation.Retry, nil},
		{"a notice for an operation that is no collection: ignored", state(claimed(me, "", t0.Add(time.Minute), 1)), 0, false, operation.Ack, nil},
		{"the collection ended already: its outcome is published again (the finish that stored it may have failed to publish it)", func() operation.State {
			st := collecting(1, 1)
			st.Complete(messages.Completed{ID: st.Request.ID}, t0)
			return st
		}(), 0, false, operation.Republish, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.ChildEnded(tc.st, tc.child, tc.failed, t0)
			if s.Action != tc.action {
				t.Fatalf("action %v, want %v", s.Action, tc.action)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
	// A notice is checked against the document listed at its place.
	listed := operation.Child{Invoice: "G1", Document: "D1", DocKind: "Invoice"}
	own := operation.ChildRequest(collectionRequest(), 0, listed).ID
	if s := m.Resume(collecting(3, 2), operation.Delivery{Child: &operation.ChildNotice{Index: 0, ID: own, Listed: &listed}}, t0); s.Action != operation.Spawn {
		t.Errorf("the child's own notice: %v", s.Action)
	}
	if s := m.Resume(collecting(3, 2), operation.Delivery{Child: &operation.ChildNotice{Index: 0, ID: "someone-else", Listed: &listed}}, t0); s.Action != operation.Ack || s.Next != nil {
		t.Errorf("a notice from another request: %v", s.Action)
	}
	// Resume of a collecting state (the collection request seen again).
	if s := m.Resume(collecting(3, 2), operation.Delivery{Request: ptr(collectionRequest())}, t0); s.Action != operation.Ack {
		t.Errorf("resume while collecting: %v", s.Action)
	}
	done := collecting(1, 1)
	done.Collection.Ended, done.Collection.Completed = []byte{1}, 1
	if s := m.Resume(done, operation.Delivery{Request: ptr(collectionRequest())}, t0); s.Action != operation.Finish {
		t.Errorf("resume of a collection whose finish was cut short: %v", s.Action)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCollectionFinish(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	st := collecting(3, 3)
	st.Collection.Ended, st.Collection.Completed, st.Collection.Failed = []byte{7}, 2, 1
	expiry := t0.Add(time.Hour)
	ends := []operation.ChildEnd{
		{Child: operation.Child{Invoice: "G1", Document: "G1", DocKind: "Invoice"}, Completed: &messages.Completed{URL: "https://x/1?sig=a", ExpiryTime: &expiry}},
		{Child: operation.Child{Invoice: "G1", Document: "GONE-G1", DocKind: "TaxReceipt"}, Failed: &messages.Failed{Code: messages.CodeAzureError, Message: "404"}},
		{Child: operation.Child{Invoice: "G2", Document: "SUM-G2", DocKind: "Summary"}, Completed: &messages.Completed{URL: "https://x/2?sig=b"}},
	}
	s := m.Finish(st, ends, nil, t0)
	if s.Action != operation.Publish || s.Next.Completed == nil {
		t.Fatalf("%v %+v", s.Action, s.Next)
	}
	ev := s.Next.Completed
	sum := ev.Collected
	if ev.Kind != messages.KindCollection || ev.Labels["team"] != "finops" || sum.Documents != 3 || sum.Completed != 2 || sum.Failed != 1 || sum.Truncated {
		t.Fatalf("event %+v summary %+v", ev, sum)
	}
	f, c := sum.Children[0], sum.Children[1]
	if f.Outcome != "failed" || f.Code != messages.CodeAzureError || f.DocumentName != "GONE-G1" || f.ID != messages.ChildID("coll-1", "G1", "GONE-G1") ||
		f.Kind != messages.KindAccountDocument {
		t.Errorf("failed child %+v", f)
	}
	if c.Outcome != "completed" || c.URL != "https://x/1?sig=a" || !c.ExpiryTime.Equal(expiry) || sum.Children[2].Kind != messages.KindInvoiceSummary {
		t.Errorf("completed children %+v %+v", c, sum.Children[2])
	}
	if s := m.Finish(*s.Next, ends, nil, t0); s.Action != operation.Republish {
		t.Errorf("finish twice: %v", s.Action)
	}
	// A child whose id holds another request's state (it was refused with
	// id_conflict), and one with no state at all.
	other := messages.Request{Kind: messages.KindInvoice}
	odd := []operation.ChildEnd{
		{Child: operation.Child{Invoice: "G1", Document: "G1", DocKind: "Invoice"}, Completed: &messages.Completed{URL: "https://x/1"}, Request: &other},
		{Child: operation.Child{Invoice: "G2", Document: "G2", DocKind: "Invoice"}},
	}
	st2 := collecting(2, 2)
	st2.Collection.Ended, st2.Collection.Failed = []byte{3}, 2
	sum2 := m.Finish(st2, odd, nil, t0).Next.Completed.Collected
	if sum2.Failed != 2 || sum2.Children[0].Code != messages.CodeIDConflict || sum2.Children[1].Code != messages.CodeInternal {
		t.Errorf("odd children: %+v", sum2.Children)
	}

	// A list too long for one event: completed children lose their url,
	// then the last ones are left out; failures are all kept.
	const n = 6000
	big := collecting(n, n)
	var many []operation.ChildEnd
	for i := range n {
		e := operation.ChildEnd{Child: operation.Child{Invoice: fmt.Sprintf("G%09d", i), Document: fmt.Sprintf("DOC-%09d", i), DocKind: "Invoice"}}
		if i%1000 == 0 {
			e.Failed = &messages.Failed{Code: messages.CodeTimeout}
		} else {
			e.Completed = &messages.Completed{URL: "https://x/" + strings.Repeat("u", 200), ExpiryTime: &expiry}
		}
		many = append(many, e)
	}
	ev2 := m.Finish(big, many, nil, t0).Next.Completed
	b, _ := json.Marshal(ev2)
	if !ev2.Collected.Truncated || len(b) > messages.MaxCollectionEventBytes+1024 || ev2.Collected.Failed != 6 || ev2.Collected.Children[5].Outcome != "failed" {
		t.Errorf("truncated: %v, %d bytes, %d children", ev2.Collected.Truncated, len(b), len(ev2.Collected.Children))
	}
	if ev2.Collected.Children[6].URL != "" {
		t.Error("a truncated list keeps urls")
	}
}

func TestChildRequestRouting(t *testing.T) {
	t.Parallel()
	coll := collectionRequest()
	coll.Profile = "contoso"
	for _, tc := range []struct {
		docKind string
		kind    messages.Kind
		doc     string
	}{
		{"Invoice", messages.KindAccountDocument, "D"},
		{"CreditNote", messages.KindAccountDocument, "D"},
		{"TaxReceipt", messages.KindAccountDocument, "D"},
		{"VoidNote", messages.KindAccountDocument, "D"},
		{"Statement", messages.KindAccountDocument, "D"},
		{"Summary", messages.KindInvoiceSummary, ""},
		{"Transactions", messages.KindInvoiceTransactions, ""},
	} {
		r := operation.ChildRequest(coll, 4, operation.Child{Invoice: "G123456789", Document: "D", DocKind: tc.docKind})
		if r.Kind != tc.kind || r.Params.DocumentName != tc.doc || r.Profile != "contoso" || r.Collection.ID != "coll-1" || r.Collection.Index != 4 {
			t.Errorf("%s: %+v", tc.docKind, r)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", tc.docKind, err)
		}
	}
	sub := collectionRequest()
	sub.Params.BillingAccountName, sub.Params.SubscriptionID = "", "11111111-2222-3333-4444-555555555555"
	if r := operation.ChildRequest(sub, 0, operation.Child{Invoice: "G123456789", Document: "SUM-1", DocKind: "Summary"}); r.Kind != messages.KindSubscriptionDocument || r.Params.DocumentName != "SUM-1" {
		t.Errorf("a subscription's summary: %+v", r)
	}
	// Deterministic ids.
	a := operation.ChildRequest(coll, 0, operation.Child{Invoice: "G1", Document: "D"}).ID
	if b := operation.ChildRequest(coll, 9, operation.Child{Invoice: "G1", Document: "D"}).ID; a != b || !messages.ValidID(a) {
		t.Errorf("ids %q %q", a, b)
	}
}

// Cost data in a collection: per MCA invoice its cost details by invoice
// id; per EA invoice its cost details and price sheet by billing period;
// a subscription's cost details per month of the period; the reservation
// details of the period once, with the first page only.
func TestCollectionCostData(t *testing.T) {
	m := collectionMachine()
	first := operation.NewState(collectionRequest(), t0, time.Hour, 24*time.Hour)
	first.Phase, first.ClaimedBy, first.Unanswered = operation.PhaseStarting, me, 1
	page := func(invoices []messages.Invoice, link string) operation.Answer {
		return operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices, NextLink: link}}
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	invoices := func(profile bool) []messages.Invoice {
		page := listedPage(0, 2, "Invoice")
		for i := range page {
			page[i].PeriodStartDate = &start
			if profile {
				page[i].BillingProfileID = "/providers/Microsoft.Billing/billingAccounts/x/billingProfiles/AB-CD-EF"
			}
		}
		return page
	}
	mca := first
	mca.Request = collectionRequest(messages.DocCostDetails, messages.DocReservationDetails)
	mca.Request.Params.BillingAccountName = "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31"
	s := m.Answer(mca, page(invoices(true), "https://management.azure.com/next"), t0)
	kids := s.Chunk.Children
	if len(kids) != 3 || kids[0].DocKind != messages.DocReservationDetails || kids[1].DocKind != messages.DocCostDetails || kids[1].Invalid != "" {
		t.Fatalf("mca: %+v", kids)
	}
	if r := operation.ChildRequest(mca.Request, 0, kids[0]); r.Kind != messages.KindReservationDetails || r.Params.PeriodStartDate != "2026-01-01" || r.Params.PeriodEndDate != "2026-03-31" {
		t.Errorf("reservation details child %+v", r)
	}
	r := operation.ChildRequest(mca.Request, 1, kids[1])
	if r.Kind != messages.KindCostDetails || r.Params.BillingProfileName != "AB-CD-EF" || r.Params.InvoiceName != kids[1].Invoice || r.Validate() != nil {
		t.Errorf("mca cost details child %+v", r)
	}
	// The second page: no second reservation details.
	second := m.Answer(*s.Next, page(invoices(true), ""), t0)
	for _, k := range second.Chunk.Children {
		if k.DocKind == messages.DocReservationDetails {
			t.Errorf("second page: %+v", second.Chunk.Children)
		}
	}
	ea := first
	ea.Request = collectionRequest(messages.DocCostDetails, messages.DocPriceSheet)
	kids = m.Answer(ea, page(invoices(false), ""), t0).Chunk.Children
	if len(kids) != 4 {
		t.Fatalf("ea: %+v", kids)
	}
	for _, k := range kids {
		r := operation.ChildRequest(ea.Request, 0, k)
		want := map[string]messages.Kind{messages.DocPriceSheet: messages.KindAccountPriceSheet, messages.DocCostDetails: messages.KindCostDetails}[k.DocKind]
		if k.Invalid != "" || r.Kind != want || r.Params.BillingPeriod != "202601" {
			t.Errorf("ea child %+v: %+v", k, r)
		}
	}
	sub := first
	sub.Request = collectionRequest(messages.DocCostDetails)
	sub.Request.Params.BillingAccountName, sub.Request.Params.SubscriptionID = "", "11111111-2222-3333-4444-555555555555"
	sub.Request.Params.PeriodStartDate = "2026-01-15"
	kids = m.Answer(sub, page(invoices(false), ""), t0).Chunk.Children
	if len(kids) != 3 || kids[0].From != "2026-01-15" || kids[0].To != "2026-01-31" || kids[2].From != "2026-03-01" || kids[2].To != "2026-03-31" {
		t.Fatalf("subscription months: %+v", kids)
	}
	for _, k := range kids {
		if r := operation.ChildRequest(sub.Request, 0, k); k.Invalid != "" || r.Kind != messages.KindCostDetails || r.Params.SubscriptionID == "" {
			t.Errorf("subscription child %+v: %+v", k, r)
		}
	}
}

// Every listed document is a child or skipped with its reason, decided by
// the document alone and what its invoice lists beside it.
func TestCollectionAccountsForEveryDocument(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	m.MaxDocuments = 100
	doc := func(kind, name string) messages.InvoiceDocument {
		return messages.InvoiceDocument{Kind: kind, Name: name, Source: "DRS"}
	}
	enf := messages.InvoiceDocument{Kind: "Invoice", Name: "NF-1", Source: "ENF", ExternalURL: "https://nfe.example/1"}
	linkOnly := messages.InvoiceDocument{Kind: "TaxReceipt", ExternalURL: "https://tax.example/2"}
	type want struct{ fetched, skipped []string } // "kind/name" and "kind/name:reason"
	for _, tc := range []struct {
		name         string
		subscription bool
		kinds        []string
		docs         []messages.InvoiceDocument
		want         want
	}{
		{"named documents are fetched", false, nil, []messages.InvoiceDocument{doc("Invoice", "A"), doc("CreditNote", "CN")},
			want{fetched: []string{"Invoice/A", "CreditNote/CN"}}},
		{"a kind not asked for", false, []string{"Invoice"}, []messages.InvoiceDocument{doc("Invoice", "A"), doc("Statement", "ST"), doc("CreditNote", "CN")},
			want{fetched: []string{"Invoice/A"}, skipped: []string{"Statement/ST:kind_not_requested", "CreditNote/CN:kind_not_requested"}}},
		{"an unknown kind by default", false, nil, []messages.InvoiceDocument{doc("Statement", "ST")},
			want{skipped: []string{"Statement/ST:kind_not_requested"}}},
		{"external sources", false, nil, []messages.InvoiceDocument{enf, linkOnly, doc("Invoice", "A")},
			want{fetched: []string{"Invoice/A"}, skipped: []string{"Invoice/NF-1:external", "TaxReceipt/:external"}}},
		{"a nameless invoice is the default document", false, nil, []messages.InvoiceDocument{doc("Invoice", ""), doc("TaxReceipt", "")},
			want{fetched: []string{"Invoice/"}, skipped: []string{"TaxReceipt/:no_name"}}},
		{"a nameless invoice beside a named one", false, nil, []messages.InvoiceDocument{doc("Invoice", ""), doc("Invoice", "A"), doc("Invoice", "")},
			want{fetched: []string{"Invoice/A"}, skipped: []string{"Invoice/:no_name", "Invoice/:no_name"}}},
		{"two nameless invoices", false, nil, []messages.InvoiceDocument{doc("Invoice", ""), doc("Invoice", "")},
			want{fetched: []string{"Invoice/"}, skipped: []string{"Invoice/:no_name"}}},
		{"nameless EA files need no name", false, nil, []messages.InvoiceDocument{doc("Summary", ""), doc("Transactions", "")},
			want{fetched: []string{"Summary/", "Transactions/"}}},
		{"nameless files of a subscription", true, nil, []messages.InvoiceDocument{doc("Summary", ""), doc("Invoice", "")},
			want{fetched: []string{"Invoice/"}, skipped: []string{"Summary/:no_name"}}},
		{"the same document twice", false, nil, []messages.InvoiceDocument{doc("Invoice", "A"), doc("Invoice", "A")},
			want{fetched: []string{"Invoice/A"}, skipped: []string{"Invoice/A:duplicate"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := operation.NewState(collectionRequest(tc.kinds...), t0, time.Hour, 24*time.Hour)
			if tc.subscription {
				st.Request.Params.BillingAccountName, st.Request.Params.SubscriptionID = "", "11111111-2222-3333-4444-555555555555"
			}
			st.Phase, st.ClaimedBy, st.Unanswered = operation.PhaseStarting, me, 1
			date := time.Date(2026, 2, 5, 0, 0, 0, 0, time.UTC)
			inv := messages.Invoice{ID: "/x", Name: "G000000001", InvoiceDate: &date, Documents: tc.docs}
			s := m.Answer(st, operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: []messages.Invoice{inv}}}, t0)
			var got want
			ids := map[string]bool{}
			for _, k := range s.Chunk.Children {
				got.fetched = append(got.fetched, k.DocKind+"/"+k.Document)
				if k.Invalid != "" || k.Month != "2026-02" {
					t.Errorf("child %+v: invalid or not in the invoice's month", k)
				}
				id := operation.ChildRequest(st.Request, 0, k).ID
				if ids[id] {
					t.Errorf("two children share the id %s", id)
				}
				ids[id] = true
			}
			for _, k := range s.Chunk.Skipped {
				got.skipped = append(got.skipped, k.DocKind+"/"+k.Document+":"+k.Reason)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			c := s.Next.Collection
			if c.Listed != len(tc.docs) || c.Total+len(s.Chunk.Skipped) != len(tc.docs) || c.Skipped[0] != len(s.Chunk.Skipped) {
				t.Errorf("counts: listed %d, total %d, skipped %v; %d documents", c.Listed, c.Total, c.Skipped, len(tc.docs))
			}
			if (s.Chunk.SkippedKey != "") != (len(s.Chunk.Skipped) > 0) {
				t.Errorf("skipped key %q with %d skipped", s.Chunk.SkippedKey, len(s.Chunk.Skipped))
			}
		})
	}
	// A nameless invoice's child is the download without documentName.
	r := operation.ChildRequest(collectionRequest(), 0, operation.Child{Invoice: "G000000001", DocKind: "Invoice"})
	if r.Kind != messages.KindAccountDocument || r.Params.DocumentName != "" || r.Validate() != nil {
		t.Errorf("the default document's request: %+v (%v)", r, r.Validate())
	}
}

// The completion event counts the listed, skipped and fetched documents,
// lists the skipped ones, and counts every month of the period (one with
// nothing listed as well).
func TestCollectionFinishAccounts(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	st := collecting(3, 3)
	st.Collection.Ended, st.Collection.Completed, st.Collection.Failed = []byte{7}, 2, 1
	st.Collection.Listed = 5
	st.Collection.Skipped = []int{2}
	ok := &messages.Completed{URL: "https://x/y"}
	req := func(i int) *messages.Request {
		r := operation.ChildRequest(st.Request, i, operation.Child{Invoice: "G1", Document: fmt.Sprint(i)})
		return &r
	}
	ends := []operation.ChildEnd{
		{Child: operation.Child{Invoice: "G1", Document: "0", DocKind: "Invoice", Month: "2026-01"}, Completed: ok, Request: req(0)},
		{Child: operation.Child{Invoice: "G1", Document: "1", DocKind: "TaxReceipt", Month: "2026-01"}, Failed: &messages.Failed{Code: messages.CodeAzureError}, Request: req(1)},
		{Child: operation.Child{Invoice: "G1", Document: "2", DocKind: "Invoice", Month: "2026-03"}, Completed: ok, Request: req(2)},
	}
	skipped := []operation.Skipped{
		{Invoice: "G1", DocKind: "Statement", Document: "S", Reason: messages.SkipKindNotRequested, Month: "2026-01"},
		{Invoice: "G2", DocKind: "Invoice", Reason: messages.SkipExternal, ExternalURL: "https://nfe.example/1", Month: "2026-03"},
	}
	sum := m.Finish(st, ends, skipped, t0).Next.Completed.Collected
	if sum.Listed != 5 || sum.Skipped != 2 || len(sum.SkippedDocuments) != 2 || sum.SkippedDocuments[1].ExternalURL != "https://nfe.example/1" ||
		sum.SkippedDocuments[0].Reason != messages.SkipKindNotRequested {
		t.Errorf("summary %+v", sum)
	}
	want := []messages.MonthCount{
		{Month: "2026-01", Documents: 2, Completed: 1, Failed: 1, Skipped: 1, Reasons: map[string]int{messages.SkipKindNotRequested: 1}},
		{Month: "2026-02"},
		{Month: "2026-03", Documents: 1, Completed: 1, Skipped: 1, Reasons: map[string]int{messages.SkipExternal: 1}},
	}
	if fmt.Sprint(sum.Months) != fmt.Sprint(want) {
		t.Errorf("months %+v, want %+v", sum.Months, want)
	}
	// A document dated outside the period counts in its nearest month.
	outside := append([]operation.ChildEnd{}, ends...)
	outside[0].Child.Month, outside[2].Child.Month = "2025-12", "2026-05"
	odd := m.Finish(st, outside, nil, t0).Next.Completed.Collected.Months
	if len(odd) != 3 || odd[0].Month != "2026-01" || odd[0].Documents != 2 || odd[2].Month != "2026-03" || odd[2].Documents != 1 {
		t.Errorf("months with documents dated outside the period: %+v", odd)
	}
	for _, c := range sum.Children {
		if want := map[string]string{"0": "2026-01", "1": "2026-01", "2": "2026-03"}[c.DocumentName]; c.Month != want {
			t.Errorf("child %s in month %q, want %q", c.DocumentName, c.Month, want)
		}
	}
}
