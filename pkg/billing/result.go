package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// Result is what a finished operation handed back.
type Result struct {
	// URL is the download URL (a SAS URL) for the download kinds.
	URL string
	// ExpiryTime is when URL expires.
	ExpiryTime *time.Time
	// ValidTill is the price sheet's validity (Cost Management only).
	ValidTill *time.Time
	// DownloadFileProperties is Cost Management's description of a billing
	// profile's price sheet files, as sent.
	DownloadFileProperties json.RawMessage
	// Invoice is the invoice, for KindInvoice.
	Invoice *messages.Invoice
	// Invoices are one page of a listing; NextLink is the URL of the next
	// page (empty on the last one), as Azure sent it: Client.Poll checks it
	// before following it.
	Invoices []messages.Invoice
	NextLink string
	// Items are one page of a discovery listing.
	Items []messages.Discovered
	// Files, Manifest, SecondaryURL and NoData are a cost data report's
	// (messages.Completed says what each is).
	Files        []messages.ReportFile
	Manifest     *messages.ReportManifest
	SecondaryURL string
	NoData       bool
	// Pending is set when the answer is a report's status saying it is
	// still running: Client.Poll turns it into a 202 (poll again).
	Pending bool
	// Failed is Azure's error of a report whose status says it failed:
	// Client turns it into a *ResponseError.
	Failed *messages.AzureError
}

