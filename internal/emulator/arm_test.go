package emulator

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/testwait"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	withQuery := func(r request, query string) request {
		r.path = r.path[:strings.Index(r.path, "?")+1] + query
		return r
	}
	withPath := func(r request, old, new string) request {
		r.path = strings.Replace(r.path, old, new, 1)
		return r
	}
	docs := func(contentType, body string) request {
		r := opRequest(OpDocumentsDownload, testInv)
		r.header = map[string]string{"Content-Type": contentType}
		r.body = body
		return r
	}
	type row struct {
		name       string
		req        request
		wantStatus int
		wantCode   string
		wantTarget string
	}
	var tests []row
	for _, op := range operations {
		valid := opRequest(op, testInv)
		extra := ""
		if op == OpInvoiceDownload {
			extra = "&downloadToken=DRS_12345"
		}
		tests = append(tests,
			row{op + " wrong api-version", withQuery(valid, "api-version=2019-10-01-preview"+extra), 400, "InvalidApiVersionParameter", "api-version"},
			row{op + " no api-version", withQuery(valid, strings.TrimPrefix(extra, "&")), 400, "MissingApiVersionParameter", "api-version"})
	}
	tests = append(tests,
		row{"bad subscription", withPath(opRequest(OpInvoiceDownload, testInv), testSub, "not-a-guid"), 400, "InvalidParameter", "subscriptionId"},
		row{"unsafe 2020 invoice", withPath(opRequest(OpInvoiceDownload, testInv), testInv, "G1%3Cscript%3E"), 400, "InvalidParameter", "invoiceName"},
		row{"no downloadToken", withQuery(opRequest(OpInvoiceDownload, testInv), "api-version=2020-05-01"), 400, "InvalidParameter", "downloadToken"},
		row{"downloadToken with space", withQuery(opRequest(OpInvoiceDownload, testInv), "api-version=2020-05-01&downloadToken=DRS%2012"), 400, "InvalidParameter", "downloadToken"},
		row{"summary bad account", withPath(opRequest(OpInvoiceSummary, testInv), eaAccount, "acct_1"), 400, "InvalidParameter", "billingAccountName"},
		row{"summary bad invoice", opRequest(OpInvoiceSummary, "X123456789"), 400, "InvalidParameter", "invoiceName"},
		row{"get bad invoice", opRequest(OpInvoiceGet, "g123456789"), 400, "InvalidParameter", "invoiceName"},
		row{"get PCN account", withPath(opRequest(OpInvoiceGet, testInv), mcaAccount, "pcn.abc123"), 200, "", ""},
		row{"pricesheet EA account", withPath(opRequest(OpPricesheetDownload, testInv), cmAccount, eaAccount), 400, "InvalidParameter", "billingAccountName"},
		row{"pricesheet bad profile", withPath(opRequest(OpPricesheetDownload, testInv), cmProfile, "PROFILE"), 400, "InvalidParameter", "billingProfileName"},
		row{"pricesheet bad invoice", opRequest(OpPricesheetDownload, "G-1"), 400, "InvalidParameter", "invoiceName"},
		row{"documents bad subscription", withPath(opRequest(OpDocumentsDownload, testInv), testSub, "123"), 400, "InvalidParameter", "subscriptionId"},
		row{"documents text/plain", docs("text/plain", `[{"invoiceName":"G1"}]`), 400, "InvalidRequestContent", ""},
		row{"documents not JSON", docs("application/json", `{not json`), 400, "InvalidRequestContent", "parameters"},
		row{"documents object", docs("application/json", `{"invoiceName":"G1"}`), 400, "InvalidRequestContent", "parameters"},
		row{"documents empty", docs("application/json", `[]`), 400, "InvalidRequestContent", "parameters"},
		row{"documents no invoiceName", docs("application/json; charset=utf-8", `[{"invoiceName":"G1"},{"documentName":"1"}]`), 400, "InvalidRequestContent", "parameters[1].invoiceName"},
		row{"documents without documentName", docs("application/json", `[{"invoiceName":"G1"}]`), 202, "", ""},
		row{"literals are case-insensitive", withPath(opRequest(OpInvoiceSummary, testInv), "/providers/Microsoft.Billing/", "/PROVIDERS/microsoft.billing/"), 202, "", ""},
		row{"unknown path", request{method: http.MethodGet, path: "/subscriptions/" + testSub + "?api-version=2024-04-01"}, 404, "NotFound", ""},
		row{"unknown billing path", request{method: http.MethodGet, path: armPrefix + eaAccount + "/statements?api-version=2024-04-01"}, 404, "NotFound", ""},
		row{"unknown operation", request{method: http.MethodGet, path: armPrefix + eaAccount + "/operationResults/invoiceSummaryDownload_x?api-version=2024-04-01"}, 404, "NotFound", ""},
		row{"GET a download", request{method: http.MethodGet, path: opRequest(OpInvoiceSummary, testInv).path}, 405, "MethodNotAllowed", ""},
		row{"POST an invoice", request{method: http.MethodPost, path: opRequest(OpInvoiceGet, testInv).path}, 405, "MethodNotAllowed", ""},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := b.call(t, tt.req)
			if tt.wantCode == "" {
				if resp.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
				}
				return
			}
			wantError(t, resp, body, tt.wantStatus, tt.wantCode, tt.wantTarget)
			if tt.wantStatus == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
	t.Run("rejected calls are logged", func(t *testing.T) {
		t.Parallel()
		req := withQuery(opRequest(OpInvoiceGet, "H9-LOGGED"), "api-version=1999-01-01")
		b.call(t, req)
		calls := b.srv.CallsFor("H9-LOGGED")
		if len(calls) != 1 || calls[0].Status != 400 || calls[0].Accepted || calls[0].Operation != OpInvoiceGet || calls[0].Tenant != testTenant {
			t.Errorf("calls = %+v, want one rejected invoice-get call", calls)
		}
	})
}

