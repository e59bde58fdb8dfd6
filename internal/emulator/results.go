package emulator

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// blobPrefix is where the download URLs of results point: a stand-in for a storage account.
const blobPrefix = "/_emulator/blobs/"

// blobKey is a download URL handed out: the blob's path and the URL's signature.
type blobKey struct{ path, sig string }

// downloadURL is the result of #1 (DownloadUrl) and of #2 and #3 (DocumentDownloadResult).
type downloadURL struct {
	URL        string `json:"url"`
	ExpiryTime string `json:"expiryTime"`
}

// priceSheetURL is the result of #4 (Cost Management's DownloadURL).
type priceSheetURL struct {
	DownloadURL string `json:"downloadUrl"`
	ExpiryTime  string `json:"expiryTime"`
	ValidTill   string `json:"validTill"`
}

// profilePriceSheet is the result of Price Sheet - Download By Billing Profile: no validTill,
// and a description of the files in the zip.
type profilePriceSheet struct {
	DownloadURL            string         `json:"downloadUrl"`
	ExpiryTime             string         `json:"expiryTime"`
	DownloadFileProperties fileProperties `json:"downloadFileProperties"`
}

// fileProperties describes the files of a price sheet download. Its inner shape is not pinned
// down by the specification; the worker passes it on as it is.
type fileProperties struct {
	FileFormat    string `json:"fileFormat"`
	NumberOfFiles int    `json:"numberOfFiles"`
	SizeInBytes   int    `json:"sizeInBytes"`
}

// documentURL is DocumentDownloadResult with expiryTime optional, as the specification has it.
type documentURL struct {
	URL        string `json:"url"`
	ExpiryTime string `json:"expiryTime,omitempty"`
}

// costManagementTime is how Cost Management writes times: seven fractional digits
// ("2020-12-08T05:55:59.4394737Z"). Format it with UTC times only.
const costManagementTime = "2006-01-02T15:04:05.0000000Z"

// result is the body of a 200 for op: a download URL valid for an hour, or the invoice.
func (s *Server) result(op *operation, r *http.Request) any {
	now := s.now().UTC()
	expiry := now.Add(time.Hour)
	base := s.base(r)
	s.noteBlobs(op)
	sas := func(file string) string { return s.sasURL(base, op.id, file, now, expiry) }
	switch op.op {
	case OpCostDetails, OpReservationDetails, OpBenefitUtilization, OpAccountPricesheet:
		return s.costResult(op, sas, expiry)
	case OpInvoiceDownload:
		return downloadURL{URL: sas(op.invoiceName + ".pdf"), ExpiryTime: expiry.Format(time.RFC3339)}
	case OpInvoiceSummary:
		return downloadURL{URL: sas(op.invoiceName + "_summary.pdf"), ExpiryTime: expiry.Format(time.RFC3339)}
	case OpDocumentsDownload:
		// The invoice names of #3 come from the body unchecked: keep them out of the path.
		return downloadURL{URL: sas("documents.zip"), ExpiryTime: expiry.Format(time.RFC3339)}
	case OpPricesheetDownload:
		t := expiry.Format(costManagementTime)
		return priceSheetURL{DownloadURL: sas(op.invoiceName + "_pricesheet.csv"), ExpiryTime: t, ValidTill: t}
	case OpAccountDocument, OpSubscriptionDocument:
		name := op.invoiceName + ".pdf"
		if op.documentName != "" {
			name = op.invoiceName + "_" + safeFileName(op.documentName) + ".pdf"
		}
		return downloadURL{URL: sas(name), ExpiryTime: expiry.Format(time.RFC3339)}
	case OpAccountDocuments:
		return downloadURL{URL: sas("documents.zip"), ExpiryTime: expiry.Format(time.RFC3339)}
	case OpTransactionsDownload:
		// The specification's own example of these downloads gives no expiryTime.
		return documentURL{URL: sas(op.invoiceName + "_transactions.csv")}
	case OpProfilePricesheet:
		return profilePriceSheet{
			DownloadURL: sas(safeFileName(op.billingProfile) + "_pricesheet.zip"), ExpiryTime: expiry.Format(costManagementTime),
			DownloadFileProperties: fileProperties{FileFormat: "Csv", NumberOfFiles: 1, SizeInBytes: len(priceSheetCSV)},
		}
	default:
		return newInvoice(op, now, sas)
	}
}

// sasURL registers a blob and returns a storage-style SAS URL for it, with a fresh signature.
func (s *Server) sasURL(base, id, file string, start, expiry time.Time) string {
	sig := randomString(32, base64.StdEncoding)
	p := blobPrefix + id + "/" + file
	s.mu.Lock()
	s.st.blobs[blobKey{p, sig}] = expiry
	s.mu.Unlock()
	return base + p + "?sv=2023-11-03" +
		"&st=" + url.QueryEscape(start.Format(time.RFC3339)) +
		"&se=" + url.QueryEscape(expiry.Format(time.RFC3339)) +
		"&sr=b&sp=r&sig=" + url.QueryEscape(sig)
}

// serveBlob serves a file behind a download URL, while its signature is known and unexpired.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	expiry, ok := s.st.blobs[blobKey{r.URL.Path, r.URL.Query().Get("sig")}]
	s.mu.Unlock()
	now := s.now()
	switch {
	case !ok:
		storageError(w, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of the signature is formed correctly.")
	case !now.Before(expiry):
		storageError(w, "AuthenticationFailed", fmt.Sprintf("Signature not valid in the specified time frame: Expiry [%s] - Current [%s]",
			expiry.UTC().Format(http.TimeFormat), now.UTC().Format(http.TimeFormat)))
	default:
		s.serveDocument(w, r)
	}
}

