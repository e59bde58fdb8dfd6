package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Version is the schema version of every document this package defines.
const Version = 1

// MaxListedInvoices bounds the invoices a listing (KindAccountInvoices,
// KindSubscriptionInvoices) may find: its completion event carries them all,
// and one event stays well under NATS's default 1 MB message size. A listing
// that finds more fails with CodeTooMany.
const MaxListedInvoices = 500

// MaxRequestBytes is the default limit on the size of an encoded request.
const MaxRequestBytes = 64 << 10

// Request asks the worker to run one Azure operation.
type Request struct {
	// Version is the schema version; must be 1.
	Version int `json:"version"`
	// ID identifies the request; events and the stored state are keyed by
	// it, and publishing it as the Nats-Msg-Id header makes a resubmission
	// within the stream's duplicate window a no-op.
	ID string `json:"id"`
	// Kind selects the operation.
	Kind Kind `json:"kind"`
	// Params are the operation's parameters; which ones depends on Kind.
	Params Params `json:"params"`
	// Labels are the caller's own key/value pairs, echoed in the events.
	Labels map[string]string `json:"labels,omitempty"`
	// Deadline bounds the whole operation; when it passes the request ends
	// in a failure event with code timeout. Zero means the worker's default.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Profile names the credential profile to call Azure with; empty means
	// the worker's default profile.
	Profile string `json:"profile,omitempty"`
	// Collection is set on the requests the worker makes for a collection's
	// documents; never on a caller's own request.
	Collection *ChildOf `json:"collection,omitempty"`
	// Archive asks for the document to be archived (true) or not (false);
	// absent means the worker's default. A kind without a document
	// (KindInvoice) is never archived.
	Archive *bool `json:"archive,omitempty"`
}

// Params holds the parameters of every kind; each kind uses a subset and
// refuses the others.
type Params struct {
	SubscriptionID     string        `json:"subscriptionId,omitempty"`
	BillingAccountName string        `json:"billingAccountName,omitempty"`
	BillingProfileName string        `json:"billingProfileName,omitempty"`
	InvoiceName        string        `json:"invoiceName,omitempty"`
	DownloadToken      string        `json:"downloadToken,omitempty"`
	Documents          []DocumentRef `json:"documents,omitempty"`
	// DocumentName names one document of an invoice (its documents[].name);
	// optional for KindAccountDocument and KindSubscriptionDocument, where
	// none means the invoice itself.
	DocumentName string `json:"documentName,omitempty"`
	// PeriodStartDate and PeriodEndDate (YYYY-MM-DD, optional) bound the
	// invoices a listing returns.
	PeriodStartDate string `json:"periodStartDate,omitempty"`
	PeriodEndDate   string `json:"periodEndDate,omitempty"`
	// DocumentKinds are the document kinds a KindCollection fetches
	// (default DefaultDocumentKinds), as invoices list them: Invoice,
	// CreditNote, TaxReceipt, VoidNote, Summary, Transactions, or a kind Azure
	// adds.
	DocumentKinds []string `json:"documentKinds,omitempty"`
	// The parameters of the cost data kinds (KindCostDetails and the
	// reports; docs/contract.md says which kind takes which).
	//
	// InvoiceSectionName and CustomerName narrow a billing account's (or
	// billing profile's) scope; Metric is ActualCost (the default) or
	// AmortizedCost; BillingPeriod is an EA billing period, YYYYMM.
	InvoiceSectionName string `json:"invoiceSectionName,omitempty"`
	CustomerName       string `json:"customerName,omitempty"`
	Metric             string `json:"metric,omitempty"`
	BillingPeriod      string `json:"billingPeriod,omitempty"`
	// Grain (Daily or Monthly) and BenefitKind (Reservation or
	// SavingsPlan) shape a benefit utilization report; the order and
	// benefit ids are its scopes other than a billing account.
	Grain              string `json:"grain,omitempty"`
	BenefitKind        string `json:"benefitKind,omitempty"`
	ReservationOrderID string `json:"reservationOrderId,omitempty"`
	ReservationID      string `json:"reservationId,omitempty"`
	SavingsPlanOrderID string `json:"savingsPlanOrderId,omitempty"`
	SavingsPlanID      string `json:"savingsPlanId,omitempty"`
	// An estate's filters (KindEstate): the billing accounts it collects.
	// IncludeAccounts (names; none: every one), ExcludeAccounts (names),
	// AgreementTypes (none: every type) and AccountNamePattern (a shell
	// pattern on the display name) all apply; subscriptions are not
	// filtered.
	IncludeAccounts    []string `json:"includeAccounts,omitempty"`
	ExcludeAccounts    []string `json:"excludeAccounts,omitempty"`
	AgreementTypes     []string `json:"agreementTypes,omitempty"`
	AccountNamePattern string   `json:"accountNamePattern,omitempty"`
}