// Result expectations per operation.
var (
	rfc3339Seconds = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	sevenDigits    = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$`)
	fileSuffix     = map[string]string{
		OpInvoiceDownload:      testInv + ".pdf",
		OpInvoiceSummary:       testInv + "_summary.pdf",
		OpDocumentsDownload:    ".zip",
		OpPricesheetDownload:   ".csv",
		OpAccountDocument:      testInv + "_CN-" + testInv + ".pdf",
		OpAccountDocuments:     ".zip",
		OpSubscriptionDocument: testInv + ".pdf",
		OpTransactionsDownload: testInv + "_transactions.csv",
		OpProfilePricesheet:    "_pricesheet.zip",
	}
)

// locationRE is the shape of op's Location on base, as docs/azure.md describes it.
func locationRE(op, base string) *regexp.Regexp {
	q := regexp.QuoteMeta
	billing := q(base + armPrefix)
	switch op {
	case OpInvoiceDownload:
		return regexp.MustCompile(`^` + billing + `default/billingSubscriptions/` + testSub + `/operationResults/invoiceDownload_` + guidRE + `\?api-version=2020-05-01$`)
	case OpInvoiceSummary:
		return regexp.MustCompile(`^` + billing + eaAccount + `/operationResults/invoiceSummaryDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpDocumentsDownload:
		return regexp.MustCompile(`^` + billing + `default/billingSubscriptions/` + testSub + `/operationResults/documentsDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpAccountDocument:
		return regexp.MustCompile(`^` + billing + eaAccount + `/invoices/` + testInv + `/operationResults/invoiceDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpAccountDocuments:
		return regexp.MustCompile(`^` + billing + eaAccount + `/operationResults/invoiceDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpSubscriptionDocument:
		return regexp.MustCompile(`^` + billing + `default/billingSubscriptions/` + testSub + `/operationResults/invoiceDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpTransactionsDownload:
		return regexp.MustCompile(`^` + billing + eaAccount + `/operationResults/transactionsDownload_` + guidRE + `\?api-version=2024-04-01$`)
	case OpProfilePricesheet:
		return regexp.MustCompile(`^` + billing + q(cmAccount+"/billingProfiles/PROF-"+testInv+"/providers/Microsoft.CostManagement/operationResults/") +
			`(` + guidRE + `)` + q("?sessiontoken=0:000000&api-version=2023-11-01&OperationType=PriceSheet") + `$`)
	default:
		return regexp.MustCompile(`^` + billing + q(cmAccount+"/billingProfiles/"+cmProfile+"/providers/Microsoft.CostManagement/operationResults/") +
			`(` + guidRE + `)` + q("?sessiontoken=0:000000&api-version=2023-11-01&OperationType=PriceSheet") + `$`)
	}
}

func TestLongRunning(t *testing.T) {
	t.Parallel()
	for _, op := range longRunning {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			b.srv.Script(testInv, Accepted("2"), AcceptedWith(map[string]string{"retry-after-ms": "1500"}), OK())

			resp, body := b.call(t, opRequest(op, testInv))
			if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
				t.Fatalf("start: %d %q, want an empty 202", resp.StatusCode, body)
			}
			wantARMHeaders(t, resp)
			loc := resp.Header.Get("Location")
			if !locationRE(op, b.srv.URL()).MatchString(loc) {
				t.Fatalf("Location = %q, want the shape %s", loc, locationRE(op, b.srv.URL()))
			}
			if ra := resp.Header.Get("Retry-After"); ra != "2" {
				t.Errorf("Retry-After = %q, want 2", ra)
			}
			if op == OpPricesheetDownload || op == OpProfilePricesheet {
				u, _ := url.Parse(loc)
				if u.Port() == "" || resp.Header.Get("OData-EntityId") != path.Base(u.Path) {
					t.Errorf("Location %q must name its port; OData-EntityId = %q", loc, resp.Header.Get("OData-EntityId"))
				}
			}

			resp, _ = send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil)
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") != loc || resp.Header.Get("Retry-After-Ms") != "1500" {
				t.Fatalf("poll 1: %d Location %q retry-after-ms %q", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Retry-After-Ms"))
			}
			for i := range 2 { // the last reply repeats
				resp, body = send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("poll %d: %d %s", i+2, resp.StatusCode, body)
				}
				checkResult(t, b, op, body)
			}

			calls := b.srv.CallsFor(testInv)
			want := []struct {
				phase      string
				status     int
				retryAfter string
				accepted   bool
			}{
				{PhaseStart, 202, "2", true}, {PhasePoll, 202, "1500", false}, {PhasePoll, 200, "", false}, {PhasePoll, 200, "", false},
			}
			if len(calls) != len(want) {
				t.Fatalf("calls = %+v, want %d", calls, len(want))
			}
			for i, w := range want {
				c := calls[i]
				if c.Operation != op || c.Phase != w.phase || c.Status != w.status || c.RetryAfter != w.retryAfter ||
					c.Accepted != w.accepted || c.OpID != calls[0].OpID || c.OpID == "" || c.Tenant != testTenant {
					t.Errorf("call %d = %+v, want %s %d retryAfter %q accepted %v with the start's opId", i, c, w.phase, w.status, w.retryAfter, w.accepted)
				}
			}
		})
	}
}

