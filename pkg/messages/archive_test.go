package messages_test

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/azbilling/worker/pkg/messages"
)

func TestObjectName(t *testing.T) {
	t.Parallel()
	docs := []messages.DocumentRef{{DocumentName: "12345678", InvoiceName: "G123456789"}}
	for _, tc := range []struct {
		name string
		req  messages.Request
		link string
		want string
	}{
		{"summary", messages.Request{Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"}},
			"https://s.example/c/G123456789_summary.pdf?sig=x", "invoice-summary/12345678/G123456789/G123456789_summary.pdf"},
		{"price sheet: the account's colon escaped", messages.Request{Kind: messages.KindInvoicePriceSheet, Params: messages.Params{
			BillingAccountName: "aaaa-bb:cccc-dd_2024-01-01", BillingProfileName: "AAAA-BBBB", InvoiceName: "G1"}},
			"https://s.example/x/G1_pricesheet.csv", "invoice-pricesheet/aaaa-bb%3Acccc-dd_2024-01-01/AAAA-BBBB/G1/G1_pricesheet.csv"},
		{"subscription invoice, link without a file: document", messages.Request{Kind: messages.KindSubscriptionInvoice, Params: messages.Params{
			SubscriptionID: "11111111-2222-3333-4444-555555555555", InvoiceName: "E1"}},
			"https://s.example/", "subscription-invoice/11111111-2222-3333-4444-555555555555/E1/document"},
		{"documents: a digest of the list; dot segments escaped", messages.Request{Kind: messages.KindSubscriptionDocuments, Params: messages.Params{
			SubscriptionID: "11111111-2222-3333-4444-555555555555", Documents: docs}},
			"https://s.example/a/..", "subscription-documents/11111111-2222-3333-4444-555555555555/documents-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := messages.ObjectName(tc.req, tc.link)
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("%q, want %q", got, tc.want)
			}
			for _, seg := range strings.Split(got, "/") {
				if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, ": ?#") {
					t.Errorf("unsafe segment %q in %q", seg, got)
				}
			}
		})
	}
	a := messages.ObjectName(messages.Request{Kind: messages.KindSubscriptionDocuments, Params: messages.Params{Documents: docs}}, "")
	b := messages.ObjectName(messages.Request{Kind: messages.KindSubscriptionDocuments, Params: messages.Params{Documents: docs}}, "")
	if a != b {
		t.Errorf("not predictable: %q %q", a, b)
	}
}

// The completed schema's archive error codes are messages.ArchiveCodes.
func TestArchiveCodesInSchema(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("schema/completed.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Defs struct {
			Archive struct {
				Properties struct {
					Error struct {
						Properties struct {
							Code struct {
								Enum []string `json:"enum"`
							} `json:"code"`
						} `json:"properties"`
					} `json:"error"`
				} `json:"properties"`
			} `json:"archive"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, c := range messages.ArchiveCodes {
		want = append(want, string(c))
	}
	if got := s.Defs.Archive.Properties.Error.Properties.Code.Enum; !slices.Equal(got, want) {
		t.Errorf("schema %v, ArchiveCodes %v", got, want)
	}
	readme, err := os.ReadFile("../../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want {
		if !strings.Contains(string(readme), "| `"+c+"` |") {
			t.Errorf("docs/contract.md has no row for archive error code %s", c)
		}
	}
}
