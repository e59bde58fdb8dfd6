package billing

import (
	"net/http"
	"net/url"

	"github.com/azbilling/worker/pkg/messages"
)

// API versions the operations speak.
const (
	APIVersion20200501 = "2020-05-01"
	APIVersion20240401 = "2024-04-01"
	APIVersion20231101 = "2023-11-01"
)

const billingAccounts = "/providers/Microsoft.Billing/billingAccounts/"

// Operation describes one Azure operation.
type Operation struct {
	// Kind is the request kind it serves.
	Kind messages.Kind
	// Name is the operation id in Azure's REST reference.
	Name string
	// Method is POST for the downloads and GET for reading an invoice.
	Method string
	// APIVersion is the api-version query value.
	APIVersion string
	// LongRunning says the operation may answer 202 with a Location to poll.
	LongRunning bool
	// Result says which result shape a 200 carries.
	Result ResultShape
	// NoContent says a 204 is an answer: the operation found nothing
	// (Result.NoData).
	NoContent bool

	path  func(messages.Params) string
	query func(messages.Params, url.Values)
	body  func(messages.Params) any
}

// ResultShape names the JSON shape of a successful answer.
type ResultShape string

// Result shapes.
const (
	ShapeDownloadURL    ResultShape = "DownloadUrl"            // {url, expiryTime}, 2020-05-01
	ShapeDocumentResult ResultShape = "DocumentDownloadResult" // {url, expiryTime}, 2024-04-01
	ShapePriceSheetURL  ResultShape = "DownloadURL"            // {downloadUrl, expiryTime, validTill}, Cost Management
	ShapeInvoice        ResultShape = "Invoice"                // the invoice resource
	// ShapeProfilePriceSheet is Cost Management's result of a billing
	// profile's price sheet: {downloadUrl, expiryTime, downloadFileProperties}.
	ShapeProfilePriceSheet ResultShape = "PricesheetDownloadProperties"
	// ShapeInvoiceList is one page of a listing: {value: [Invoice], nextLink}.
	ShapeInvoiceList ResultShape = "InvoiceListResult"
)

