package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"path"
	"strings"
	"time"
)

// Archive says where the worker keeps a copy of a completion event's
// document (Completed.Archive), or, when Error is set, why it has none.
type Archive struct {
	// Store is the kind of archive: StoreNATS or StoreAzureBlob.
	Store string `json:"store,omitempty"`
	// Bucket is the Object Store bucket or the Blob Storage container.
	Bucket string `json:"bucket,omitempty"`
	// Name is the object's (blob's) name; see ObjectName.
	Name string `json:"name,omitempty"`
	// Size is the document's length in bytes.
	Size int64 `json:"size,omitempty"`
	// SHA256 is the lower-case hex SHA-256 digest of the document.
	SHA256 string `json:"sha256,omitempty"`
	// ContentType is the document's media type, as its link served it.
	ContentType string `json:"contentType,omitempty"`
	// StoredAt is when the store committed the object (or, for a second
	// archive of the same content, when the first one did).
	StoredAt *time.Time `json:"storedAt,omitempty"`
	// Error is set when the document could not be archived; the event's
	// url is then the only way to the document, until it expires.
	Error *ArchiveError `json:"error,omitempty"`
}

// ArchiveError says why a document was not archived.
type ArchiveError struct {
	Code    ArchiveCode `json:"code"`
	Message string      `json:"message"`
}

// ArchiveCode is a stable archive failure code; docs/contract.md lists them.
type ArchiveCode string

// The archive failure codes.
const (
	// ArchiveNotConfigured: the request asked for an archive, and the
	// worker has no archive store.
	ArchiveNotConfigured ArchiveCode = "not_configured"
	// ArchiveDownloadFailed: the document could not be downloaded (resets,
	// timeouts, 5xx) in the attempts allowed.
	ArchiveDownloadFailed ArchiveCode = "download_failed"
	// ArchiveLinkExpired: the link kept expiring (or being refused) before
	// the download finished, new links from Azure included.
	ArchiveLinkExpired ArchiveCode = "link_expired"
	// ArchiveStoreFailed: the archive store refused or failed the write.
	ArchiveStoreFailed ArchiveCode = "store_failed"
	// ArchiveConflict: another document is stored under the object's name;
	// it is never overwritten.
	ArchiveConflict ArchiveCode = "conflict"
	// ArchiveTimeout: the operation's deadline came before the archive was
	// stored.
	ArchiveTimeout ArchiveCode = "timeout"
	// ArchiveInternal: the worker failed to handle the archive repeatedly.
	ArchiveInternal ArchiveCode = "internal_error"
)

// ArchiveCodes lists every archive failure code.
var ArchiveCodes = []ArchiveCode{
	ArchiveNotConfigured, ArchiveDownloadFailed, ArchiveLinkExpired, ArchiveStoreFailed,
	ArchiveConflict, ArchiveTimeout, ArchiveInternal,
}

// ManifestFile is the file name of a report's archive manifest: a report
// of several files (a cost details report of more than one blob) is
// archived as one object per file plus this one, under the same prefix
// (ObjectName(req, ManifestFile)). The event's archive is the manifest's.
const ManifestFile = "manifest.json"

// ArchiveManifest is the content of a report's archive manifest: every
// file stored, in the report's order, with its digest.
type ArchiveManifest struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Kind    Kind   `json:"kind"`
	// Manifest is what Azure's manifest said of the files.
	Manifest *ReportManifest `json:"manifest,omitempty"`
	Files    []ArchivedFile  `json:"files"`
}

// ArchivedFile is one file of an ArchiveManifest.
type ArchivedFile struct {
	// Name is the object's name in the same store and bucket.
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	ContentType string `json:"contentType,omitempty"`
	// ByteCount is the size Azure announced (0: none).
	ByteCount int64 `json:"byteCount,omitempty"`
}

// The archive stores (Archive.Store).
const (
	StoreNATS      = "nats"
	StoreAzureBlob = "azblob"
)

