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
		{messages.KindCostDetails, messages.Params{SubscriptionID: sub, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"},
			http.MethodPost, "/subscriptions/" + sub + "/providers/Microsoft.CostManagement/generateCostDetailsReport",
			"api-version=2025-03-01", `{"metric":"ActualCost","timePeriod":{"start":"2026-01-01","end":"2026-01-31"}}`, true},
		{messages.KindCostDetails, messages.Params{BillingAccountName: "12345678", BillingPeriod: "202601", Metric: messages.MetricAmortizedCost},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/providers/Microsoft.CostManagement/generateCostDetailsReport",
			"api-version=2025-03-01", `{"metric":"AmortizedCost","billingPeriod":"202601"}`, true},
		{messages.KindCostDetails, messages.Params{BillingAccountName: "a:b_2019-05-31", BillingProfileName: "P1", InvoiceSectionName: "S1", InvoiceName: "G1"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/a:b_2019-05-31/billingProfiles/P1/invoiceSections/S1/providers/Microsoft.CostManagement/generateCostDetailsReport",
			"api-version=2025-03-01", `{"metric":"ActualCost","invoiceId":"G1"}`, true},
		{messages.KindCostDetails, messages.Params{BillingAccountName: "12345:6789", CustomerName: "C1", InvoiceName: "M1"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345:6789/customers/C1/providers/Microsoft.CostManagement/generateCostDetailsReport",
			"api-version=2025-03-01", `{"metric":"ActualCost","invoiceId":"M1"}`, true},
		{messages.KindReservationDetails, messages.Params{BillingAccountName: "12345678", BillingProfileName: "CZSFR-SDFXC-DSDF", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-30"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/billingProfiles/CZSFR-SDFXC-DSDF/providers/Microsoft.CostManagement/generateReservationDetailsReport",
			"api-version=2025-03-01&endDate=2026-01-30&startDate=2026-01-01", "", true},
		{messages.KindBenefitUtilization, messages.Params{BillingAccountName: "8099099", BenefitKind: "Reservation", Grain: "Daily", PeriodStartDate: "2026-06-01", PeriodEndDate: "2026-08-31"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/8099099/providers/Microsoft.CostManagement/generateBenefitUtilizationSummariesReport",
			"api-version=2025-03-01", `{"grain":"Daily","startDate":"2026-06-01T00:00:00Z","endDate":"2026-08-31T00:00:00Z","kind":"Reservation"}`, true},
		{messages.KindBenefitUtilization, messages.Params{ReservationOrderID: "O1", ReservationID: "R1", Grain: "Monthly", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-06-30"},
			http.MethodPost, "/providers/Microsoft.Capacity/reservationorders/O1/reservations/R1/providers/Microsoft.CostManagement/generateBenefitUtilizationSummariesReport",
			"api-version=2025-03-01", `{"grain":"Monthly","startDate":"2026-01-01T00:00:00Z","endDate":"2026-06-30T00:00:00Z"}`, true},
		{messages.KindBenefitUtilization, messages.Params{SavingsPlanOrderID: "O2", SavingsPlanID: "S2", Grain: "Daily", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"},
			http.MethodPost, "/providers/Microsoft.BillingBenefits/savingsPlanOrders/O2/savingsPlans/S2/providers/Microsoft.CostManagement/generateBenefitUtilizationSummariesReport",
			"api-version=2025-03-01", `{"grain":"Daily","startDate":"2026-01-01T00:00:00Z","endDate":"2026-01-31T00:00:00Z"}`, true},
		{messages.KindAccountPriceSheet, messages.Params{BillingAccountName: "12345678", BillingPeriod: "202311"},
			http.MethodPost, "/providers/Microsoft.Billing/billingAccounts/12345678/billingPeriods/202311/providers/Microsoft.CostManagement/pricesheets/default/download",
			"api-version=2025-03-01", "", true},
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

func TestParseCostShapes(t *testing.T) {
	t.Parallel()
	valid := time.Date(2026, 5, 10, 8, 8, 46, 197325200, time.UTC)
	two, err := ParseResult(ShapeCostDetails, []byte(`{"id":"x","name":"n","status":"Completed","validTill":"2026-05-10T08:08:46.1973252Z",
		"manifest":{"manifestVersion":"2025-03-01","dataFormat":"Csv","blobCount":2,"byteCount":300,"compressData":false,
		"blobs":[{"blobLink":"https://s/1?sig=a","byteCount":100},{"blobLink":"https://s/2?sig=b","byteCount":200}]}}`))
	if err != nil || two.URL != "" || len(two.Files) != 2 || two.Files[1].ByteCount != 200 || !two.Files[0].ExpiryTime.Equal(valid) ||
		two.Manifest.BlobCount != 2 || two.Manifest.ByteCount != 300 || two.Manifest.DataFormat != "Csv" {
		t.Errorf("two blobs: %+v %v", two, err)
	}
	one, err := ParseResult(ShapeCostDetails, []byte(`{"status":"Completed","manifest":{"blobCount":1,"blobs":[{"blobLink":"https://s/1?sig=a","byteCount":5}]}}`))
	if err != nil || one.URL != "https://s/1?sig=a" || len(one.Files) != 1 {
		t.Errorf("one blob: %+v %v", one, err)
	}
	if r, err := ParseResult(ShapeCostDetails, []byte(`{"status":"NoDataFound"}`)); err != nil || !r.NoData || len(r.Files) != 0 {
		t.Errorf("NoDataFound: %+v %v", r, err)
	}
	failed, err := ParseResult(ShapeCostDetails, []byte(`{"status":"Failed","error":{"code":"TooLarge","message":"too much data"}}`))
	if err != nil || failed.Failed == nil || failed.Failed.Code != "TooLarge" || failed.Failed.Message != "too much data" {
		t.Errorf("Failed: %+v %v", failed, err)
	}
	for _, shape := range []ResultShape{ShapeReservationDetails, ShapeBenefitUtilization, ShapeAccountPriceSheet, ShapeCostDetails} {
		for _, status := range []string{"Running", "InProgress", "Queued"} {
			if r, err := ParseResult(shape, []byte(`{"status":"`+status+`"}`)); err != nil || !r.Pending {
				t.Errorf("%s %s: %+v %v", shape, status, r, err)
			}
		}
		if _, err := ParseResult(shape, []byte(`{"status":"Exploded"}`)); err == nil {
			t.Errorf("%s: an unknown status accepted", shape)
		}
	}
	// Benefit utilization says Complete, not Completed.
	b, err := ParseResult(ShapeBenefitUtilization, []byte(`{"input":{"grain":"Daily"},"status":"Complete","properties":{"reportUrl":"https://s/r?sig=a",
		"secondaryReportUrl":"https://s2/r?sig=a","validUntil":"2026-05-10T08:08:46.1973252Z"}}`))
	if err != nil || b.URL != "https://s/r?sig=a" || b.SecondaryURL != "https://s2/r?sig=a" || !b.ExpiryTime.Equal(valid) || len(b.Files) != 1 {
		t.Errorf("benefit: %+v %v", b, err)
	}
	rd, err := ParseResult(ShapeReservationDetails, []byte(`{"status":"Completed","properties":{"reportUrl":"https://s/d?sig=a","validUntil":"2026-05-10T08:08:46.1973252Z"}}`))
	if err != nil || rd.URL != "https://s/d?sig=a" || !rd.ExpiryTime.Equal(valid) {
		t.Errorf("reservation: %+v %v", rd, err)
	}
	ps, err := ParseResult(ShapeAccountPriceSheet, []byte(`{"status":"Completed","properties":{"downloadUrl":"https://s/p.zip?sig=a",
		"validTill":"2026-05-10T08:08:46.1973252Z","downloadFileProperties":{"fileFormat":"Csv"}}}`))
	if err != nil || ps.URL != "https://s/p.zip?sig=a" || !ps.ValidTill.Equal(valid) || !ps.ExpiryTime.Equal(valid) || string(ps.DownloadFileProperties) != `{"fileFormat":"Csv"}` {
		t.Errorf("EA price sheet: %+v %v", ps, err)
	}
	for shape, bad := range map[ResultShape]string{
		ShapeCostDetails:        `{"status":"Completed","manifest":{"blobs":[]}}`,
		ShapeReservationDetails: `{"status":"Completed"}`,
		ShapeBenefitUtilization: `{"status":"Complete","properties":{"reportUrl":"ftp://x"}}`,
		ShapeAccountPriceSheet:  `{"status":"Completed","properties":{"downloadUrl":"https://s/p","downloadFileProperties":[1]}}`,
	} {
		if _, err := ParseResult(shape, []byte(bad)); err == nil {
			t.Errorf("%s: %s accepted", shape, bad)
		}
	}
	if _, err := ParseResult(ShapeReservationDetails, []byte(`{"status":"NoDataFound"}`)); err == nil {
		t.Error("NoDataFound accepted outside cost details")
	}
}