var operations = map[messages.Kind]*Operation{
	messages.KindSubscriptionInvoice: {
		Kind: messages.KindSubscriptionInvoice, Name: "Invoices_DownloadBillingSubscriptionInvoice",
		Method: http.MethodPost, APIVersion: APIVersion20200501, LongRunning: true, Result: ShapeDownloadURL,
		path: func(p messages.Params) string {
			return billingAccounts + "default/billingSubscriptions/" + seg(p.SubscriptionID) + "/invoices/" + seg(p.InvoiceName) + "/download"
		},
		query: func(p messages.Params, q url.Values) { q.Set("downloadToken", p.DownloadToken) },
	},
	messages.KindInvoiceSummary: {
		Kind: messages.KindInvoiceSummary, Name: "Invoices_DownloadSummaryByBillingAccount",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/invoices/" + seg(p.InvoiceName) + "/downloadSummary"
		},
	},
	messages.KindSubscriptionDocuments: {
		Kind: messages.KindSubscriptionDocuments, Name: "Invoices_DownloadDocumentsByBillingSubscription",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + "default/billingSubscriptions/" + seg(p.SubscriptionID) + "/downloadDocuments"
		},
		body: func(p messages.Params) any { return p.Documents },
	},
	messages.KindInvoicePriceSheet: {
		Kind: messages.KindInvoicePriceSheet, Name: "PriceSheet_DownloadByInvoice",
		Method: http.MethodPost, APIVersion: APIVersion20231101, LongRunning: true, Result: ShapePriceSheetURL,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/billingProfiles/" + seg(p.BillingProfileName) +
				"/invoices/" + seg(p.InvoiceName) + "/providers/Microsoft.CostManagement/pricesheets/default/download"
		},
	},
	messages.KindInvoice: {
		Kind: messages.KindInvoice, Name: "Invoices_GetByBillingAccount",
		Method: http.MethodGet, APIVersion: APIVersion20240401, Result: ShapeInvoice,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/invoices/" + seg(p.InvoiceName)
		},
	},
	messages.KindAccountDocument: {
		Kind: messages.KindAccountDocument, Name: "Invoices_DownloadByBillingAccount",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/invoices/" + seg(p.InvoiceName) + "/download"
		},
		query: documentName,
	},
	messages.KindAccountDocuments: {
		Kind: messages.KindAccountDocuments, Name: "Invoices_DownloadDocumentsByBillingAccount",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/downloadDocuments"
		},
		body: func(p messages.Params) any { return p.Documents },
	},
	messages.KindSubscriptionDocument: {
		Kind: messages.KindSubscriptionDocument, Name: "Invoices_DownloadByBillingSubscription",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + "default/billingSubscriptions/" + seg(p.SubscriptionID) + "/invoices/" + seg(p.InvoiceName) + "/download"
		},
		query: documentName,
	},
	messages.KindInvoiceTransactions: {
		Kind: messages.KindInvoiceTransactions, Name: "Transactions_TransactionsDownloadByInvoice",
		Method: http.MethodPost, APIVersion: APIVersion20240401, LongRunning: true, Result: ShapeDocumentResult,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/invoices/" + seg(p.InvoiceName) + "/transactionsDownload"
		},
	},
	messages.KindProfilePriceSheet: {
		Kind: messages.KindProfilePriceSheet, Name: "PriceSheet_DownloadByBillingProfile",
		Method: http.MethodPost, APIVersion: APIVersion20231101, LongRunning: true, Result: ShapeProfilePriceSheet,
		path: func(p messages.Params) string {
			return billingAccounts + seg(p.BillingAccountName) + "/billingProfiles/" + seg(p.BillingProfileName) +
				"/providers/Microsoft.CostManagement/pricesheets/default/download"
		},
	},
	messages.KindAccountInvoices: {
		Kind: messages.KindAccountInvoices, Name: "Invoices_ListByBillingAccount",
		Method: http.MethodGet, APIVersion: APIVersion20240401, Result: ShapeInvoiceList,
		path:  func(p messages.Params) string { return billingAccounts + seg(p.BillingAccountName) + "/invoices" },
		query: period,
	},
	messages.KindSubscriptionInvoices: {
		Kind: messages.KindSubscriptionInvoices, Name: "Invoices_ListByBillingSubscription",
		Method: http.MethodGet, APIVersion: APIVersion20240401, Result: ShapeInvoiceList,
		path: func(p messages.Params) string {
			return billingAccounts + "default/billingSubscriptions/" + seg(p.SubscriptionID) + "/invoices"
		},
		query: period,
	},
}

// documentName sets the optional documentName query parameter of the
// 2024-04-01 downloads.
func documentName(p messages.Params, q url.Values) {
	if p.DocumentName != "" {
		q.Set("documentName", p.DocumentName)
	}
}

// period sets the optional period of a listing (2024-04-01 names the
// parameters without a $ prefix).
func period(p messages.Params, q url.Values) {
	if p.PeriodStartDate != "" {
		q.Set("periodStartDate", p.PeriodStartDate)
	}
	if p.PeriodEndDate != "" {
		q.Set("periodEndDate", p.PeriodEndDate)
	}
}

// OperationFor returns the descriptor of kind k, or nil for an unknown kind.
func OperationFor(k messages.Kind) *Operation { return operations[k] }

// Path returns the request path for the parameters, with each parameter
// escaped as one path segment.
func (o *Operation) Path(p messages.Params) string { return o.path(p) }

// Query returns the query string: api-version plus the operation's own.
func (o *Operation) Query(p messages.Params) url.Values {
	q := url.Values{"api-version": {o.APIVersion}}
	if o.query != nil {
		o.query(p, q)
	}
	return q
}

// Body returns the JSON body to send, or nil for none.
func (o *Operation) Body(p messages.Params) any {
	if o.body == nil {
		return nil
	}
	return o.body(p)
}

func seg(s string) string { return url.PathEscape(s) }