// ObjectName is the name a request's document is archived under:
//
//	<kind>/<scope>/<invoice>[/<documentName>]/<file>
//
// scope is the subscription id (subscription-invoice,
// subscription-document, subscription-documents), the billing account name
// (invoice-summary, account-document, account-documents,
// invoice-transactions), or the billing account name and the billing
// profile name (invoice-pricesheet, profile-pricesheet: two segments);
// invoice is the invoice name, none for profile-pricesheet, or for
// subscription-documents and account-documents "documents-" and the first
// 16 hex digits of the SHA-256 of the document list as
// "invoiceName/documentName" lines; documentName is the request's
// documentName parameter, when it has one; file is the last path segment of
// the download link (without its query), or "document" when it has none.
// The cost data kinds are named by their scope's ids and what they cover
// (costObjectParts; docs/contract.md has the table). Every character of a segment outside
// [A-Za-z0-9._-] is written %XX (upper-case hex of each UTF-8 byte), and a
// segment of only dots is written with %2E, so a name holds no ':' and no
// empty, "." or ".." segment in either store.
func ObjectName(req Request, link string) string {
	p := req.Params
	var parts []string
	docs := func() string {
		h := sha256.New()
		for _, d := range p.Documents {
			h.Write([]byte(d.InvoiceName + "/" + d.DocumentName + "\n"))
		}
		return "documents-" + hex.EncodeToString(h.Sum(nil))[:16]
	}
	switch req.Kind {
	case KindSubscriptionInvoice, KindSubscriptionDocument:
		parts = []string{p.SubscriptionID, p.InvoiceName}
	case KindSubscriptionDocuments:
		parts = []string{p.SubscriptionID, docs()}
	case KindAccountDocuments:
		parts = []string{p.BillingAccountName, docs()}
	case KindInvoicePriceSheet:
		parts = []string{p.BillingAccountName, p.BillingProfileName, p.InvoiceName}
	case KindProfilePriceSheet:
		parts = []string{p.BillingAccountName, p.BillingProfileName}
	case KindCostDetails, KindReservationDetails, KindBenefitUtilization, KindAccountPriceSheet:
		parts = costObjectParts(req.Kind, p)
	default: // invoice-summary, account-document, invoice-transactions
		parts = []string{p.BillingAccountName, p.InvoiceName}
	}
	if p.DocumentName != "" {
		parts = append(parts, p.DocumentName)
	}
	file := "document"
	if u, err := url.Parse(link); err == nil {
		if base := path.Base(u.Path); base != "/" && base != "." && base != "" {
			file = base
		}
	}
	out := []string{nameSegment(string(req.Kind))}
	for _, s := range append(parts, file) {
		out = append(out, nameSegment(s))
	}
	return strings.Join(out, "/")
}

func nameSegment(s string) string {
	if s == "" {
		return "%00"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c == '.' && strings.Trim(s, ".") != "":
			b.WriteByte(c)
		default:
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	return b.String()
}

// costObjectParts are the segments between a cost data kind and its file:
// the scope's ids in path order (a customer after the word "customers"),
// then what the report covers: for cost-details the metric and the period
// ("<start>_<end>", the billing period or the invoice id); for
// reservation-details the period; for benefit-utilization the benefit
// kind (at a billing scope), the grain and the period; for
// account-pricesheet the billing period.
func costObjectParts(k Kind, p Params) []string {
	var parts []string
	for _, s := range []string{p.SubscriptionID, p.BillingAccountName, p.BillingProfileName, p.InvoiceSectionName,
		p.ReservationOrderID, p.ReservationID, p.SavingsPlanOrderID, p.SavingsPlanID} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if p.CustomerName != "" {
		parts = append(parts, "customers", p.CustomerName)
	}
	period := p.PeriodStartDate + "_" + p.PeriodEndDate
	switch k {
	case KindCostDetails:
		metric := p.Metric
		if metric == "" {
			metric = MetricActualCost
		}
		switch {
		case p.BillingPeriod != "":
			period = p.BillingPeriod
		case p.InvoiceName != "":
			period = p.InvoiceName
		}
		parts = append(parts, metric, period)
	case KindReservationDetails:
		parts = append(parts, period)
	case KindBenefitUtilization:
		if p.BenefitKind != "" {
			parts = append(parts, p.BenefitKind)
		}
		parts = append(parts, p.Grain, period)
	case KindAccountPriceSheet:
		parts = append(parts, p.BillingPeriod)
	}
	return parts
}
