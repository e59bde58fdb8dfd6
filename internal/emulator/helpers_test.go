package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Values that satisfy the parameter patterns of docs/azure.md.
const (
	testTenant = "11111111-2222-3333-4444-555555555555"
	testClient = "22222222-3333-4444-5555-666666666666"
	testSecret = "s3cret"
	testSub    = "00000000-0000-0000-0000-000000000001"
	eaAccount  = "123456789"
	mcaAccount = "00000000-0000-0000-0000-000000000000:00000000-0000-0000-0000-000000000000_2019-05-31"
	cmAccount  = "7c05a543-80ff-571e-9f98-1063b3b53cf2:99ad03ad-2d1b-4889-a452-090ad407d25f_2019-05-31"
	cmProfile  = "2USN-TPCD-BG7-TGB"
	testInv    = "G123456789" // valid for all five operations
)

// guidRE matches a GUID inside a larger pattern.
const guidRE = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`

// testBundle is an emulator and a token for it obtained through azidentity.
type testBundle struct {
	srv   *Server
	token string
}

func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	srv := Start(opts)
	t.Cleanup(srv.Close)
	if opts.PlainHTTP { // azidentity insists on an https authority
		return &testBundle{srv: srv, token: srv.IssueToken(testTenant, DefaultAudience)}
	}
	return &testBundle{srv: srv, token: azToken(t, srv, testTenant, testClient, testSecret, DefaultAudience)}
}

// clientOptions points azcore at the emulator's token endpoint, without retries.
func clientOptions(srv *Server) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.URL() + "/"},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func secretCredential(t *testing.T, srv *Server, tenant, client, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenant, client, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            clientOptions(srv),
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

// policyScopes asks for a token for the default audience.
func policyScopes() policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: []string{DefaultAudience + "/.default"}}
}

// azToken gets a token for audience from the emulator with azidentity's ClientSecretCredential.
func azToken(t *testing.T, srv *Server, tenant, client, secret, audience string) string {
	t.Helper()
	tok, err := secretCredential(t, srv, tenant, client, secret).GetToken(t.Context(),
		policy.TokenRequestOptions{Scopes: []string{audience + "/.default"}})
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	return tok.Token
}

// request is an ARM call made by a test; path includes the query.
type request struct {
	method, path, body string
	header             map[string]string // "Host" sets the Host header
}

// opRequest is a valid call starting op for invoice.
func opRequest(op, invoice string) request {
	switch op {
	case OpInvoiceDownload:
		return request{method: http.MethodPost,
			path: armPrefix + "default/billingSubscriptions/" + testSub + "/invoices/" + invoice + "/download?api-version=2020-05-01&downloadToken=DRS_12345"}
	case OpInvoiceSummary:
		return request{method: http.MethodPost, path: armPrefix + eaAccount + "/invoices/" + invoice + "/downloadSummary?api-version=2024-04-01"}
	case OpDocumentsDownload:
		return request{method: http.MethodPost,
			path:   armPrefix + "default/billingSubscriptions/" + testSub + "/downloadDocuments?api-version=2024-04-01",
			body:   `[{"documentName":"12345678","invoiceName":"` + invoice + `"},{"documentName":"22345678","invoiceName":"E987654321"}]`,
			header: map[string]string{"Content-Type": "application/json"}}
	case OpPricesheetDownload:
		return request{method: http.MethodPost,
			path: armPrefix + cmAccount + "/billingProfiles/" + cmProfile + "/invoices/" + invoice + "/providers/Microsoft.CostManagement/pricesheets/default/download?api-version=2023-11-01"}
	case OpAccountDocument:
		return request{method: http.MethodPost, path: armPrefix + eaAccount + "/invoices/" + invoice + "/download?api-version=2024-04-01&documentName=CN-" + invoice}
	case OpAccountDocuments:
		return request{method: http.MethodPost,
			path:   armPrefix + eaAccount + "/downloadDocuments?api-version=2024-04-01",
			body:   `[{"invoiceName":"` + invoice + `"},{"documentName":"TR-1","invoiceName":"` + invoice + `"}]`,
			header: map[string]string{"Content-Type": "application/json"}}
	case OpSubscriptionDocument:
		return request{method: http.MethodPost,
			path: armPrefix + "default/billingSubscriptions/" + testSub + "/invoices/" + invoice + "/download?api-version=2024-04-01"}
	case OpTransactionsDownload:
		return request{method: http.MethodPost, path: armPrefix + eaAccount + "/invoices/" + invoice + "/transactionsDownload?api-version=2024-04-01"}
	case OpProfilePricesheet:
		return request{method: http.MethodPost,
			path: armPrefix + cmAccount + "/billingProfiles/PROF-" + invoice + "/providers/Microsoft.CostManagement/pricesheets/default/download?api-version=2023-11-01"}
	case OpAccountInvoiceList:
		return request{method: http.MethodGet, path: armPrefix + eaAccount + "/invoices?api-version=2024-04-01&periodStartDate=2026-01-01&periodEndDate=2026-03-31"}
	case OpSubscriptionInvoiceList:
		return request{method: http.MethodGet, path: armPrefix + "default/billingSubscriptions/" + testSub + "/invoices?api-version=2024-04-01"}
	default:
		return request{method: http.MethodGet, path: armPrefix + mcaAccount + "/invoices/" + invoice + "?api-version=2024-04-01"}
	}
}

// longRunning lists the long-running operations.
var longRunning = []string{OpInvoiceDownload, OpInvoiceSummary, OpDocumentsDownload, OpPricesheetDownload,
	OpAccountDocument, OpAccountDocuments, OpSubscriptionDocument, OpTransactionsDownload, OpProfilePricesheet}

// call sends req to the emulator with the bundle's token.
func (b *testBundle) call(t *testing.T, req request) (*http.Response, []byte) {
	t.Helper()
	return send(t, b.srv.Client(), req.method, b.srv.URL()+req.path, b.token, req.body, req.header)
}

// send makes one request and reads the whole answer.
func send(t *testing.T, c *http.Client, method, url, token, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", method, url, err)
	}
	return resp, data
}

// armError is the ErrorResponse as a client decodes it.
type armError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Target  string `json:"target"`
		Details []any  `json:"details"`
	} `json:"error"`
}

// wantError checks an ErrorResponse answer: status, JSON shape, code, target, ARM headers.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code, target string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e armError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body is not an ErrorResponse: %v: %s", err, body)
	}
	if e.Error.Code != code || e.Error.Target != target || e.Error.Message == "" || e.Error.Details == nil {
		t.Errorf("error = %+v, want code %q, target %q, a message and details []", e.Error, code, target)
	}
	wantARMHeaders(t, resp)
}

// wantARMHeaders checks the request IDs ARM puts on every answer.
func wantARMHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, h := range []string{"x-ms-request-id", "x-ms-correlation-request-id"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("answer has no %s header", h)
		}
	}
}

// lastCall is the last logged ARM call.
func lastCall(t *testing.T, srv *Server) Call {
	t.Helper()
	calls := srv.Calls()
	if len(calls) == 0 {
		t.Fatal("no calls logged")
	}
	return calls[len(calls)-1]
}
