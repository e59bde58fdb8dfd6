package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// KindCollection fetches every document of a billing account's or billing
// subscription's invoices of a period: it lists the invoices (every page),
// then starts one child request per document, each routed to the download
// that fetches its kind of document, and ends with one completion event
// listing every child's outcome.
const KindCollection Kind = "collection"

// Document kinds an invoice lists (documents[].kind), and PriceSheet. Azure
// may send others.
const (
	DocInvoice      = "Invoice"
	DocCreditNote   = "CreditNote"
	DocTaxReceipt   = "TaxReceipt"
	DocVoidNote     = "VoidNote"
	DocSummary      = "Summary"
	DocTransactions = "Transactions"
	// DocPriceSheet is no kind Azure lists: named in a collection's
	// documentKinds, it fetches each listed invoice's price sheet
	// (KindInvoicePriceSheet, by the invoice's billing profile, on MCA
	// billing accounts; KindAccountPriceSheet, by the invoice's billing
	// period, for an invoice without a billing profile: EA).
	DocPriceSheet = "PriceSheet"
	// DocCostDetails fetches cost details beside the invoices
	// (KindCostDetails): per invoice by its invoice id on an MCA account
	// (an invoice with a billing profile), per invoice by its billing
	// period on an EA account, and per month of the period for a
	// subscription's collection.
	DocCostDetails = "CostDetails"
	// DocReservationDetails fetches the billing account's reservation
	// details report of the collection's period (KindReservationDetails;
	// billing account collections only).
	DocReservationDetails = "ReservationDetails"
)

// MaxCollectionIDLen bounds a collection's id, so that its children's ids
// (the collection id, '-', 16 hex digits) follow the id rule.
const MaxCollectionIDLen = 100

// MaxDocumentKinds bounds params.documentKinds.
const MaxDocumentKinds = 16

var documentKindPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// ChildOf names the collection a child request belongs to, and its place
// in the collection's list of documents. The worker sets it on the
// requests it makes for a collection; a request of a caller's own must not
// carry it.
type ChildOf struct {
	// ID is the collection's request id.
	ID string `json:"id"`
	// Index is the document's position in the collection (0-based).
	Index int `json:"index"`
}

// ChildID is the request id of the child of collection id that fetches
// document of invoice: the collection id, '-', and 16 hex digits of a digest
// of the invoice and document names. The same document of the same
// collection always gets the same id, so a crash at any point never makes a
// child twice.
func ChildID(collection, invoice, document string) string {
	sum := sha256.Sum256([]byte(invoice + "\x00" + document))
	return collection + "-" + hex.EncodeToString(sum[:8])
}

// CollectionSummary is what a collection's completion event says of its
// children.
type CollectionSummary struct {
	// Documents counts the listed documents the collection fetches; Completed
	// and Failed count its children by outcome (Completed+Failed ==
	// Documents).
	Documents int `json:"documents"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// Invoices counts the invoices listed.
	Invoices int `json:"invoices"`
	// Children lists every child: failed ones first, then completed ones, each
	// in listing order. When the whole list would make the event larger than
	// MaxCollectionEventBytes, completed children lose their url first, then
	// completed children are left out, and Truncated is true (each child's own
	// completion event still carries everything).
	Children  []ChildOutcome `json:"children"`
	Truncated bool           `json:"truncated,omitempty"`
	// Listed counts the documents the invoices listed, each one either
	// fetched (a child) or skipped; Skipped counts the skipped ones, and
	// SkippedDocuments lists them in listing order (the last ones are left
	// out, and Truncated is true, only after every completed child was).
	Listed           int               `json:"listed"`
	Skipped          int               `json:"skipped"`
	SkippedDocuments []SkippedDocument `json:"skippedDocuments"`
	// Months has the counts of every calendar month the period touches,
	// oldest first, each document in the month of its invoice's date (a
	// report of the period in the month it starts): what a coverage record
	// of the scope and month holds.
	Months []MonthCount `json:"months"`
}

// Why a listed document is not fetched (SkippedDocument.Reason).
const (
	// SkipKindNotRequested: the document's kind is not among the kinds the
	// collection fetches (params.documentKinds, or the default kinds).
	SkipKindNotRequested = "kind_not_requested"
	// SkipExternal: the document is kept by an external source (source
	// ENF, or only an externalUrl is listed): it is not Azure's to
	// download; ExternalURL records the link.
	SkipExternal = "external"
	// SkipNoName: the listing gave no name, and the download without
	// documentName (the invoice's default document) would not fetch it:
	// its kind is not Invoice, or the invoice's default document is
	// fetched already.
	SkipNoName = "no_name"
	// SkipDuplicate: the invoice lists the same document twice; it is
	// fetched once.
	SkipDuplicate = "duplicate"
)

// SkipReasons lists every SkippedDocument.Reason.
var SkipReasons = []string{SkipKindNotRequested, SkipExternal, SkipNoName, SkipDuplicate}

// SkippedDocument is a listed document a collection does not fetch.
type SkippedDocument struct {
	InvoiceName  string `json:"invoiceName"`
	DocumentName string `json:"documentName,omitempty"`
	DocumentKind string `json:"documentKind"`
	// Reason is one of SkipReasons.
	Reason string `json:"reason"`
	// ExternalURL is the document's external link, when it has one.
	ExternalURL string `json:"externalUrl,omitempty"`
}

// MonthCount is a collection's counts for one calendar month: the
// documents of the month it fetches, how many of them completed and
// failed, and how many it skipped.
type MonthCount struct {
	// Month is YYYY-MM.
	Month     string `json:"month"`
	Documents int    `json:"documents"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	// Reasons counts the month's skipped documents by reason.
	Reasons map[string]int `json:"reasons,omitempty"`
}