// ParseResult decodes the body of a 200 answer in the given shape. It fails
// with a *MalformedError when the body is not that shape or lacks the URL.
func ParseResult(shape ResultShape, body []byte) (Result, error) {
	bad := func(format string, args ...any) (Result, error) {
		return Result{}, &MalformedError{Status: 200, Reason: fmt.Sprintf(format, args...)}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return bad("empty body")
	}
	switch shape {
	case ShapeCostDetails, ShapeReservationDetails, ShapeBenefitUtilization, ShapeAccountPriceSheet:
		return parseCost(shape, body)
	case ShapeInvoice:
		return parseInvoice(body)
	case ShapeInvoiceList:
		return parseInvoiceList(body)
	case ShapeDiscoveryList:
		return parseDiscoveryList(body)
	case ShapeProfilePriceSheet:
		var r struct {
			DownloadURL            string          `json:"downloadUrl"`
			ExpiryTime             string          `json:"expiryTime"`
			DownloadFileProperties json.RawMessage `json:"downloadFileProperties"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return bad("not a %s: %v", shape, jsonProblem(err))
		}
		res := Result{URL: r.DownloadURL}
		if p := bytes.TrimSpace(r.DownloadFileProperties); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
			if p[0] != '{' {
				return bad("downloadFileProperties is not an object")
			}
			res.DownloadFileProperties = p
		}
		var err error
		if res.ExpiryTime, err = optionalTime("expiryTime", r.ExpiryTime); err != nil {
			return bad("%v", err)
		}
		return checkURL(res, shape)
	case ShapePriceSheetURL:
		var r struct {
			DownloadURL string `json:"downloadUrl"`
			ExpiryTime  string `json:"expiryTime"`
			ValidTill   string `json:"validTill"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return bad("not a %s: %v", shape, jsonProblem(err))
		}
		res := Result{URL: r.DownloadURL}
		var err error
		if res.ExpiryTime, err = optionalTime("expiryTime", r.ExpiryTime); err != nil {
			return bad("%v", err)
		}
		if res.ValidTill, err = optionalTime("validTill", r.ValidTill); err != nil {
			return bad("%v", err)
		}
		return checkURL(res, shape)
	default:
		var r struct {
			URL        string `json:"url"`
			ExpiryTime string `json:"expiryTime"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return bad("not a %s: %v", shape, jsonProblem(err))
		}
		exp, err := optionalTime("expiryTime", r.ExpiryTime)
		if err != nil {
			return bad("%v", err)
		}
		return checkURL(Result{URL: r.URL, ExpiryTime: exp}, shape)
	}
}

func checkURL(r Result, shape ResultShape) (Result, error) {
	if r.URL == "" {
		return Result{}, &MalformedError{Status: 200, Reason: fmt.Sprintf("%s without a download URL", shape)}
	}
	u, err := url.Parse(r.URL)
	if err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") {
		return Result{}, &MalformedError{Status: 200, Reason: fmt.Sprintf("%s with a download URL that is not an absolute http(s) URL", shape)}
	}
	return r, nil
}

// jsonProblem describes a decoding error without quoting the body.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	}
	return "invalid JSON"
}

// ParseTime reads an Azure date-time: RFC 3339 with any number of
// fractional digits (Cost Management sends seven), or the same without a
// zone, which Azure means as UTC.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date-time", clipValue(s))
}

func optionalTime(field, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := ParseTime(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return &t, nil
}

func clipValue(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// azureInvoice is the part of the 2024-04-01 Invoice resource the worker
// passes on.
type azureInvoice struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		Status                 string                     `json:"status"`
		InvoiceType            string                     `json:"invoiceType"`
		DocumentType           string                     `json:"documentType"`
		InvoiceDate            string                     `json:"invoiceDate"`
		DueDate                string                     `json:"dueDate"`
		InvoicePeriodStartDate string                     `json:"invoicePeriodStartDate"`
		InvoicePeriodEndDate   string                     `json:"invoicePeriodEndDate"`
		BillingProfileID       string                     `json:"billingProfileId"`
		PurchaseOrderNumber    string                     `json:"purchaseOrderNumber"`
		SubscriptionID         string                     `json:"subscriptionId"`
		AmountDue              *messages.Amount           `json:"amountDue"`
		BilledAmount           *messages.Amount           `json:"billedAmount"`
		TotalAmount            *messages.Amount           `json:"totalAmount"`
		SubTotal               *messages.Amount           `json:"subTotal"`
		TaxAmount              *messages.Amount           `json:"taxAmount"`
		CreditAmount           *messages.Amount           `json:"creditAmount"`
		AzurePrepaymentApplied *messages.Amount           `json:"azurePrepaymentApplied"`
		FreeAzureCreditApplied *messages.Amount           `json:"freeAzureCreditApplied"`
		Documents              []messages.InvoiceDocument `json:"documents"`
	} `json:"properties"`
}

// parseInvoiceList reads one page of a listing. Every enum of the invoice
// (status, kinds, sources) is taken as a string, so a value the
// specification does not list (PastDue) passes.
func parseInvoiceList(body []byte) (Result, error) {
	var page struct {
		Value    *[]json.RawMessage `json:"value"`
		NextLink string             `json:"nextLink"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return Result{}, &MalformedError{Status: 200, Reason: "not an InvoiceListResult: " + jsonProblem(err)}
	}
	if page.Value == nil {
		return Result{}, &MalformedError{Status: 200, Reason: "InvoiceListResult without value"}
	}
	res := Result{NextLink: page.NextLink, Invoices: make([]messages.Invoice, 0, len(*page.Value))}
	for i, raw := range *page.Value {
		inv, err := readInvoice(raw)
		if err != nil {
			var me *MalformedError
			if errors.As(err, &me) {
				me.Reason = fmt.Sprintf("value[%d]: %s", i, me.Reason)
			}
			return Result{}, err
		}
		res.Invoices = append(res.Invoices, *inv)
	}
	return res, nil
}

func parseInvoice(body []byte) (Result, error) {
	inv, err := readInvoice(body)
	if err != nil {
		return Result{}, err
	}
	return Result{Invoice: inv}, nil
}

func readInvoice(body []byte) (*messages.Invoice, error) {
	var a azureInvoice
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, &MalformedError{Status: 200, Reason: "not an Invoice: " + jsonProblem(err)}
	}
	if a.ID == "" || a.Name == "" {
		return nil, &MalformedError{Status: 200, Reason: "Invoice without id or name"}
	}
	p := a.Properties
	inv := &messages.Invoice{
		ID: a.ID, Name: a.Name, Status: p.Status, InvoiceType: p.InvoiceType, DocumentType: p.DocumentType,
		BillingProfileID: p.BillingProfileID, PurchaseOrderNumber: p.PurchaseOrderNumber,
		SubscriptionID: p.SubscriptionID, Documents: p.Documents,
	}
	for _, d := range []struct {
		field string
		value string
		dst   **time.Time
	}{
		{"invoiceDate", p.InvoiceDate, &inv.InvoiceDate},
		{"dueDate", p.DueDate, &inv.DueDate},
		{"invoicePeriodStartDate", p.InvoicePeriodStartDate, &inv.PeriodStartDate},
		{"invoicePeriodEndDate", p.InvoicePeriodEndDate, &inv.PeriodEndDate},
	} {
		t, err := optionalTime(d.field, d.value)
		if err != nil {
			return nil, &MalformedError{Status: 200, Reason: err.Error()}
		}
		*d.dst = t
	}
	for name, a := range map[string]*messages.Amount{
		"amountDue": p.AmountDue, "billedAmount": p.BilledAmount, "totalAmount": p.TotalAmount,
		"subTotal": p.SubTotal, "taxAmount": p.TaxAmount, "creditAmount": p.CreditAmount,
		"azurePrepaymentApplied": p.AzurePrepaymentApplied, "freeAzureCreditApplied": p.FreeAzureCreditApplied,
	} {
		if a == nil {
			continue
		}
		if inv.Amounts == nil {
			inv.Amounts = map[string]messages.Amount{}
		}
		inv.Amounts[name] = *a
	}
	return inv, nil
}