// storageError answers 403 in Azure Storage's XML error shape.
func storageError(w http.ResponseWriter, code, message string) {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, message)
	writeRaw(w, http.StatusForbidden, "application/xml", []byte(body))
}

const priceSheetCSV = "MeterId,MeterName,UnitOfMeasure,UnitPrice,Currency\n" +
	"00000000-0000-0000-0000-000000000001,Emulated meter,1 Hour,0.10,USD\n"

// safeFileName keeps letters, digits, '-' and '_' of a caller's name, for a blob's file name.
func safeFileName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// blobContent makes a small file of the type file's extension says.
func blobContent(file string) (contentType string, body []byte) {
	pdf := []byte("%PDF-1.4\n% " + file + ", made up by the Azure Billing emulator\n%%EOF\n")
	switch path.Ext(file) {
	case ".zip":
		if strings.HasSuffix(file, "_pricesheet.zip") {
			return "application/zip", zipOf("pricesheet_1.csv", []byte(priceSheetCSV))
		}
		return "application/zip", zipOf("invoice.pdf", pdf)
	case ".csv":
		return "text/csv", []byte(priceSheetCSV)
	default:
		return "application/pdf", pdf
	}
}

// zipOf returns a zip archive holding one file.
func zipOf(name string, content []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	f, err := zw.Create(name)
	if err == nil {
		_, err = f.Write(content)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		panic("emulator: zip in memory: " + err.Error()) // writing to a bytes.Buffer does not fail
	}
	return buf.Bytes()
}

// Invoice resource shapes (Microsoft.Billing 2024-04-01), with the fields a client reads.
type invoice struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Properties invoiceProperties `json:"properties"`
}

type invoiceProperties struct {
	AmountDue                 amount            `json:"amountDue"`
	AzurePrepaymentApplied    amount            `json:"azurePrepaymentApplied"`
	BilledAmount              amount            `json:"billedAmount"`
	BillingProfileDisplayName string            `json:"billingProfileDisplayName"`
	BillingProfileID          string            `json:"billingProfileId"`
	CreditAmount              amount            `json:"creditAmount"`
	Documents                 []invoiceDocument `json:"documents"`
	DocumentType              string            `json:"documentType"`
	DueDate                   string            `json:"dueDate"`
	FreeAzureCreditApplied    amount            `json:"freeAzureCreditApplied"`
	InvoiceDate               string            `json:"invoiceDate"`
	InvoicePeriodEndDate      string            `json:"invoicePeriodEndDate"`
	InvoicePeriodStartDate    string            `json:"invoicePeriodStartDate"`
	InvoiceType               string            `json:"invoiceType"`
	IsMonthlyInvoice          bool              `json:"isMonthlyInvoice"`
	Payments                  []struct{}        `json:"payments"` // none: the invoice is due
	PurchaseOrderNumber       string            `json:"purchaseOrderNumber"`
	Status                    string            `json:"status"`
	SubscriptionID            string            `json:"subscriptionId,omitempty"`
	SubTotal                  amount            `json:"subTotal"`
	TaxAmount                 amount            `json:"taxAmount"`
	TotalAmount               amount            `json:"totalAmount"`
}

type amount struct {
	Currency string  `json:"currency"`
	Value    float64 `json:"value"`
}

type invoiceDocument struct {
	Kind            string   `json:"kind"`
	Name            string   `json:"name,omitempty"` // absent in some of Azure's listings
	URL             string   `json:"url,omitempty"`
	ExternalURL     string   `json:"externalUrl,omitempty"`
	Source          string   `json:"source"`
	DocumentNumbers []string `json:"documentNumbers"`
}

// newInvoice makes the invoice of #5: issued on the first of this month for last month, due,
// with an invoice PDF and a summary behind download URLs made by sas.
func newInvoice(op *operation, now time.Time, sas func(file string) string) invoice {
	usd := func(v float64) amount { return amount{Currency: "USD", Value: v} }
	issued := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	periodStart := issued.AddDate(0, -1, 0)
	account := armPrefix + op.billingAccount
	return invoice{
		ID:   account + "/invoices/" + op.invoiceName,
		Name: op.invoiceName,
		Type: "Microsoft.Billing/billingAccounts/invoices",
		Properties: invoiceProperties{
			AmountDue:                 usd(108.25),
			AzurePrepaymentApplied:    usd(0),
			BilledAmount:              usd(108.25),
			BillingProfileDisplayName: "Emulated Billing Profile",
			BillingProfileID:          account + "/billingProfiles/EMUL-ATOR-BG7-TGB",
			CreditAmount:              usd(0),
			Documents: []invoiceDocument{
				{Kind: "Invoice", Name: op.invoiceName, URL: sas(op.invoiceName + ".pdf"), Source: "DRS", DocumentNumbers: []string{op.invoiceName}},
				{Kind: "Summary", Name: op.invoiceName + "-summary", URL: sas(op.invoiceName + "_summary.pdf"), Source: "DRS", DocumentNumbers: []string{op.invoiceName}},
			},
			DocumentType:           "Invoice",
			DueDate:                issued.AddDate(0, 0, 30).Format(time.RFC3339),
			FreeAzureCreditApplied: usd(0),
			InvoiceDate:            issued.Format(time.RFC3339),
			InvoicePeriodEndDate:   issued.AddDate(0, 0, -1).Format(time.RFC3339),
			InvoicePeriodStartDate: periodStart.Format(time.RFC3339),
			InvoiceType:            "AzureServices",
			IsMonthlyInvoice:       true,
			Payments:               []struct{}{},
			PurchaseOrderNumber:    "123456",
			Status:                 "Due",
			SubTotal:               usd(100),
			TaxAmount:              usd(8.25),
			TotalAmount:            usd(108.25),
		},
	}
}