// MaxCollectionEventBytes bounds a collection's completion event, under
// NATS's default 1 MB message size.
const MaxCollectionEventBytes = 900 << 10

// ChildOutcome is one child of a collection.
type ChildOutcome struct {
	ID          string `json:"id"`
	InvoiceName string `json:"invoiceName"`
	// DocumentName is empty for a document the listing gave no name: an
	// Invoice fetched as the invoice's default document (the download
	// without documentName), or an EA summary or transactions file (whose
	// downloads take no name).
	DocumentName string `json:"documentName"`
	// DocumentKind is the document's kind as Azure listed it.
	DocumentKind string `json:"documentKind"`
	// Kind is the request kind that fetched it.
	Kind Kind `json:"kind"`
	// Month is the month it counts in (see CollectionSummary.Months).
	Month string `json:"month,omitempty"`
	// Outcome is completed or failed.
	Outcome string `json:"outcome"`
	// URL and ExpiryTime, for a completed child (see Truncated).
	URL        string     `json:"url,omitempty"`
	ExpiryTime *time.Time `json:"expiryTime,omitempty"`
	// Code and Message, for a failed child.
	Code    Code   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// DefaultDocumentKinds are the document kinds a collection fetches when its
// request names none: every kind a download exists for. Documents of kinds
// Azure lists beyond these are fetched only when named.
var DefaultDocumentKinds = []string{DocInvoice, DocCreditNote, DocTaxReceipt, DocVoidNote, DocSummary, DocTransactions}

// Fetches reports whether a collection with request params p fetches
// documents of kind docKind.
func (p Params) Fetches(docKind string) bool {
	kinds := p.DocumentKinds
	if len(kinds) == 0 {
		kinds = DefaultDocumentKinds
	}
	return slices.Contains(kinds, docKind)
}

// ListKind is the listing a collection's scope takes: KindAccountInvoices
// for a billing account, KindSubscriptionInvoices for a billing
// subscription.
func (p Params) ListKind() Kind {
	if p.SubscriptionID != "" {
		return KindSubscriptionInvoices
	}
	return KindAccountInvoices
}

// CallKind is the kind whose Azure operation a request's calls go to: the
// request's own kind, or for a collection its listing.
func (r Request) CallKind() Kind {
	if r.Kind == KindCollection {
		return r.Params.ListKind()
	}
	if r.Kind == KindEstate {
		return KindBillingAccounts // its first listing; then its subscriptions'
	}
	return r.Kind
}

// validateCollection checks a collection's params: a billing account or a
// billing subscription (one of them), a period, and document kinds.
func (p Params) validateCollection(v *validator) {
	switch {
	case p.BillingAccountName == "" && p.SubscriptionID == "":
		v.add("params.billingAccountName", "required", "a collection needs billingAccountName or subscriptionId")
	case p.BillingAccountName != "" && p.SubscriptionID != "":
		v.add("params.subscriptionId", "not_allowed", "a collection takes billingAccountName or subscriptionId, not both")
	case p.BillingAccountName != "":
		v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
	}
	if p.PeriodStartDate == "" {
		v.add("params.periodStartDate", "required", "is required for kind collection")
	}
	if p.PeriodEndDate == "" {
		v.add("params.periodEndDate", "required", "is required for kind collection")
	}
	p.validateDocumentKinds(v)
}

// validateDocumentKinds checks params.documentKinds (a collection's or an
// estate's).
func (p Params) validateDocumentKinds(v *validator) {
	if len(p.DocumentKinds) > MaxDocumentKinds {
		v.add("params.documentKinds", "max_items", fmt.Sprintf("lists %d kinds, at most %d allowed", len(p.DocumentKinds), MaxDocumentKinds))
	}
	if p.DocumentKinds != nil && len(p.DocumentKinds) == 0 {
		v.add("params.documentKinds", "min_items", "must name at least one kind when present")
	}
	for i, k := range p.DocumentKinds[:min(len(p.DocumentKinds), MaxDocumentKinds)] {
		v.match(fmt.Sprintf("params.documentKinds[%d]", i), k, documentKindPattern, "a document kind such as Invoice or CreditNote")
	}
}
