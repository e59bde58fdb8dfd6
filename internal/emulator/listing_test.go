package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

type listPage struct {
	Value    []invoice `json:"value"`
	NextLink string    `json:"nextLink"`
}

// listAll follows every nextLink from the first page of req.
func listAll(t *testing.T, b *testBundle, req request) (invoices []invoice, pages int) {
	t.Helper()
	link := b.srv.URL() + req.path
	for link != "" {
		resp, body := send(t, b.srv.Client(), http.MethodGet, link, b.token, "", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages+1, resp.StatusCode, body)
		}
		var p listPage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		invoices, link = append(invoices, p.Value...), p.NextLink
		pages++
		if pages > 100 {
			t.Fatal("no end to the pages")
		}
	}
	return invoices, pages
}

func TestListingPagesAndPeriod(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.SetListing(4, 3)
	all, pages := listAll(t, b, opRequest(OpAccountInvoiceList, ""))
	// January to March 2026, three invoices a month, four to a page.
	if len(all) != 9 || pages != 3 {
		t.Fatalf("%d invoices on %d pages, want 9 on 3", len(all), pages)
	}
	seen := map[string]bool{}
	kinds := map[string]bool{}
	statuses := map[string]bool{}
	for _, inv := range all {
		if seen[inv.Name] || !invoiceNamePattern.MatchString(inv.Name) {
			t.Errorf("invoice name %q repeated or invalid", inv.Name)
		}
		seen[inv.Name] = true
		if d := inv.Properties.InvoiceDate; d < "2026-01-01" || d > "2026-03-31T99" {
			t.Errorf("invoice %s dated %s, outside the period", inv.Name, d)
		}
		for _, d := range inv.Properties.Documents {
			kinds[d.Kind] = true
		}
		statuses[inv.Properties.Status] = true
	}
	for _, k := range []string{"Invoice", "CreditNote", "TaxReceipt", "Summary", "Transactions", "VoidNote", "Statement"} {
		if !kinds[k] {
			t.Errorf("no %s document among %v", k, kinds)
		}
	}
	if !statuses["PastDue"] {
		t.Errorf("statuses %v: want PastDue, which the spec's enum does not list", statuses)
	}
	// The same scope and period list the same invoices.
	again, _ := listAll(t, b, opRequest(OpAccountInvoiceList, ""))
	for i := range again {
		if again[i].Name != all[i].Name {
			t.Fatalf("second listing differs at %d: %s vs %s", i, again[i].Name, all[i].Name)
		}
	}
	// top makes pages smaller; the first page is a start call, the others pages.
	top := opRequest(OpAccountInvoiceList, "")
	top.path += "&top=2"
	if _, pages := listAll(t, b, top); pages != 5 {
		t.Errorf("top=2: %d pages, want 5", pages)
	}
	calls := b.srv.CallsFor(eaAccount)
	if len(calls) != 3+3+5 || calls[0].Phase != PhaseStart || calls[1].Phase != PhasePage || calls[0].Operation != OpAccountInvoiceList {
		t.Errorf("calls %+v", calls)
	}
	// A subscription's listing, without a period: the last twelve months.
	subs, _ := listAll(t, b, opRequest(OpSubscriptionInvoiceList, ""))
	if len(subs) < 33 || subs[0].Properties.SubscriptionID != testSub {
		t.Errorf("subscription listing: %d invoices, first %+v", len(subs), subs[0].Properties)
	}
}

func TestListingValidationAndScripts(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	period := func(q string) request {
		r := opRequest(OpAccountInvoiceList, "")
		r.path = r.path[:strings.Index(r.path, "?")+1] + "api-version=2024-04-01&" + q
		return r
	}
	for _, c := range []struct {
		name, query, target string
	}{
		{"bad date", "periodStartDate=2026-1-1", "periodStartDate"},
		{"end before start", "periodStartDate=2026-03-01&periodEndDate=2026-01-01", "periodEndDate"},
		{"too long", "periodStartDate=2020-01-01&periodEndDate=2026-01-01", "periodStartDate"},
		{"top too big", "top=51", "top"},
		{"bad skiptoken", url.Values{skipTokenParam: {"x"}}.Encode(), skipTokenParam},
	} {
		resp, body := b.call(t, period(c.query))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"target":"`+c.target+`"`) {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
	}
	// Scripted by the account: a throttle, then the page.
	b.srv.Script(eaAccount, Throttled(http.StatusTooManyRequests, "Retry-After", "3"), OK())
	resp, _ := b.call(t, opRequest(OpAccountInvoiceList, ""))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("scripted throttle: %d", resp.StatusCode)
	}
	if _, pages := listAll(t, b, opRequest(OpAccountInvoiceList, "")); pages != 2 {
		t.Errorf("%d pages after the throttle", pages)
	}
}

func TestMissingDocument(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	req := opRequest(OpAccountDocument, testInv)
	req.path = strings.Replace(req.path, "documentName=CN-", "documentName="+MissingDocumentPrefix, 1)
	resp, body := b.call(t, req)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "DocumentNotFound") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Each document of an invoice plays its own copy of the invoice's script.
	b.srv.Script(testInv, Accepted("1"), OK())
	for _, doc := range []string{"CN-1", "TR-1"} {
		r := opRequest(OpAccountDocument, testInv)
		r.path = strings.Replace(r.path, "documentName=CN-"+testInv, "documentName="+doc, 1)
		if resp, _ := b.call(t, r); resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s: %d, want the script's first reply", doc, resp.StatusCode)
		}
	}
	calls := b.srv.CallsFor(testInv)
	if len(calls) != 3 || calls[0].DocumentName != MissingDocumentPrefix+testInv || calls[2].DocumentName != "TR-1" {
		t.Errorf("calls %+v", calls)
	}
}