// checkResult checks a 200's body for op and fetches its download URL.
func checkResult(t *testing.T, b *testBundle, op string, body []byte) {
	t.Helper()
	var res struct {
		URL                    string          `json:"url"`
		DownloadURL            string          `json:"downloadUrl"`
		ExpiryTime             string          `json:"expiryTime"`
		ValidTill              string          `json:"validTill"`
		DownloadFileProperties json.RawMessage `json:"downloadFileProperties"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("result %s: %v", body, err)
	}
	link, format := res.URL, rfc3339Seconds
	switch op {
	case OpPricesheetDownload:
		link, format = res.DownloadURL, sevenDigits
		if res.ValidTill != res.ExpiryTime {
			t.Errorf("validTill %q != expiryTime %q", res.ValidTill, res.ExpiryTime)
		}
	case OpProfilePricesheet:
		link, format = res.DownloadURL, sevenDigits
		if res.ValidTill != "" || !bytes.HasPrefix(res.DownloadFileProperties, []byte("{")) {
			t.Errorf("profile price sheet: validTill %q, downloadFileProperties %s", res.ValidTill, res.DownloadFileProperties)
		}
	}
	if op == OpTransactionsDownload {
		if res.ExpiryTime != "" {
			t.Errorf("transactions expiryTime = %q, want none (as the specification's example)", res.ExpiryTime)
		}
	} else {
		if !format.MatchString(res.ExpiryTime) {
			t.Errorf("expiryTime = %q, want the format %s", res.ExpiryTime, format)
		}
		if exp, err := time.Parse(time.RFC3339Nano, res.ExpiryTime); err != nil || time.Until(exp) < 59*time.Minute || time.Until(exp) > time.Hour {
			t.Errorf("expiryTime %q is not an hour ahead (%v)", res.ExpiryTime, err)
		}
	}
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, b.srv.URL()+blobPrefix) || !strings.HasSuffix(u.Path, fileSuffix[op]) {
		t.Fatalf("download URL = %q, want a blob on the emulator ending in %q", link, fileSuffix[op])
	}
	q := u.Query()
	if q.Get("sv") == "" || q.Get("st") == "" || q.Get("se") == "" || q.Get("sr") != "b" || q.Get("sp") != "r" || len(q.Get("sig")) < 40 {
		t.Errorf("download URL %q lacks SAS parameters", link)
	}
	resp, file := send(t, b.srv.Client(), http.MethodGet, link, "", "", nil)
	if resp.StatusCode != http.StatusOK || len(file) == 0 {
		t.Fatalf("fetching the download URL: %d %q", resp.StatusCode, file)
	}
	if op == OpDocumentsDownload || op == OpAccountDocuments || op == OpProfilePricesheet {
		if _, err := zip.NewReader(bytes.NewReader(file), int64(len(file))); err != nil {
			t.Errorf("documents are not a zip: %v", err)
		}
	}
	q.Set("sig", "forged")
	u.RawQuery = q.Encode()
	if resp, _ := send(t, b.srv.Client(), http.MethodGet, u.String(), "", "", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged signature: status %d, want 403", resp.StatusCode)
	}
}

// Cost Management's Location always names its port, also when the client's Host did not.
func TestLocationPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		plain     bool
		op        string
		host      string
		wantStart string
	}{
		{"pricesheet https", false, OpPricesheetDownload, "127.0.0.1", "https://127.0.0.1:443/"},
		{"pricesheet http", true, OpPricesheetDownload, "localhost", "http://localhost:80/"},
		{"pricesheet IPv6", false, OpPricesheetDownload, "[::1]", "https://[::1]:443/"},
		{"pricesheet with port", false, OpPricesheetDownload, "emulator.test:8443", "https://emulator.test:8443/"},
		{"summary keeps the host", false, OpInvoiceSummary, "127.0.0.1", "https://127.0.0.1/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{PlainHTTP: tt.plain})
			req := opRequest(tt.op, testInv)
			req.header = map[string]string{"Host": tt.host}
			resp, body := b.call(t, req)
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, tt.wantStart+"providers/") {
				t.Errorf("%d %s: Location = %q, want it to start with %q", resp.StatusCode, body, loc, tt.wantStart)
			}
		})
	}
}

func TestInvoiceGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script []Reply // nil: the default script (202 then 200)
	}{
		{"default script", nil},
		{"202 is 200", []Reply{Accepted("5")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			b.srv.Script(testInv, tt.script...)
			resp, body := b.call(t, opRequest(OpInvoiceGet, testInv))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var inv struct {
				ID         string `json:"id"`
				Name       string `json:"name"`
				Type       string `json:"type"`
				Properties struct {
					Status, DocumentType, InvoiceType, BillingProfileID, PurchaseOrderNumber string
					InvoiceDate, DueDate, InvoicePeriodStartDate, InvoicePeriodEndDate       string
					AmountDue, BilledAmount, TotalAmount, SubTotal, TaxAmount, CreditAmount  *struct {
						Currency string   `json:"currency"`
						Value    *float64 `json:"value"`
					}
					Documents []struct {
						Kind, Name, URL, Source string
						DocumentNumbers         []string
					}
					Payments []any
				} `json:"properties"`
			}
			if err := json.Unmarshal(body, &inv); err != nil {
				t.Fatal(err)
			}
			p := inv.Properties
			if inv.ID != armPrefix+mcaAccount+"/invoices/"+testInv || inv.Name != testInv || inv.Type != "Microsoft.Billing/billingAccounts/invoices" ||
				p.Status != "Due" || p.DocumentType == "" || p.InvoiceType == "" || p.PurchaseOrderNumber == "" ||
				!strings.HasPrefix(p.BillingProfileID, armPrefix+mcaAccount+"/billingProfiles/") || p.Payments == nil {
				t.Errorf("invoice = %s", body)
			}
			for _, d := range []string{p.InvoiceDate, p.DueDate, p.InvoicePeriodStartDate, p.InvoicePeriodEndDate} {
				if !rfc3339Seconds.MatchString(d) {
					t.Errorf("date %q is not RFC 3339", d)
				}
			}
			for _, a := range []*struct {
				Currency string   `json:"currency"`
				Value    *float64 `json:"value"`
			}{p.AmountDue, p.BilledAmount, p.TotalAmount, p.SubTotal, p.TaxAmount, p.CreditAmount} {
				if a == nil || a.Currency != "USD" || a.Value == nil {
					t.Errorf("an amount is not {currency, value}: %s", body)
				}
			}
			if len(p.Documents) != 2 || p.Documents[0].Kind != "Invoice" || p.Documents[1].Kind != "Summary" {
				t.Fatalf("documents = %+v", p.Documents)
			}
			for _, d := range p.Documents {
				if d.Name == "" || d.Source != "DRS" || len(d.DocumentNumbers) == 0 {
					t.Errorf("document = %+v", d)
				}
				if resp, _ := send(t, b.srv.Client(), http.MethodGet, d.URL, "", "", nil); resp.StatusCode != http.StatusOK {
					t.Errorf("fetching %s: %d", d.URL, resp.StatusCode)
				}
			}
			if c := lastCall(t, b.srv); c.Phase != PhaseStart || c.Status != 200 || !c.Accepted || c.Operation != OpInvoiceGet {
				t.Errorf("call = %+v", c)
			}
		})
	}
}

func TestThrottles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		header   string
		value    string
		wantCode string
	}{
		{429, "Retry-After", "7", "TooManyRequests"},
		{429, "x-ms-ratelimit-microsoft.consumption-retry-after", "3", "TooManyRequests"},
		{429, "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after", "30", "TooManyRequests"},
		{429, "retry-after-ms", "1500", "TooManyRequests"},
		{429, "Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT", "TooManyRequests"},
		{503, "Retry-After", "5", "ServiceUnavailable"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.header), func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			throttle := Throttled(tt.status, tt.header, tt.value)
			b.srv.Script(testInv, throttle, Accepted("1"), throttle, OK())

			resp, body := b.call(t, opRequest(OpPricesheetDownload, testInv)) // throttled start
			wantError(t, resp, body, tt.status, tt.wantCode, "")
			if got := resp.Header.Get(tt.header); got != tt.value {
				t.Errorf("%s = %q, want %q", tt.header, got, tt.value)
			}
			resp, _ = b.call(t, opRequest(OpPricesheetDownload, testInv)) // retried start
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("retried start: %d", resp.StatusCode)
			}
			loc := resp.Header.Get("Location")
			resp, body = send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil) // throttled poll
			wantError(t, resp, body, tt.status, tt.wantCode, "")
			if resp, _ = send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("last poll: %d", resp.StatusCode)
			}

			calls := b.srv.CallsFor(testInv)
			if len(calls) != 4 {
				t.Fatalf("calls = %+v", calls)
			}
			if c := calls[0]; c.Accepted || c.OpID != "" || c.Status != tt.status || c.RetryAfter != tt.value {
				t.Errorf("throttled start = %+v, want not accepted, retryAfter %q", c, tt.value)
			}
			if c := calls[1]; !c.Accepted || c.OpID == "" {
				t.Errorf("retried start = %+v, want accepted", c)
			}
			if c := calls[2]; c.Phase != PhasePoll || c.Status != tt.status || c.RetryAfter != tt.value || c.OpID != calls[1].OpID {
				t.Errorf("throttled poll = %+v", c)
			}
		})
	}
}

func TestFailReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		reply      Reply
		onPoll     bool
		wantCode   string
		wantTarget string
	}{
		{"start 400", Fail(400, "InvalidInvoiceName", "The invoice name is not valid."), false, "InvalidInvoiceName", ""},
		{"start 403", Fail(403, "AuthorizationFailed", "The client does not have authorization."), false, "AuthorizationFailed", ""},
		{"start 500 derived code", Fail(500, "", ""), false, "InternalServerError", ""},
		{"with target", Reply{Status: 400, ErrorCode: "InvalidParameter", ErrorMessage: "bad", ErrorTarget: "documentName"}, false, "InvalidParameter", "documentName"},
		{"poll 404", Fail(404, "OperationNotFound", "Gone."), true, "OperationNotFound", ""},
		{"poll 502", Fail(502, "BadGateway", "Upstream failed."), true, "BadGateway", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			req := opRequest(OpInvoiceSummary, testInv)
			if tt.onPoll {
				b.srv.Script(testInv, Accepted("1"), tt.reply)
				resp, _ := b.call(t, req)
				req = request{method: http.MethodGet, path: strings.TrimPrefix(resp.Header.Get("Location"), b.srv.URL())}
			} else {
				b.srv.Script(testInv, tt.reply)
			}
			resp, body := b.call(t, req)
			wantError(t, resp, body, tt.reply.Status, tt.wantCode, tt.wantTarget)
			var e armError
			_ = json.Unmarshal(body, &e)
			if tt.reply.ErrorMessage != "" && e.Error.Message != tt.reply.ErrorMessage {
				t.Errorf("message = %q, want %q", e.Error.Message, tt.reply.ErrorMessage)
			}
			if c := lastCall(t, b.srv); c.Status != tt.reply.Status || c.Accepted {
				t.Errorf("call = %+v", c)
			}
		})
	}
}

func TestResetConn(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.Script(testInv, ResetConn(), OK())
	r := opRequest(OpInvoiceSummary, testInv)
	req, _ := http.NewRequestWithContext(t.Context(), r.method, b.srv.URL()+r.path, nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	if resp, err := b.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want a connection error", resp.StatusCode)
	}
	if resp, body := b.call(t, r); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the reset: %d %s", resp.StatusCode, body)
	}
	calls := b.srv.CallsFor(testInv)
	if len(calls) != 2 || calls[0].Status != 0 || calls[0].Accepted || calls[1].Status != 200 || !calls[1].Accepted {
		t.Errorf("calls = %+v, want a reset (status 0) then an accepted 200", calls)
	}
}

func TestReplyOverrides(t *testing.T) {
	t.Parallel()
	malformed := `{"url": "https://x`
	empty := ""
	tests := []struct {
		name         string
		reply        Reply
		wantStatus   int
		wantLocation string // "-": none
		wantBody     string
	}{
		{"no location", Reply{Status: 202, NoLocation: true, Header: map[string]string{"Retry-After": "1"}}, 202, "-", ""},
		{"foreign location", Reply{Status: 202, Location: "https://evil.example.com:443/steal"}, 202, "https://evil.example.com:443/steal", ""},
		{"http location with user info", Reply{Status: 202, Location: "http://user:pw@127.0.0.1/x"}, 202, "http://user:pw@127.0.0.1/x", ""},
		{"malformed result", Reply{Status: 200, Body: &malformed}, 200, "-", malformed},
		{"empty result", Reply{Status: 200, Body: &empty}, 200, "-", ""},
		{"zero status is 200", Reply{Body: &malformed}, 200, "-", malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{})
			b.srv.Script(testInv, tt.reply)
			resp, body := b.call(t, opRequest(OpDocumentsDownload, testInv))
			loc := resp.Header.Get("Location")
			if tt.wantLocation == "-" {
				tt.wantLocation = ""
			}
			if resp.StatusCode != tt.wantStatus || loc != tt.wantLocation || string(body) != tt.wantBody {
				t.Errorf("answer %d Location %q body %q, want %d %q %q", resp.StatusCode, loc, body, tt.wantStatus, tt.wantLocation, tt.wantBody)
			}
			if c := lastCall(t, b.srv); !c.Accepted || c.InvoiceName != testInv || c.Operation != OpDocumentsDownload {
				t.Errorf("call = %+v", c)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	const delay = 150 * time.Millisecond
	b := setup(t, Options{})
	b.srv.Script(testInv, OK().After(delay))
	start := time.Now()
	if resp, _ := b.call(t, opRequest(OpInvoiceGet, testInv)); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("answered after %s, want at least %s", d, delay)
	}
}

// A client that gives up during a delay frees the handler, and Close does not wait for delays.
func TestDelayAbandoned(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.Script(testInv, OK().After(time.Hour))
	r := opRequest(OpInvoiceGet, testInv)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, r.method, b.srv.URL()+r.path, nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	if resp, err := b.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got %d, want the client's timeout", resp.StatusCode)
	}

	// Another one, still waiting when the server closes.
	req, _ = http.NewRequestWithContext(t.Context(), r.method, b.srv.URL()+r.path, nil)
	req.Header.Set("Authorization", "Bearer "+b.token)
	errc := make(chan error, 1)
	go func() {
		resp, err := b.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	testwait.For(t, 5*time.Second, "the second call", func() bool { return len(b.srv.Calls()) >= 2 })
	closed := make(chan struct{})
	go func() { b.srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a delayed answer")
	}
	if err := <-errc; err == nil {
		t.Error("the delayed call got an answer, want a dropped connection")
	}
}

// Scripts are played per operation and invoice, restart when exhausted, and a new script takes
// effect at the next call.
func TestScriptPositions(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	status := func(req request) int {
		t.Helper()
		resp, body := b.call(t, req)
		if resp.StatusCode >= 400 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	poll := func(loc string) int {
		t.Helper()
		resp, _ := send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil)
		return resp.StatusCode
	}
	summary := opRequest(OpInvoiceSummary, testInv)
	b.srv.Script(testInv, Accepted("1"), OK())

	resp, _ := b.call(t, summary)
	loc := resp.Header.Get("Location")
	if got := status(opRequest(OpInvoiceGet, testInv)); got != 200 { // another operation, its own position
		t.Errorf("invoice get = %d", got)
	}
	if got := poll(loc); got != 200 {
		t.Errorf("poll = %d, want 200", got)
	}
	resp, _ = b.call(t, summary)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("second download = %d, want 202: an exhausted script restarts", resp.StatusCode)
	}
	loc = resp.Header.Get("Location")
	b.srv.Script(testInv, Fail(500, "", ""))
	if got := poll(loc); got != 500 {
		t.Errorf("poll after a new script = %d, want 500", got)
	}

	b.srv.Script(testInv) // back to the default script
	b.srv.SetDefault(OK())
	if got := status(summary); got != 200 {
		t.Errorf("with default OK: %d", got)
	}
	b.srv.SetDefault()
	if got := status(summary); got != 202 {
		t.Errorf("with the default restored: %d", got)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.Script(testInv, Fail(500, "", ""))
	b.srv.SetTokenFailure(TokenUnavailable)
	resp, _ := b.call(t, opRequest(OpInvoiceSummary, "G000000001"))
	loc := resp.Header.Get("Location")
	b.call(t, opRequest(OpInvoiceSummary, testInv))

	b.srv.Reset()
	if n, m := len(b.srv.Calls()), len(b.srv.TokenRequests()); n != 0 || m != 0 {
		t.Errorf("after Reset: %d calls, %d token requests", n, m)
	}
	if resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv)); resp.StatusCode != http.StatusAccepted {
		t.Errorf("script survived Reset: %d", resp.StatusCode)
	}
	if resp, _ := send(t, b.srv.Client(), http.MethodGet, loc, b.token, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("operation survived Reset: %d", resp.StatusCode)
	}
	if _, err := secretCredential(t, b.srv, testTenant, testClient, testSecret).GetToken(t.Context(),
		policyScopes()); err != nil {
		t.Errorf("token failure survived Reset: %v", err)
	}
}

// Many clients running whole operations at once: the log stays consistent (run with -race).
func TestConcurrentOperations(t *testing.T) {
	t.Parallel()
	const workers, perWorker = 16, 25
	b := setup(t, Options{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				inv := fmt.Sprintf("G%09d", w*perWorker+i)
				resp, _ := b.call(t, opRequest(OpInvoiceSummary, inv))
				if resp, _ = send(t, b.srv.Client(), http.MethodGet, resp.Header.Get("Location"), b.token, "", nil); resp.StatusCode != http.StatusOK {
					t.Errorf("%s: poll %d", inv, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if n := len(b.srv.Calls()); n != 2*workers*perWorker {
		t.Errorf("%d calls logged, want %d", n, 2*workers*perWorker)
	}
}

// BenchmarkLongRunning measures whole operations (POST 202, GET 200) from parallel clients.
func BenchmarkLongRunning(b *testing.B) {
	srv := Start(Options{})
	defer srv.Close()
	token := srv.IssueToken(testTenant, DefaultAudience)
	transport := srv.Client().Transport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 64
	client := &http.Client{Transport: transport}
	do := func(method, url string) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		return resp
	}
	var n sync.Mutex
	next := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n.Lock()
			next++
			inv := fmt.Sprintf("G%09d", next)
			n.Unlock()
			r := opRequest(OpInvoiceSummary, inv)
			resp := do(r.method, srv.URL()+r.path)
			if do(http.MethodGet, resp.Header.Get("Location")).StatusCode != http.StatusOK {
				b.Fatal("poll did not finish the operation")
			}
		}
	})
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "requests/s")
}
