package messages

import (
	"encoding/json"
	"time"
)

// Completed is published when a request's operation succeeded.
type Completed struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Kind    Kind   `json:"kind"`
	// URL is the download URL Azure handed out (a SAS URL: a credential for
	// the file until it expires). Empty for KindInvoice.
	URL string `json:"url,omitempty"`
	// ExpiryTime is when URL stops working, as Azure said it.
	ExpiryTime *time.Time `json:"expiryTime,omitempty"`
	// ValidTill is the price sheet's own validity, for KindInvoicePriceSheet.
	ValidTill *time.Time `json:"validTill,omitempty"`
	// DownloadFileProperties is what Cost Management says of the files of a
	// KindProfilePriceSheet download, passed on as Azure sent it.
	DownloadFileProperties json.RawMessage `json:"downloadFileProperties,omitempty"`
	// Files are every file of a cost data report (KindCostDetails: the
	// blobs of its manifest, in Azure's order; the reports: their one
	// link), each with the size Azure announced and its expiry. When there
	// is exactly one, URL and ExpiryTime are its own too.
	Files []ReportFile `json:"files,omitempty"`
	// Manifest is what a cost details report's manifest says of its files.
	Manifest *ReportManifest `json:"manifest,omitempty"`
	// SecondaryURL is a benefit utilization report's second link to the
	// same report (Azure's secondaryReportUrl).
	SecondaryURL string `json:"secondaryUrl,omitempty"`
	// NoData is true when Azure found no data for a cost details report
	// (its status NoDataFound, or a 204): there are no files.
	NoData bool `json:"noData,omitempty"`
	// Invoice is the invoice read by a KindInvoice request.
	Invoice *Invoice `json:"invoice,omitempty"`
	// Invoices are the invoices a listing (KindAccountInvoices,
	// KindSubscriptionInvoices) found, every page, in Azure's order.
	Invoices []Invoice `json:"invoices,omitempty"`
	// Collected is a KindCollection's outcome: counts, and every child.
	Collected *CollectionSummary `json:"collected,omitempty"`
	// Items are what a discovery kind (KindBillingAccounts,
	// KindBillingProfiles, KindCustomers, KindSubscriptions) found, every
	// page, in Azure's order.
	Items []Discovered `json:"items,omitempty"`
	// Estate is a KindEstate's outcome: per scope, its collection and
	// counts.
	Estate *EstateSummary `json:"estate,omitempty"`
	// Collection names the collection of a request the worker made for one.
	Collection *ChildOf `json:"collection,omitempty"`
	// Archive is the worker's copy of the document at URL, or why there is
	// none; absent when the request was not to be archived.
	Archive *Archive `json:"archive,omitempty"`
	// AcceptedAt is when the worker first took the request.
	AcceptedAt time.Time `json:"acceptedAt"`
	// CompletedAt is when the final answer arrived.
	CompletedAt time.Time `json:"completedAt"`
	// AzureCalls counts every HTTP call made to Azure for the request.
	AzureCalls int `json:"azureCalls"`
	// Labels are the request's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// ReportFile is one file of a cost data report.
type ReportFile struct {
	// URL is the file's link (a SAS URL, a credential until it expires).
	URL string `json:"url"`
	// ByteCount is the file's size as Azure announced it; 0 when it did
	// not say.
	ByteCount int64 `json:"byteCount,omitempty"`
	// ExpiryTime is when URL stops working, as Azure said it.
	ExpiryTime *time.Time `json:"expiryTime,omitempty"`
	// Archive is where the worker stored the file, when the report was
	// archived whole (the event's archive is then the manifest's).
	Archive *Archive `json:"archive,omitempty"`
}

// ReportManifest is the description of a cost details report's files,
// as its manifest gives it.
type ReportManifest struct {
	ManifestVersion string `json:"manifestVersion,omitempty"`
	// DataFormat is the files' format (Csv).
	DataFormat string `json:"dataFormat,omitempty"`
	// BlobCount and ByteCount are the number of files and their total size.
	BlobCount int   `json:"blobCount"`
	ByteCount int64 `json:"byteCount"`
	// CompressData says the files are compressed (gzip).
	CompressData bool `json:"compressData"`
}

