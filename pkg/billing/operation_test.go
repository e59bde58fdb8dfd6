package billing

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

const sub = "11111111-2222-3333-4444-555555555555"

func TestOperationsBuildTheExactRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind   messages.Kind
		params messages.Params
		method string
		path   string
		query  string
		body   string
		lro    bool
	}{
		{messages.KindSubscriptionInvoice, messages.Params{SubscriptionID: sub, InvoiceName: "E123456789", DownloadToken: "DRS_12345"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/default/billingSubscriptions/" + sub + "/invoices/E123456789/download",
			"api-version=2020-05-01&downloadToken=DRS_12345", "", true},
		{messages.KindInvoiceSummary, messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices/G123456789/downloadSummary",
			"api-version=2024-04-01", "", true},
		{messages.KindSubscriptionDocuments, messages.Params{SubscriptionID: sub, Documents: []messages.DocumentRef{{DocumentName: "12345678", InvoiceName: "E123456789"}}},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/default/billingSubscriptions/" + sub + "/downloadDocuments",
			"api-version=2024-04-01", `[{"documentName":"12345678","invoiceName":"E123456789"}]`, true},
		{messages.KindInvoicePriceSheet, messages.Params{BillingAccountName: "aabb-ccdd:eeff-0011_2024-01-31", BillingProfileName: "AB-CD", InvoiceName: "G123"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/aabb-ccdd:eeff-0011_2024-01-31/billingProfiles/AB-CD/invoices/G123/providers/Microsoft.CostManagement/pricesheets/default/download",
			"api-version=2023-11-01", "", true},
		{messages.KindInvoice, messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"},
			http.MethodGet, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices/G123456789",
			"api-version=2024-04-01", "", false},
		{messages.KindAccountDocument, messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789", DocumentName: "CN 1/2"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices/G123456789/download",
			"api-version=2024-04-01&documentName=CN+1%2F2", "", true},
		{messages.KindAccountDocument, messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices/G123456789/download",
			"api-version=2024-04-01", "", true},
		{messages.KindAccountDocuments, messages.Params{BillingAccountName: "12345678", Documents: []messages.DocumentRef{{InvoiceName: "G123456789"}, {DocumentName: "TR1", InvoiceName: "G123456789"}}},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/downloadDocuments",
			"api-version=2024-04-01", `[{"invoiceName":"G123456789"},{"documentName":"TR1","invoiceName":"G123456789"}]`, true},
		{messages.KindSubscriptionDocument, messages.Params{SubscriptionID: sub, InvoiceName: "E123456789", DocumentName: "12345678"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/default/billingSubscriptions/" + sub + "/invoices/E123456789/download",
			"api-version=2024-04-01&documentName=12345678", "", true},
		{messages.KindInvoiceTransactions, messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices/G123456789/transactionsDownload",
			"api-version=2024-04-01", "", true},
		{messages.KindProfilePriceSheet, messages.Params{BillingAccountName: "aabb-ccdd:eeff-0011_2024-01-31", BillingProfileName: "AB-CD"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/aabb-ccdd:eeff-0011_2024-01-31/billingProfiles/AB-CD/providers/Microsoft.CostManagement/pricesheets/default/download",
			"api-version=2023-11-01", "", true},
		{messages.KindAccountInvoices, messages.Params{BillingAccountName: "12345678", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"},
			http.MethodGet, "/providers/Microsoft.Billing/billingAccounts/12345678/invoices",
			"api-version=2024-04-01&periodEndDate=2026-03-31&periodStartDate=2026-01-01", "", false},
		{messages.KindSubscriptionInvoices, messages.Params{SubscriptionID: sub},
			http.MethodGet, "/providers/Microsoft.Billing/billingAccounts/default/billingSubscriptions/" + sub + "/invoices",
			"api-version=2024-04-01", "", false},
	}
	for _, c := range cases {
		op := OperationFor(c.kind)
		if op == nil {
			t.Fatalf("%s: no operation", c.kind)
		}
		if op.Method != c.method || op.Path(c.params) != c.path || op.Query(c.params).Encode() != c.query || op.LongRunning != c.lro {
			t.Errorf("%s: %s %s?%s lro=%v", c.kind, op.Method, op.Path(c.params), op.Query(c.params).Encode(), op.LongRunning)
		}
		body := ""
		if b := op.Body(c.params); b != nil {
			raw, _ := json.Marshal(b)
			body = string(raw)
		}
		if body != c.body {
			t.Errorf("%s: body %s, want %s", c.kind, body, c.body)
		}
	}
	if OperationFor("nope") != nil {
		t.Error("unknown kind has an operation")
	}
}

func TestParseResultShapes(t *testing.T) {
	t.Parallel()
	ps, err := ParseResult(ShapeProfilePriceSheet, []byte(`{"downloadUrl":"https://x/ps.zip?sig=a","expiryTime":"2020-12-08T05:55:59.4394737Z",`+
		`"downloadFileProperties":{"fileType":"csv","files":[{"fileName":"a.csv","sizeInBytes":100}]}}`))
	if err != nil || ps.URL != "https://x/ps.zip?sig=a" || ps.ValidTill != nil || ps.ExpiryTime == nil ||
		string(ps.DownloadFileProperties) != `{"fileType":"csv","files":[{"fileName":"a.csv","sizeInBytes":100}]}` {
		t.Errorf("profile price sheet %+v %v", ps, err)
	}
	if _, err := ParseResult(ShapeProfilePriceSheet, []byte(`{"downloadUrl":"https://x/ps.zip","downloadFileProperties":[1]}`)); err == nil {
		t.Error("downloadFileProperties that is not an object accepted")
	}
	page, err := ParseResult(ShapeInvoiceList, []byte(`{"value":[{"id":"/a/invoices/G1","name":"G1","properties":{"status":"PastDue",`+
		`"documents":[{"kind":"Statement","name":"S1","source":"Elsewhere","externalUrl":"https://ext/doc"}]}}],"nextLink":"https://m/next?skiptoken=x"}`))
	if err != nil || len(page.Invoices) != 1 || page.NextLink != "https://m/next?skiptoken=x" {
		t.Fatalf("page %+v %v", page, err)
	}
	if inv := page.Invoices[0]; inv.Status != "PastDue" || inv.Documents[0].Kind != "Statement" || inv.Documents[0].ExternalURL != "https://ext/doc" {
		t.Errorf("open enums not passed on: %+v", inv)
	}
	if last, err := ParseResult(ShapeInvoiceList, []byte(`{"value":[]}`)); err != nil || last.NextLink != "" || len(last.Invoices) != 0 {
		t.Errorf("empty last page %+v %v", last, err)
	}
	for _, body := range []string{`{"nextLink":"x"}`, `{"value":[{"name":"G1"}]}`, `{"value":{}}`} {
		if _, err := ParseResult(ShapeInvoiceList, []byte(body)); err == nil {
			t.Errorf("%s accepted", body)
		}
	}
	r, err := ParseResult(ShapePriceSheetURL, []byte(`{"downloadUrl":"https://x/p.csv?sig=a","expiryTime":"2020-12-08T05:55:59.4394737Z","validTill":"2020-12-08T05:55:59.4394737Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2020, 12, 8, 5, 55, 59, 439473700, time.UTC)
	if r.URL != "https://x/p.csv?sig=a" || !r.ExpiryTime.Equal(want) || !r.ValidTill.Equal(want) {
		t.Errorf("price sheet result %+v", r)
	}
	for _, shape := range []ResultShape{ShapeDownloadURL, ShapeDocumentResult} {
		r, err := ParseResult(shape, []byte(`{"url":"https://x/f.pdf","expiryTime":"2023-02-16T17:32:28Z"}`))
		if err != nil || r.URL != "https://x/f.pdf" || !r.ExpiryTime.Equal(time.Date(2023, 2, 16, 17, 32, 28, 0, time.UTC)) {
			t.Errorf("%s: %+v %v", shape, r, err)
		}
	}
	// Azure's date-time without a zone means UTC.
	if tm, err := ParseTime("2023-02-16T17:32:28.1234567"); err != nil || !tm.Equal(time.Date(2023, 2, 16, 17, 32, 28, 123456700, time.UTC)) {
		t.Errorf("zoneless time: %v %v", tm, err)
	}
	inv, err := ParseResult(ShapeInvoice, []byte(`{"id":"/i","name":"G1","properties":{"status":"Paid","invoiceDate":"2024-01-01T00:00:00Z",
		"totalAmount":{"currency":"EUR","value":12.5},"documents":[{"kind":"Invoice","name":"D1","source":"DRS"}]}}`))
	if err != nil || inv.Invoice.Status != "Paid" || inv.Invoice.Amounts["totalAmount"].Value != 12.5 || inv.Invoice.Documents[0].Name != "D1" {
		t.Errorf("invoice %+v %v", inv.Invoice, err)
	}
	for _, bad := range []string{``, `{}`, `{"url":"ftp://x"}`, `{"url":"https://x","expiryTime":"soon"}`, `[`} {
		if _, err := ParseResult(ShapeDocumentResult, []byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseErrorShapes(t *testing.T) {
	t.Parallel()
	h := http.Header{"X-Ms-Request-Id": {"rid"}, "X-Ms-Correlation-Request-Id": {"cid"}}
	cases := []struct {
		name, body, code, message, target string
		details                           int
	}{
		{"ARM v5 (2024-04-01)", `{"error":{"code":"InvalidInvoiceName","message":"bad","target":"invoiceName","details":[{"code":"a","message":"b"}],"additionalInfo":[{"type":"t","info":{}}]}}`, "InvalidInvoiceName", "bad", "invoiceName", 1},
		{"Microsoft.Billing 2020-05-01", `{"error":{"code":"InvoiceNotFound","message":"not found","target":"","details":[]}}`, "InvoiceNotFound", "not found", "", 0},
		{"Cost Management 2023-11-01", `{"error":{"code":"429","message":"Too many requests. Please retry."}}`, "429", "Too many requests. Please retry.", "", 0},
		{"top level", `{"code":"BadRequest","message":"flat"}`, "BadRequest", "flat", "", 0},
		{"not JSON", `upstream connect error`, "", "upstream connect error", "", 0},
		{"empty", ``, "", "Bad Gateway", "", 0},
	}
	for _, c := range cases {
		ae := ParseError(502, h, []byte(c.body))
		if ae.Code != c.code || ae.Message != c.message || ae.Target != c.target || len(ae.Details) != c.details || ae.RequestID != "rid" || ae.CorrelationID != "cid" {
			t.Errorf("%s: %+v", c.name, ae)
		}
	}
}
