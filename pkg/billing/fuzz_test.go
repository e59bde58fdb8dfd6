package billing

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseError: any body gives an AzureError with the status, bounded
// text, valid UTF-8 and no SAS signature value; never a panic.
func FuzzParseError(f *testing.F) {
	for _, s := range []string{
		`{"error":{"code":"AuthorizationFailed","message":"no","target":"x","details":[{"code":"a"}]}}`,
		`{"code":"BadRequest","message":"top level"}`,
		`{"error":{"code":"x","additionalInfo":[{"type":"t","info":{"a":1}}]}}`,
		`<html>Bad Gateway</html>`,
		``,
		`{"error":null}`,
		`{"error":{"message":"see https://h/f?sig=SECRET"}}`,
	} {
		f.Add(502, s)
	}
	f.Fuzz(func(t *testing.T, status int, body string) {
		ae := ParseError(status, http.Header{}, []byte(body))
		if ae.Status != status {
			t.Fatalf("status %d, want %d", ae.Status, status)
		}
		for _, s := range []string{ae.Code, ae.Message, ae.Target} {
			if len(s) > maxErrorText+len("...")+64 || !utf8.ValidString(s) {
				t.Fatalf("unbounded or invalid text: %q", s)
			}
			if strings.Contains(s, "sig=SECRET") {
				t.Fatalf("signature leaked: %q", s)
			}
		}
		if len(ae.Details) > 10 {
			t.Fatalf("%d details", len(ae.Details))
		}
	})
}

// FuzzCheckLocation: whatever Azure hands back, an accepted polling URL is
// on the endpoint's host and port, over its scheme, without user info.
func FuzzCheckLocation(f *testing.F) {
	for _, s := range []string{
		"https://management.azure.com/providers/Microsoft.Billing/billingAccounts/1/operationResults/x?api-version=2024-04-01",
		"https://management.azure.com:443/providers/x?sessiontoken=0:000000&api-version=2023-11-01",
		"http://management.azure.com/x",
		"https://user:pw@management.azure.com/x",
		"https://evil.example/x",
		"https://management.azure.com.evil.example/x",
		"https://management.azure.com:8443/x",
		"/providers/relative?x=1",
		"//evil.example/x",
		"https://MANAGEMENT.azure.com/x#frag",
		"https://[::1]/x",
		"%zz",
	} {
		f.Add(s)
	}
	ep, _ := url.Parse("https://management.azure.com")
	f.Fuzz(func(t *testing.T, loc string) {
		u, err := CheckLocation(ep, loc)
		if err != nil {
			if !strings.Contains(err.Error(), "refusing") && !strings.Contains(err.Error(), "billing:") {
				t.Fatalf("unexpected error text %q", err)
			}
			return
		}
		if u.User != nil || u.Scheme != "https" || !strings.EqualFold(u.Hostname(), "management.azure.com") || (u.Port() != "" && u.Port() != "443") {
			t.Fatalf("accepted %q as %s", loc, u)
		}
	})
}

// FuzzParseResult: any body parses to a result with an absolute http(s)
// URL, or to a *MalformedError; never a panic.
func FuzzParseResult(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://x/y?sig=a","expiryTime":"2023-02-16T17:32:28Z"}`,
		`{"downloadUrl":"https://x/y","expiryTime":"2020-12-08T05:55:59.4394737Z","validTill":"2020-12-08T05:55:59.4394737Z"}`,
		`{"id":"/x","name":"G1","properties":{"invoiceDate":"2024-01-01T00:00:00Z","totalAmount":{"currency":"USD","value":1}}}`,
		`{"url":"javascript:alert(1)"}`,
		`{"url":"https://x","expiryTime":"tomorrow"}`,
		``,
		`{"downloadUrl":"https://x/p.zip","expiryTime":"2020-12-08T05:55:59.4394737Z","downloadFileProperties":{"fileFormat":"Csv"}}`,
		`{"value":[{"id":"/x","name":"G1","properties":{"status":"PastDue","documents":[{"kind":"Statement","name":"S"}]}}],"nextLink":"https://m/n"}`,
	} {
		f.Add(uint8(0), s)
	}
	shapes := []ResultShape{ShapeDownloadURL, ShapeDocumentResult, ShapePriceSheetURL, ShapeInvoice, ShapeProfilePriceSheet, ShapeInvoiceList}
	f.Fuzz(func(t *testing.T, shape uint8, body string) {
		s := shapes[int(shape)%len(shapes)]
		r, err := ParseResult(s, []byte(body))
		if err != nil {
			if me := (*MalformedError)(nil); !errors.As(err, &me) {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		if s == ShapeInvoice {
			if r.Invoice == nil {
				t.Fatal("invoice shape without invoice")
			}
			return
		}
		if s == ShapeInvoiceList {
			for _, inv := range r.Invoices {
				if inv.ID == "" || inv.Name == "" {
					t.Fatalf("listed invoice without id or name: %+v", inv)
				}
			}
			return
		}
		u, err := url.Parse(r.URL)
		if err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
			t.Fatalf("accepted URL %q", r.URL)
		}
	})
}
