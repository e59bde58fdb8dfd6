package messages_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

const guid = "11111111-2222-3333-4444-555555555555"

func validRequests() map[string]messages.Request {
	deadline := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return map[string]messages.Request{
		"subscription-invoice": {Version: 1, ID: "r1", Kind: messages.KindSubscriptionInvoice,
			Params: messages.Params{SubscriptionID: guid, InvoiceName: "E123456789", DownloadToken: "DRS_12345"}},
		"invoice-summary": {Version: 1, ID: "r2", Kind: messages.KindInvoiceSummary,
			Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"}, Labels: map[string]string{"team.name": "finops"}},
		"invoice-summary mca account": {Version: 1, ID: "r2b", Kind: messages.KindInvoiceSummary,
			Params: messages.Params{BillingAccountName: guid + ":" + guid + "_2019-05-31", InvoiceName: "H1-ABC"}},
		"subscription-documents": {Version: 1, ID: "r3", Kind: messages.KindSubscriptionDocuments,
			Params: messages.Params{SubscriptionID: guid, Documents: []messages.DocumentRef{{DocumentName: "12345678", InvoiceName: "E123456789"}, {DocumentName: "doc 2", InvoiceName: "E987654321"}}}},
		"invoice-pricesheet": {Version: 1, ID: "r4", Kind: messages.KindInvoicePriceSheet, Deadline: &deadline,
			Params: messages.Params{BillingAccountName: "aabb-ccdd:eeff-0011_2024-01-31", BillingProfileName: "ABCD-EFGH", InvoiceName: "G123"}},
		"invoice": {Version: 1, ID: "r_5-x", Kind: messages.KindInvoice, Profile: "tenant-b",
			Params: messages.Params{BillingAccountName: "pcn.abc123", InvoiceName: "EA12345678"}},
		"account-document": {Version: 1, ID: "r6", Kind: messages.KindAccountDocument,
			Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789", DocumentName: "CN-G123456789"}},
		"account-document without document": {Version: 1, ID: "r6b", Kind: messages.KindAccountDocument,
			Params: messages.Params{BillingAccountName: guid + ":" + guid + "_2019-05-31", InvoiceName: "H1-ABC"}},
		"account-documents": {Version: 1, ID: "r7", Kind: messages.KindAccountDocuments,
			Params: messages.Params{BillingAccountName: "12345678", Documents: []messages.DocumentRef{{InvoiceName: "G123456789"}, {DocumentName: "TR-1", InvoiceName: "G123456789"}}}},
		"subscription-document": {Version: 1, ID: "r8", Kind: messages.KindSubscriptionDocument,
			Params: messages.Params{SubscriptionID: guid, InvoiceName: "E123456789", DocumentName: "12345678"}},
		"invoice-transactions": {Version: 1, ID: "r9", Kind: messages.KindInvoiceTransactions,
			Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"}},
		"profile-pricesheet": {Version: 1, ID: "r10", Kind: messages.KindProfilePriceSheet,
			Params: messages.Params{BillingAccountName: "aabb-ccdd:eeff-0011_2024-01-31", BillingProfileName: "ABCD-EFGH"}},
		"account-invoices": {Version: 1, ID: "r11", Kind: messages.KindAccountInvoices,
			Params: messages.Params{BillingAccountName: "12345678", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}},
		"account-invoices without period": {Version: 1, ID: "r11b", Kind: messages.KindAccountInvoices,
			Params: messages.Params{BillingAccountName: "12345678"}},
		"cost-details subscription period": {Version: 1, ID: "c1", Kind: messages.KindCostDetails,
			Params: messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"}},
		"cost-details ea billing period": {Version: 1, ID: "c2", Kind: messages.KindCostDetails,
			Params: messages.Params{BillingAccountName: "12345678", Metric: messages.MetricAmortizedCost, BillingPeriod: "202601"}},
		"cost-details mca invoice": {Version: 1, ID: "c3", Kind: messages.KindCostDetails,
			Params: messages.Params{BillingAccountName: guid + ":" + guid + "_2019-05-31", BillingProfileName: "ABCD-EFGH-XYZ-PGB", InvoiceName: "G123456789"}},
		"cost-details invoice section": {Version: 1, ID: "c4", Kind: messages.KindCostDetails,
			Params: messages.Params{BillingAccountName: "12345:6789", BillingProfileName: "13579", InvoiceSectionName: "9876", PeriodStartDate: "2026-01-15", PeriodEndDate: "2026-02-14"}},
		"cost-details customer invoice": {Version: 1, ID: "c5", Kind: messages.KindCostDetails,
			Params: messages.Params{BillingAccountName: "12345:6789", CustomerName: "cust-1", InvoiceName: "M1234567", Metric: messages.MetricActualCost}},
		"reservation-details": {Version: 1, ID: "c6", Kind: messages.KindReservationDetails,
			Params: messages.Params{BillingAccountName: "12345678", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-30"}},
		"reservation-details profile": {Version: 1, ID: "c7", Kind: messages.KindReservationDetails,
			Params: messages.Params{BillingAccountName: guid, BillingProfileName: "CZSFR-SDFXC-DSDF", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}},
		"benefit-utilization account": {Version: 1, ID: "c8", Kind: messages.KindBenefitUtilization,
			Params: messages.Params{BillingAccountName: "8099099", BenefitKind: messages.BenefitReservation, Grain: messages.GrainDaily, PeriodStartDate: "2026-06-01", PeriodEndDate: "2026-08-31"}},
		"benefit-utilization reservation": {Version: 1, ID: "c9", Kind: messages.KindBenefitUtilization,
			Params: messages.Params{ReservationOrderID: guid, ReservationID: guid, Grain: messages.GrainMonthly, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-06-30"}},
		"benefit-utilization savings plan": {Version: 1, ID: "c10", Kind: messages.KindBenefitUtilization,
			Params: messages.Params{SavingsPlanOrderID: guid, Grain: messages.GrainDaily, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"}},
		"account-pricesheet": {Version: 1, ID: "c11", Kind: messages.KindAccountPriceSheet,
			Params: messages.Params{BillingAccountName: "12345678", BillingPeriod: "202311"}},
		"subscription-invoices": {Version: 1, ID: "r12", Kind: messages.KindSubscriptionInvoices,
			Params: messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-01"}},
		"collection of an account": {Version: 1, ID: "c1", Kind: messages.KindCollection,
			Params: messages.Params{BillingAccountName: "12345678", PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}},
		"collection of a subscription, some kinds": {Version: 1, ID: "c2", Kind: messages.KindCollection,
			Params: messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31", DocumentKinds: []string{"Invoice", "Statement"}}},
		"child of a collection": {Version: 1, ID: "c1-0011223344556677", Kind: messages.KindAccountDocument, Collection: &messages.ChildOf{ID: "c1", Index: 3},
			Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789", DocumentName: "CN-1"}},
	}
}

func invalidRequests() map[string]string {
	return map[string]string{
		"bad json":                     `{"version":1,`,
		"not an object":                `[1,2]`,
		"missing version":              `{"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`,
		"version 2":                    `{"version":2,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`,
		"bad id":                       `{"version":1,"id":"a.b","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`,
		"unknown kind":                 `{"version":1,"id":"a","kind":"bill","params":{}}`,
		"unknown field":                `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"x":1}`,
		"unknown param":                `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789","x":"y"}}`,
		"unknown doc field":            `{"version":1,"id":"a","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[{"documentName":"d","invoiceName":"i","extra":1}]}}`,
		"param of other kind":          `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789","downloadToken":"x"}}`,
		"missing param":                `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1"}}`,
		"bad invoice name":             `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"g123456789"}}`,
		"bad account":                  `{"version":1,"id":"a","kind":"invoice-summary","params":{"billingAccountName":"abc","invoiceName":"G123456789"}}`,
		"bad guid":                     `{"version":1,"id":"a","kind":"subscription-invoice","params":{"subscriptionId":"nope","invoiceName":"E1","downloadToken":"DRS_1"}}`,
		"dot segment":                  `{"version":1,"id":"a","kind":"subscription-invoice","params":{"subscriptionId":"` + guid + `","invoiceName":"..","downloadToken":"DRS_1"}}`,
		"token with slash":             `{"version":1,"id":"a","kind":"subscription-invoice","params":{"subscriptionId":"` + guid + `","invoiceName":"E1","downloadToken":"a/b"}}`,
		"no documents":                 `{"version":1,"id":"a","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[]}}`,
		"empty document":               `{"version":1,"id":"a","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[{"documentName":"","invoiceName":"x"}]}}`,
		"control char":                 `{"version":1,"id":"a","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[{"documentName":"a\u0007","invoiceName":"x"}]}}`,
		"unanchored cm":                `{"version":1,"id":"a","kind":"invoice-pricesheet","params":{"billingAccountName":"x/aabb-ccdd:eeff-0011_2024-01-31","billingProfileName":"AB-CD","invoiceName":"G1"}}`,
		"bad deadline":                 `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"deadline":"soon"}`,
		"bad label key":                `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"labels":{"a b":"c"}}`,
		"label not string":             `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"labels":{"a":1}}`,
		"bad profile":                  `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"profile":"Tenant_B"}`,
		"document of other kind":       `{"version":1,"id":"a","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789","documentName":"x"}}`,
		"doc download bad invoice":     `{"version":1,"id":"a","kind":"account-document","params":{"billingAccountName":"1","invoiceName":"x"}}`,
		"doc name control char":        `{"version":1,"id":"a","kind":"subscription-document","params":{"subscriptionId":"` + guid + `","invoiceName":"G123456789","documentName":"a\u0001"}}`,
		"account docs no invoice":      `{"version":1,"id":"a","kind":"account-documents","params":{"billingAccountName":"1","documents":[{"documentName":"d"}]}}`,
		"account docs bad account":     `{"version":1,"id":"a","kind":"account-documents","params":{"billingAccountName":"x","documents":[{"invoiceName":"G123456789"}]}}`,
		"cost-details no scope":        `{"version":1,"id":"a","kind":"cost-details","params":{"billingPeriod":"202601"}}`,
		"cost-details two scopes":      `{"version":1,"id":"a","kind":"cost-details","params":{"subscriptionId":"` + guid + `","billingAccountName":"1","billingPeriod":"202601"}}`,
		"cost-details no period":       `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1"}}`,
		"cost-details two periods":     `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","billingPeriod":"202601","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"cost-details half a period":   `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","periodStartDate":"2026-01-01"}}`,
		"cost-details bad metric":      `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","billingPeriod":"202601","metric":"Usage"}}`,
		"cost-details month 13":        `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","billingPeriod":"202613"}}`,
		"cost-details invoice at ea":   `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`,
		"cost-details section alone":   `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","invoiceSectionName":"s","billingPeriod":"202601"}}`,
		"cost-details customer+prof":   `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","billingProfileName":"p","customerName":"c","billingPeriod":"202601"}}`,
		"cost-details slash in scope":  `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1/2","billingPeriod":"202601"}}`,
		"cost-details foreign param":   `{"version":1,"id":"a","kind":"cost-details","params":{"billingAccountName":"1","billingPeriod":"202601","grain":"Daily"}}`,
		"reservation no dates":         `{"version":1,"id":"a","kind":"reservation-details","params":{"billingAccountName":"1"}}`,
		"reservation bad date":         `{"version":1,"id":"a","kind":"reservation-details","params":{"billingAccountName":"1","periodStartDate":"2026-1-1","periodEndDate":"2026-01-31"}}`,
		"benefit no kind at billing":   `{"version":1,"id":"a","kind":"benefit-utilization","params":{"billingAccountName":"1","grain":"Daily","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"benefit kind at order":        `{"version":1,"id":"a","kind":"benefit-utilization","params":{"reservationOrderId":"o","benefitKind":"Reservation","grain":"Daily","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"benefit two scopes":           `{"version":1,"id":"a","kind":"benefit-utilization","params":{"reservationOrderId":"o","savingsPlanOrderId":"s","grain":"Daily","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"benefit bad grain":            `{"version":1,"id":"a","kind":"benefit-utilization","params":{"savingsPlanOrderId":"s","grain":"Weekly","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"benefit plan without order":   `{"version":1,"id":"a","kind":"benefit-utilization","params":{"reservationOrderId":"o","savingsPlanId":"s","grain":"Daily","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31"}}`,
		"account-pricesheet no period": `{"version":1,"id":"a","kind":"account-pricesheet","params":{"billingAccountName":"1"}}`,
		"transactions no invoice":      `{"version":1,"id":"a","kind":"invoice-transactions","params":{"billingAccountName":"1"}}`,
		"profile sheet with invoice":   `{"version":1,"id":"a","kind":"profile-pricesheet","params":{"billingAccountName":"aabb-ccdd:eeff-0011_2024-01-31","billingProfileName":"AB-CD","invoiceName":"G1"}}`,
		"profile sheet bad profile":    `{"version":1,"id":"a","kind":"profile-pricesheet","params":{"billingAccountName":"aabb-ccdd:eeff-0011_2024-01-31","billingProfileName":"ABCD"}}`,
		"list bad date":                `{"version":1,"id":"a","kind":"account-invoices","params":{"billingAccountName":"1","periodStartDate":"2026-1-1"}}`,
		"list period on download":      `{"version":1,"id":"a","kind":"account-document","params":{"billingAccountName":"1","invoiceName":"G123456789","periodStartDate":"2026-01-01"}}`,
		"list bad guid":                `{"version":1,"id":"a","kind":"subscription-invoices","params":{"subscriptionId":"x"}}`,
		"id not string":                `{"version":1,"id":7,"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"}}`,
	}
}

func TestValidRequests(t *testing.T) {
	t.Parallel()
	for name, r := range validRequests() {
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeRequestNamesFieldAndRule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		doc, field, rule string
		wantID           string
	}{
		{`{"version":1,`, "", "syntax", ""},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"colour":1}`, "colour", "unknown_field", "abc"},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1"}}`, "params.invoiceName", "required", "abc"},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"x","invoiceName":"G123456789"}}`, "params.billingAccountName", "pattern", "abc"},
		{`{"version":1,"id":"abc","kind":"nope","params":{}}`, "kind", "enum", "abc"},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789","downloadToken":"x"}}`, "params.downloadToken", "not_allowed", "abc"},
		{`{"version":1,"id":7,"kind":"invoice","params":{}}`, "id", "type", ""},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"deadline":"x"}`, "deadline", "format", "abc"},
		{`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"labels":{"k":"` + strings.Repeat("v", 300) + `"}}`, "labels.k", "max_length", "abc"},
		{`{"version":1,"id":"abc","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[]}}`, "params.documents", "min_items", "abc"},
		{`{"version":1,"id":"abc","kind":"account-documents","params":{"billingAccountName":"12345678","documents":[]}}`, "params.documents", "min_items", "abc"},
		{`{"version":1,"id":"abc","kind":"collection","params":{"billingAccountName":"12345678","periodStartDate":"2026-01-01","periodEndDate":"2026-01-31","documentKinds":[]}}`, "params.documentKinds", "min_items", "abc"},
		{`{"version":1,"id":"abc","kind":"account-documents","params":{"billingAccountName":"12345678"}}`, "params.documents", "required", "abc"},
	}
	for _, c := range cases {
		r, err := messages.DecodeRequest([]byte(c.doc), 0)
		var ve *messages.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, messages.ErrInvalid) {
			t.Errorf("%s: error %v is not a *ValidationError", c.doc, err)
			continue
		}
		found := false
		for _, f := range ve.Fields {
			if f.Field == c.field && f.Rule == c.rule && f.Message != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: fields %+v lack %q/%s", c.doc, ve.Fields, c.field, c.rule)
		}
		if r.ID != c.wantID {
			t.Errorf("%s: salvaged id %q, want %q", c.doc, r.ID, c.wantID)
		}
	}
}

// Unknown fields are named by their full JSON path, every one of them.
func TestDecodeRequestNamesUnknownFieldsByPath(t *testing.T) {
	t.Parallel()
	const docs = `{"version":1,"id":"abc","kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","documents":[`
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf(`"x%d":1`, i)
	}
	manyWant := []string{}
	for i := range 32 {
		manyWant = append(manyWant, fmt.Sprintf("params.x%d", i))
	}
	manyWant = append(manyWant, "")
	cases := map[string]struct {
		doc  string
		want []string
	}{
		"top level": {
			`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"colour":1}`,
			[]string{"colour"}},
		"params": {
			`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceId":"G123456789"}}`,
			[]string{"params.invoiceId"}},
		"params in another case": {
			`{"version":1,"id":"abc","kind":"invoice","Params":{"BillingAccountName":"1","invoiceName":"G123456789","Extra":true}}`,
			[]string{"params.Extra"}},
		"first document": {
			docs + `{"documentName":"d","invoiceName":"i","extra":1}]}}`,
			[]string{"params.documents[0].extra"}},
		"third document": {
			docs + `{"documentName":"d","invoiceName":"i"},{"documentName":"d","invoiceName":"i"},{"documentName":"d","invoiceName":"i","x":null}]}}`,
			[]string{"params.documents[2].x"}},
		"several at once": {
			`{"version":1,"id":"abc","a":1,"kind":"subscription-documents","params":{"subscriptionId":"` + guid + `","b":{"c":1},"documents":[{"documentName":"d","d":1,"invoiceName":"i"},"not an object",{"documentName":"d","invoiceName":"i","e":[],"f":""}]},"g":null}`,
			[]string{"a", "params.b", "params.documents[0].d", "params.documents[2].e", "params.documents[2].f", "g"}},
		"params given twice": {
			`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","x":1},"params":{"invoiceName":"G123456789"}}`,
			[]string{"params.x"}},
		"too many to list": {
			`{"version":1,"id":"abc","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789",` + strings.Join(many, ",") + `}}`,
			manyWant},
	}
	for name, c := range cases {
		r, err := messages.DecodeRequest([]byte(c.doc), 0)
		var ve *messages.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: error %v is not a *ValidationError", name, err)
			continue
		}
		var got []string
		for _, f := range ve.Fields {
			if f.Rule != "unknown_field" || f.Message == "" {
				t.Errorf("%s: unexpected %+v", name, f)
			}
			got = append(got, f.Field)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: unknown fields %q, want %q", name, got, c.want)
		}
		if r.ID != "abc" {
			t.Errorf("%s: salvaged id %q", name, r.ID)
		}
	}
}

func TestDecodeRequestSizeLimit(t *testing.T) {
	t.Parallel()
	doc := `{"version":1,"id":"big","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G123456789"},"labels":{"pad":"` + strings.Repeat("x", 2000) + `"}}`
	r, err := messages.DecodeRequest([]byte(doc), 1024)
	var ve *messages.ValidationError
	if !errors.As(err, &ve) || ve.Fields[0].Rule != "max_size" || r.ID != "big" || r.Kind != messages.KindInvoice {
		t.Fatalf("got %+v, %v", r, err)
	}
}

func TestErrorQuotesAreClipped(t *testing.T) {
	t.Parallel()
	r := validRequests()["invoice"]
	r.Params.InvoiceName = strings.Repeat("é", 200)
	err := r.Validate()
	if err == nil || len(err.Error()) > 1000 {
		t.Fatalf("error %d bytes: %v", len(err.Error()), err)
	}
}

// Rules is every rule the package names, and the failed event's schema
// and docs/contract.md's table of rules list exactly Rules.
func TestRulesListed(t *testing.T) {
	t.Parallel()
	src, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`(?:Rule: |v\.add\([^,]+, )"([a-z_]+)"`)
	for _, f := range src {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range used.FindAllStringSubmatch(string(data), -1) {
			if !slices.Contains(messages.Rules, m[1]) {
				t.Errorf("%s names rule %s, which messages.Rules lacks", f, m[1])
			}
		}
	}
	var schema struct {
		Defs map[string]struct {
			Properties map[string]struct {
				Enum []string `json:"enum"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	data, err := os.ReadFile("schema/failed.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var enum []string
	for _, d := range schema.Defs {
		if e := d.Properties["rule"].Enum; e != nil {
			enum = e
		}
	}
	if !slices.Equal(enum, messages.Rules) {
		t.Errorf("failed.schema.json's rules %v, messages.Rules %v", enum, messages.Rules)
	}
	doc, err := os.ReadFile("../../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "<!-- rules -->")
	table, _, _ = strings.Cut(table, "<!-- /rules -->")
	var listed []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		listed = append(listed, m[1])
	}
	if !slices.Equal(listed, messages.Rules) {
		t.Errorf("docs/contract.md's rules table lists %v, messages.Rules %v", listed, messages.Rules)
	}
}

// The rules of the cost data kinds that the request schema cannot say,
// with the field and rule each failure names.
func TestCostKindRules(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		params      messages.Params
		field, rule string
	}{
		"a month exactly is too long": {messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-15", PeriodEndDate: "2026-02-15"}, "params.periodEndDate", "format"},
		"end before start":            {messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-15", PeriodEndDate: "2026-01-14"}, "params.periodEndDate", "format"},
		"no period":                   {messages.Params{SubscriptionID: guid}, "params.periodStartDate", "required"},
		"invoice and billing period":  {messages.Params{BillingAccountName: "1", BillingProfileName: "p", InvoiceName: "G1", BillingPeriod: "202601"}, "params.billingPeriod", "not_allowed"},
		"profile without account":     {messages.Params{BillingProfileName: "p", BillingPeriod: "202601"}, "params.subscriptionId", "required"},
	} {
		r := messages.Request{Version: 1, ID: "a", Kind: messages.KindCostDetails, Params: tc.params}
		var ve *messages.ValidationError
		if err := r.Validate(); !errors.As(err, &ve) {
			t.Errorf("%s: want a validation error, got %v", name, err)
			continue
		}
		found := false
		for _, f := range ve.Fields {
			found = found || f.Field == tc.field && f.Rule == tc.rule
		}
		if !found {
			t.Errorf("%s: want %s %s, got %v", name, tc.field, tc.rule, ve.Fields)
		}
	}
	// The last day of a 31-day month is within a month of its first.
	ok := messages.Request{Version: 1, ID: "a", Kind: messages.KindCostDetails,
		Params: messages.Params{SubscriptionID: guid, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("a calendar month: %v", err)
	}
}