// Failed is published when a request cannot be completed.
type Failed struct {
	Version int    `json:"version"`
	ID      string `json:"id,omitempty"`
	Kind    Kind   `json:"kind,omitempty"`
	// Code is one of the Code constants.
	Code Code `json:"code"`
	// Message explains the failure for a human.
	Message string `json:"message"`
	// Fields lists the problems of an invalid request.
	Fields []FieldError `json:"fields,omitempty"`
	// Azure is the error Azure answered with, when it did.
	Azure *AzureError `json:"azure,omitempty"`
	// Retryable says whether submitting the request again (with a new id)
	// could succeed.
	Retryable bool `json:"retryable"`
	// Collection names the collection of a request the worker made for one.
	Collection *ChildOf          `json:"collection,omitempty"`
	AcceptedAt *time.Time        `json:"acceptedAt,omitempty"`
	FailedAt   time.Time         `json:"failedAt"`
	AzureCalls int               `json:"azureCalls"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// AzureError is Azure's ErrorResponse, with the HTTP status it came with.
type AzureError struct {
	Status         int               `json:"status"`
	Code           string            `json:"code,omitempty"`
	Message        string            `json:"message,omitempty"`
	Target         string            `json:"target,omitempty"`
	Details        []AzureErrorEntry `json:"details,omitempty"`
	RequestID      string            `json:"requestId,omitempty"`
	CorrelationID  string            `json:"correlationId,omitempty"`
	AdditionalInfo []AdditionalInfo  `json:"additionalInfo,omitempty"`
}

// AzureErrorEntry is one entry of an ErrorResponse's details.
type AzureErrorEntry struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Target  string `json:"target,omitempty"`
}

// AdditionalInfo is one entry of an ErrorResponse's additionalInfo.
type AdditionalInfo struct {
	Type string `json:"type,omitempty"`
	Info any    `json:"info,omitempty"`
}

// Code is a stable failure code; docs/contract.md lists them.
type Code string

// The failure codes.
const (
	// CodeInvalidRequest: the request breaks the contract; Fields says how.
	CodeInvalidRequest Code = "invalid_request"
	// CodeUnknownProfile: the request names a credential profile the worker
	// does not have.
	CodeUnknownProfile Code = "unknown_profile"
	// CodeAzureError: Azure refused the operation (a 4xx other than 401,
	// 403, 408 and 429); Azure holds its answer.
	CodeAzureError Code = "azure_error"
	// CodeAccessDenied: Azure answered 401 or 403.
	CodeAccessDenied Code = "access_denied"
	// CodeAuthFailed: the identity provider refused the credential.
	CodeAuthFailed Code = "auth_failed"
	// CodeAuthUnavailable: no token could be had before the deadline.
	CodeAuthUnavailable Code = "auth_unavailable"
	// CodeTimeout: the deadline passed before the operation finished.
	CodeTimeout Code = "timeout"
	// CodeBadResponse: Azure's answers could not be used (a 202 without
	// Location, or repeated malformed results).
	CodeBadResponse Code = "bad_response"
	// CodeLocationRejected: Azure handed back a polling URL that the bearer
	// token must not be sent to (another host, plain http, user info).
	CodeLocationRejected Code = "location_rejected"
	// CodeIDConflict: the request id is already taken by a request with
	// other content (kind, profile or parameters); nothing was done.
	CodeIDConflict Code = "id_conflict"
	// CodeInterrupted: the first call (the one that starts the operation)
	// went unanswered max-unanswered-calls times (timeouts, broken
	// connections, workers stopping mid-call); it is not sent again.
	CodeInterrupted Code = "interrupted"
	// CodeTooMany: a listing found more invoices than MaxListedInvoices,
	// or a collection more documents than the worker's max-documents
	// setting; nothing was downloaded. Narrow the period.
	CodeTooMany Code = "too_many"
	// CodeInternal: the worker failed to handle the request repeatedly.
	CodeInternal Code = "internal_error"
)

// Codes lists every failure code.
var Codes = []Code{
	CodeInvalidRequest, CodeUnknownProfile, CodeAzureError, CodeAccessDenied,
	CodeAuthFailed, CodeAuthUnavailable, CodeTimeout, CodeBadResponse,
	CodeLocationRejected, CodeIDConflict, CodeInterrupted, CodeTooMany, CodeInternal,
}

// Invoice is the part of an Azure invoice resource a KindInvoice request
// returns.
type Invoice struct {
	ID                  string            `json:"id"`
	Name                string            `json:"name"`
	Status              string            `json:"status,omitempty"`
	InvoiceType         string            `json:"invoiceType,omitempty"`
	DocumentType        string            `json:"documentType,omitempty"`
	InvoiceDate         *time.Time        `json:"invoiceDate,omitempty"`
	DueDate             *time.Time        `json:"dueDate,omitempty"`
	PeriodStartDate     *time.Time        `json:"invoicePeriodStartDate,omitempty"`
	PeriodEndDate       *time.Time        `json:"invoicePeriodEndDate,omitempty"`
	BillingProfileID    string            `json:"billingProfileId,omitempty"`
	PurchaseOrderNumber string            `json:"purchaseOrderNumber,omitempty"`
	SubscriptionID      string            `json:"subscriptionId,omitempty"`
	Amounts             map[string]Amount `json:"amounts,omitempty"`
	Documents           []InvoiceDocument `json:"documents,omitempty"`
}

// Amount is a sum of money.
type Amount struct {
	Currency string  `json:"currency,omitempty"`
	Value    float64 `json:"value"`
}

// InvoiceDocument is one document of an invoice; Name is the documentName
// that KindSubscriptionDocuments, KindAccountDocument and the other
// document downloads accept. Kind and Source are open enums: Azure may send
// values its specification does not list.
type InvoiceDocument struct {
	Kind            string   `json:"kind,omitempty"`
	Name            string   `json:"name,omitempty"`
	URL             string   `json:"url,omitempty"`
	ExternalURL     string   `json:"externalUrl,omitempty"`
	Source          string   `json:"source,omitempty"`
	DocumentNumbers []string `json:"documentNumbers,omitempty"`
}