// DocumentRef names one document for KindSubscriptionDocuments and
// KindAccountDocuments. DocumentName is required for the former; for the
// latter none means the invoice's latest PDF.
type DocumentRef struct {
	DocumentName string `json:"documentName,omitempty"`
	InvoiceName  string `json:"invoiceName"`
}

// FieldError says which field of a request breaks which rule.
type FieldError struct {
	// Field is the JSON path of the field, such as "params.invoiceName" or
	// "params.documents[0].documentName"; empty for a problem with the
	// document as a whole.
	Field string `json:"field,omitempty"`
	// Rule is the rule broken: one of Rules.
	Rule string `json:"rule"`
	// Message explains the problem for a human.
	Message string `json:"message"`
}

func (e FieldError) String() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Rules lists every rule a FieldError names, in the order docs/contract.md
// explains them; the failed event's schema enumerates the same (a test
// checks both).
var Rules = []string{
	"syntax", "max_size", "unknown_field", "type", "required", "version", "enum",
	"pattern", "max_length", "min_items", "max_items", "not_allowed", "format",
}

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid request")

// ValidationError lists every problem found in a request.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// DecodeRequest parses and validates an encoded request. It refuses a
// document over maxBytes (MaxRequestBytes when maxBytes <= 0), with unknown
// fields, or breaking any rule of Validate. On error, the returned request
// holds whatever could be read (its ID and Kind, if any), so that the failure
// event can name them; the error is a *ValidationError.
func DecodeRequest(data []byte, maxBytes int) (Request, error) {
	var r Request
	if maxBytes <= 0 {
		maxBytes = MaxRequestBytes
	}
	if len(data) > maxBytes {
		r.salvage(data)
		return r, &ValidationError{Fields: []FieldError{{
			Rule:    "max_size",
			Message: fmt.Sprintf("request is %d bytes, more than the limit of %d", len(data), maxBytes),
		}}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		r = Request{}
		r.salvage(data)
		return r, &ValidationError{Fields: decodeProblems(err, data)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, &ValidationError{Fields: []FieldError{{Rule: "syntax", Message: "unexpected data after the JSON object"}}}
	}
	return r, r.Validate()
}

// salvage picks the id and kind out of a request that does not decode, so
// that its failure event can still be routed to the caller.
func (r *Request) salvage(data []byte) {
	var loose struct {
		ID   any `json:"id"`
		Kind any `json:"kind"`
	}
	if json.Unmarshal(data, &loose) != nil {
		return
	}
	if s, ok := loose.ID.(string); ok && idPattern.MatchString(s) {
		r.ID = s
	}
	if s, ok := loose.Kind.(string); ok && Kind(s).Valid() {
		r.Kind = Kind(s)
	}
}

// decodeProblems turns an encoding/json error into FieldErrors. An unknown
// field is reported by encoding/json with its bare name only, so the
// document is walked again to name every unknown field by its full path.
func decodeProblems(err error, data []byte) []FieldError {
	if _, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if fields := unknownFields(data); len(fields) > 0 {
			return fields
		}
	}
	return []FieldError{decodeProblem(err)}
}

// decodeProblem turns an encoding/json error into a FieldError.
func decodeProblem(err error) FieldError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return FieldError{Rule: "syntax", Message: fmt.Sprintf("not valid JSON at byte %d: %v", syn.Offset, syn)}
	case errors.As(err, &typ):
		return FieldError{Field: typ.Field, Rule: "type", Message: fmt.Sprintf("must be a JSON %s, not %s", jsonType(typ.Type.Kind().String()), typ.Value)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return FieldError{Rule: "syntax", Message: "empty or truncated JSON document"}
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		// Only when the walk of unknownFields finds nothing, which should not
		// happen: the bare name does not say where the field is.
		return FieldError{Rule: "unknown_field", Message: fmt.Sprintf("unknown field %s somewhere in the request", clip(name))}
	}
	if pe := (*time.ParseError)(nil); errors.As(err, &pe) || strings.Contains(msg, "parsing time") {
		return FieldError{Field: "deadline", Rule: "format", Message: "must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z"}
	}
	return FieldError{Rule: "syntax", Message: strings.TrimPrefix(msg, "json: ")}
}

func jsonType(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "float64", "uint64":
		return "number"
	case "slice":
		return "array"
	case "map", "struct":
		return "object"
	case "bool":
		return "boolean"
	}
	return goKind
}
