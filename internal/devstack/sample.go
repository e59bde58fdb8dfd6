package devstack

import (
	"fmt"

	"github.com/azbilling/worker/pkg/messages"
)

// Sample parameters that pass validation; the emulator accepts any that do.
const (
	SampleSubscriptionID  = "11111111-2222-3333-4444-555555555555"
	SampleBillingAccount  = "12345678"
	SampleMCAAccount      = "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31"
	SampleCMAccount       = "aabb-ccdd:eeff-0011_2024-01-31"
	SampleBillingProfile  = "ABCD-EFGH-XYZ-PGB"
	SampleDownloadToken   = "DRS_12345"
	SampleDocumentName    = "12345678"
	invoiceNameAlphabet   = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	invoiceNameBodyDigits = 9
)

// InvoiceName returns the n-th of a family of invoice names that pass every
// kind's pattern (G followed by nine letters or digits), so that tests and
// benchmarks can script the emulator per request.
func InvoiceName(family string, n int) string {
	b := []byte("G000000000")
	for i := len(b) - 1; i > 0 && n > 0; i-- {
		b[i] = invoiceNameAlphabet[n%len(invoiceNameAlphabet)]
		n /= len(invoiceNameAlphabet)
	}
	// The family goes into the leading digits, leaving room for n.
	for i, c := range []byte(family) {
		if i >= 3 {
			break
		}
		b[1+i] = invoiceNameAlphabet[int(c)%len(invoiceNameAlphabet)]
	}
	return string(b)
}

// ScriptedKinds lists the kinds whose Sample request the emulator scripts
// by invoiceName: every kind but the listings and collections, which are
// scripted by the billing account or subscription they list.
func ScriptedKinds() []messages.Kind {
	var out []messages.Kind
	for _, k := range messages.Kinds {
		if !k.Lists() && k != messages.KindCollection && !k.Discovers() && k != messages.KindEstate {
			out = append(out, k)
		}
	}
	return out
}

// Sample returns a valid request of kind k for invoiceName.
func Sample(k messages.Kind, id, invoiceName string) messages.Request {
	r := messages.Request{Version: messages.Version, ID: id, Kind: k}
	switch k {
	case messages.KindSubscriptionInvoice:
		r.Params = messages.Params{SubscriptionID: SampleSubscriptionID, InvoiceName: invoiceName, DownloadToken: SampleDownloadToken}
	case messages.KindInvoiceSummary, messages.KindInvoice:
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, InvoiceName: invoiceName}
	case messages.KindSubscriptionDocuments:
		r.Params = messages.Params{SubscriptionID: SampleSubscriptionID, Documents: []messages.DocumentRef{
			{DocumentName: SampleDocumentName, InvoiceName: invoiceName},
		}}
	case messages.KindInvoicePriceSheet:
		r.Params = messages.Params{BillingAccountName: SampleCMAccount, BillingProfileName: SampleBillingProfile, InvoiceName: invoiceName}
	case messages.KindAccountDocument:
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, InvoiceName: invoiceName, DocumentName: "CN-" + invoiceName}
	case messages.KindAccountDocuments:
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, Documents: []messages.DocumentRef{
			{InvoiceName: invoiceName}, {DocumentName: "TR-" + invoiceName, InvoiceName: invoiceName},
		}}
	case messages.KindSubscriptionDocument:
		r.Params = messages.Params{SubscriptionID: SampleSubscriptionID, InvoiceName: invoiceName}
	case messages.KindInvoiceTransactions:
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, InvoiceName: invoiceName}
	case messages.KindProfilePriceSheet:
		// The emulator scripts a profile's price sheet by the last part of its name.
		r.Params = messages.Params{BillingAccountName: SampleCMAccount, BillingProfileName: "PROFILE-" + invoiceName}
	case messages.KindAccountInvoices:
		// A listing is scripted by its scope, not by invoiceName.
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}
	case messages.KindSubscriptionInvoices:
		r.Params = messages.Params{SubscriptionID: SampleSubscriptionID, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}
	case messages.KindCollection:
		r.Params = messages.Params{BillingAccountName: SampleBillingAccount, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}
	case messages.KindCostDetails:
		// The emulator scripts a cost details report by the invoice id asked for.
		r.Params = messages.Params{BillingAccountName: SampleMCAAccount, BillingProfileName: SampleBillingProfile,
			InvoiceName: invoiceName, Metric: messages.MetricAmortizedCost}
	case messages.KindReservationDetails:
		// The reports are scripted by the last part of the billing profile's name.
		r.Params = messages.Params{BillingAccountName: SampleMCAAccount, BillingProfileName: "PROFILE-" + invoiceName,
			PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"}
	case messages.KindBenefitUtilization:
		r.Params = messages.Params{BillingAccountName: SampleMCAAccount, BillingProfileName: "PROFILE-" + invoiceName,
			BenefitKind: messages.BenefitReservation, Grain: messages.GrainDaily, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31"}
	case messages.KindAccountPriceSheet:
		// Scripted by the account's part after "PCN.".
		r.Params = messages.Params{BillingAccountName: "PCN." + invoiceName, BillingPeriod: "202601"}
	case messages.KindBillingAccounts, messages.KindSubscriptions:
		// The discovery listings are scripted by their operation's name.
	case messages.KindBillingProfiles, messages.KindCustomers:
		// The partner of dev mode's estate (SampleEstate).
		r.Params = messages.Params{BillingAccountName: SamplePartnerAccount}
	case messages.KindEstate:
		r.Params = messages.Params{PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-03-31"}
	default:
		panic(fmt.Sprintf("devstack: no sample for kind %q", k))
	}
	return r
}
