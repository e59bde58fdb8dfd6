package messages

// Kind names one of the Azure operations the worker drives.
type Kind string

// The request kinds, one per Azure operation (see README.md for the
// parameters each one takes).
const (
	// KindSubscriptionInvoice downloads a billing subscription's invoice
	// (Microsoft.Billing 2020-05-01, Invoices - Download Billing Subscription Invoice).
	KindSubscriptionInvoice Kind = "subscription-invoice"
	// KindInvoiceSummary downloads the summary of an invoice of a billing
	// account (Microsoft.Billing 2024-04-01, Invoices - Download Summary By Billing Account).
	KindInvoiceSummary Kind = "invoice-summary"
	// KindSubscriptionDocuments downloads documents of a billing subscription
	// as one zip (Microsoft.Billing 2024-04-01, Invoices - Download Documents By Billing Subscription).
	KindSubscriptionDocuments Kind = "subscription-documents"
	// KindInvoicePriceSheet downloads the price sheet of an invoice
	// (Microsoft.CostManagement 2023-11-01, Price Sheet - Download By Invoice).
	KindInvoicePriceSheet Kind = "invoice-pricesheet"
	// KindInvoice reads an invoice of a billing account; its completion event
	// carries the invoice instead of a URL (Microsoft.Billing 2024-04-01,
	// Invoices - Get By Billing Account).
	KindInvoice Kind = "invoice"
)

// Kinds lists every kind, in the order of docs/azure.md (#1 to #5).
var Kinds = []Kind{
	KindSubscriptionInvoice,
	KindInvoiceSummary,
	KindSubscriptionDocuments,
	KindInvoicePriceSheet,
	KindInvoice,
}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	_, ok := kindParams[k]
	return ok
}

// param names one field of Params.
type param string

const (
	pSubscriptionID     param = "subscriptionId"
	pBillingAccountName param = "billingAccountName"
	pBillingProfileName param = "billingProfileName"
	pInvoiceName        param = "invoiceName"
	pDownloadToken      param = "downloadToken"
	pDocuments          param = "documents"
)

// kindParams lists, per kind, the parameters it requires; every other
// parameter is refused for that kind.
var kindParams = map[Kind][]param{
	KindSubscriptionInvoice:   {pSubscriptionID, pInvoiceName, pDownloadToken},
	KindInvoiceSummary:        {pBillingAccountName, pInvoiceName},
	KindSubscriptionDocuments: {pSubscriptionID, pDocuments},
	KindInvoicePriceSheet:     {pBillingAccountName, pBillingProfileName, pInvoiceName},
	KindInvoice:               {pBillingAccountName, pInvoiceName},
}

// ReturnsURL reports whether the kind's completion event carries a download
// URL (every kind but KindInvoice, whose event carries the invoice).
func (k Kind) ReturnsURL() bool { return k != KindInvoice }
