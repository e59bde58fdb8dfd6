package messages

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"time"
	"unicode"
	"unicode/utf8"
)

// Patterns of Azure's API reference (docs/azure.md, "Parameter patterns"),
// anchored. The Cost Management patterns are unanchored in their spec;
// anchoring them is what the service means.
var (
	idPattern      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	guidPattern    = regexp.MustCompile(`^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$`)
	accountPattern = regexp.MustCompile(`^([0-9]+|([Pp][Cc][Nn]\.[A-Za-z0-9]+)|[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}(:[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}_[0-9]{4}(-[0-9]{2}){2})?)$`)
	invoicePattern = regexp.MustCompile(`^(H[0-9]-[A-Z0-9]+)$|^(?:([GHT]|HT){1}[A-Z0-9]{9})$|^(?:[D]{1}[A-Z0-9]{9})$|^(?:E{1}[B-Z0-9]{1}[A-Z0-9]{8})$|^(?:EA[A-Z0-9]{8})$`)
	// Cost Management 2023-11-01 (price sheet).
	cmAccountPattern = regexp.MustCompile(`^([A-Za-z0-9]+(-[A-Za-z0-9]+)+):([A-Za-z0-9]+(-[A-Za-z0-9]+)+)_[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	cmProfilePattern = regexp.MustCompile(`^([A-Za-z0-9]+(-[A-Za-z0-9]+)+)$`)
	cmInvoicePattern = regexp.MustCompile(`^[A-Za-z0-9]+$`)
	// 2020-05-01 gives no patterns: a safe path segment and query value.
	segmentPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	tokenPattern   = regexp.MustCompile(`^[A-Za-z0-9_.~=+-]{1,256}$`)
	// Labels and profiles.
	labelKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)
	profilePattern  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidID reports whether id follows the id rule: 1 to 128 letters,
// digits, '-' or '_'.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// SameOperation reports whether a and b ask for the same Azure operation:
// the same kind, credential profile and parameters. Labels and deadline
// may differ; a resubmission with the same id and the same operation gets
// the operation's one outcome.
func SameOperation(a, b Request) bool {
	return a.Kind == b.Kind && a.Profile == b.Profile && a.Params.equal(b.Params)
}

func (p Params) equal(q Params) bool {
	if p.SubscriptionID != q.SubscriptionID || p.BillingAccountName != q.BillingAccountName ||
		p.BillingProfileName != q.BillingProfileName || p.InvoiceName != q.InvoiceName ||
		p.DownloadToken != q.DownloadToken || len(p.Documents) != len(q.Documents) ||
		p.DocumentName != q.DocumentName || p.PeriodStartDate != q.PeriodStartDate || p.PeriodEndDate != q.PeriodEndDate ||
		!slices.Equal(p.DocumentKinds, q.DocumentKinds) || p.costParams() != q.costParams() ||
		!slices.Equal(p.IncludeAccounts, q.IncludeAccounts) || !slices.Equal(p.ExcludeAccounts, q.ExcludeAccounts) ||
		!slices.Equal(p.AgreementTypes, q.AgreementTypes) || p.AccountNamePattern != q.AccountNamePattern {
		return false
	}
	for i := range p.Documents {
		if p.Documents[i] != q.Documents[i] {
			return false
		}
	}
	return true
}

// Limits on a request.
const (
	MaxLabels        = 16
	MaxLabelValueLen = 256
	MaxDocuments     = 50
	maxDocFieldLen   = 256
)

// Validate checks the request against the contract and the API's parameter
// patterns. It returns nil or a *ValidationError listing every problem.
func (r Request) Validate() error {
	var v validator
	if r.Version != Version {
		v.add("version", "version", fmt.Sprintf("must be %d, not %d", Version, r.Version))
	}
	v.match("id", r.ID, idPattern, "1 to 128 letters, digits, '-' or '_'")
	switch {
	case r.Kind == "":
		v.add("kind", "required", "is required")
	case !r.Kind.Valid():
		v.add("kind", "enum", fmt.Sprintf("unknown kind %q; one of %v", clip(string(r.Kind)), Kinds))
	default:
		r.Params.validate(r.Kind, &v)
	}
	if len(r.Labels) > MaxLabels {
		v.add("labels", "max_items", fmt.Sprintf("has %d labels, at most %d allowed", len(r.Labels), MaxLabels))
	}
	for _, k := range sortedKeys(r.Labels) {
		if !labelKeyPattern.MatchString(k) {
			v.add("labels", "pattern", fmt.Sprintf("key %q must match %s", clip(k), labelKeyPattern))
		}
		if val := r.Labels[k]; len(val) > MaxLabelValueLen || !utf8.ValidString(val) {
			v.add("labels."+k, "max_length", fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxLabelValueLen))
		}
	}
	if r.Profile != "" {
		v.match("profile", r.Profile, profilePattern, "a lower-case DNS label")
	}
	if r.Kind == KindEstate && len(r.ID) > MaxEstateIDLen {
		v.add("id", "max_length", fmt.Sprintf("an estate's id must be at most %d characters (its collections' ids add 17)", MaxEstateIDLen))
	}
	if r.Kind == KindCollection && len(r.ID) > MaxCollectionIDLen {
		v.add("id", "max_length", fmt.Sprintf("a collection's id must be at most %d characters (its children's ids add 17)", MaxCollectionIDLen))
	}
	if c := r.Collection; c != nil {
		switch {
		case r.Kind == KindEstate || r.Kind.Lists() || r.Kind.Discovers():
			v.add("collection", "not_allowed", fmt.Sprintf("kind %s cannot be a collection's child", r.Kind))
		case r.Kind == KindCollection && (!ValidID(c.ID) || len(c.ID) > MaxEstateIDLen):
			v.add("collection.id", "pattern", "a collection can only be an estate's child: must be an estate's id")
		case !ValidID(c.ID) || len(c.ID) > MaxCollectionIDLen:
			v.add("collection.id", "pattern", "must be a collection's id")
		case c.Index < 0:
			v.add("collection.index", "format", "must not be negative")
		}
	}
	return v.err()
}

func (p Params) validate(k Kind, v *validator) {
	want, optional := map[param]bool{}, map[param]bool{}
	for _, name := range kindParams[k] {
		want[name] = true
	}
	for _, name := range kindOptional[k] {
		optional[name] = true
	}
	present := map[param]bool{
		pSubscriptionID:     p.SubscriptionID != "",
		pBillingAccountName: p.BillingAccountName != "",
		pBillingProfileName: p.BillingProfileName != "",
		pInvoiceName:        p.InvoiceName != "",
		pDownloadToken:      p.DownloadToken != "",
		pDocuments:          p.Documents != nil,
		pDocumentName:       p.DocumentName != "",
		pPeriodStartDate:    p.PeriodStartDate != "",
		pPeriodEndDate:      p.PeriodEndDate != "",
		pDocumentKinds:      p.DocumentKinds != nil,
		pIncludeAccounts:    p.IncludeAccounts != nil,
		pExcludeAccounts:    p.ExcludeAccounts != nil,
		pAgreementTypes:     p.AgreementTypes != nil,
		pAccountNamePattern: p.AccountNamePattern != "",
	}
	for name, value := range p.costParamMap() {
		present[name] = value != ""
	}
	for _, name := range allParams {
		field := "params." + string(name)
		switch {
		case want[name] && !present[name]:
			v.add(field, "required", fmt.Sprintf("is required for kind %s", k))
		case !want[name] && !optional[name] && present[name]:
			v.add(field, "not_allowed", fmt.Sprintf("is not a parameter of kind %s", k))
		}
	}
	if present[pSubscriptionID] {
		v.match("params.subscriptionId", p.SubscriptionID, guidPattern, "a GUID")
	}
	switch k {
	case KindSubscriptionInvoice:
		if present[pInvoiceName] {
			v.match("params.invoiceName", p.InvoiceName, segmentPattern, "")
		}
		if present[pDownloadToken] {
			v.match("params.downloadToken", p.DownloadToken, tokenPattern, "")
		}
	case KindInvoiceSummary, KindInvoice:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
		}
		if present[pInvoiceName] {
			v.match("params.invoiceName", p.InvoiceName, invoicePattern, "")
		}
	case KindInvoicePriceSheet:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, cmAccountPattern, "")
		}
		if present[pBillingProfileName] {
			v.match("params.billingProfileName", p.BillingProfileName, cmProfilePattern, "")
		}
		if present[pInvoiceName] {
			v.match("params.invoiceName", p.InvoiceName, cmInvoicePattern, "")
		}
	case KindSubscriptionDocuments:
		if present[pDocuments] {
			validateDocuments(p.Documents, true, v)
		}
	case KindAccountDocument, KindInvoiceTransactions:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
		}
		if present[pInvoiceName] {
			v.match("params.invoiceName", p.InvoiceName, invoicePattern, "")
		}
	case KindSubscriptionDocument:
		if present[pInvoiceName] {
			v.match("params.invoiceName", p.InvoiceName, invoicePattern, "")
		}
	case KindAccountDocuments:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
		}
		if present[pDocuments] {
			validateDocuments(p.Documents, false, v)
		}
	case KindProfilePriceSheet:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, cmAccountPattern, "")
		}
		if present[pBillingProfileName] {
			v.match("params.billingProfileName", p.BillingProfileName, cmProfilePattern, "")
		}
	case KindAccountInvoices:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
		}
	case KindCollection:
		p.validateCollection(v)
	case KindEstate:
		p.validateEstate(v)
	case KindBillingProfiles, KindCustomers:
		if present[pBillingAccountName] {
			v.match("params.billingAccountName", p.BillingAccountName, accountPattern, "")
		}
		if present[pBillingProfileName] {
			v.match("params.billingProfileName", p.BillingProfileName, segmentPattern, "")
		}
	case KindCostDetails, KindReservationDetails, KindBenefitUtilization, KindAccountPriceSheet:
		p.validateCost(k, v)
		return // its period rules are its own
	}
	if present[pDocumentName] {
		validatePrintable("params.documentName", p.DocumentName, v)
	}
	validatePeriod(p.PeriodStartDate, p.PeriodEndDate, v)
}

// validatePeriod checks the optional period of a listing: ISO dates
// (YYYY-MM-DD), the start not after the end.
func validatePeriod(start, end string, v *validator) {
	var from, to time.Time
	var err error
	if start != "" {
		if from, err = time.Parse(time.DateOnly, start); err != nil {
			v.add("params.periodStartDate", "format", fmt.Sprintf("%q must be a date YYYY-MM-DD", clip(start)))
		}
	}
	if end != "" {
		if to, err = time.Parse(time.DateOnly, end); err != nil {
			v.add("params.periodEndDate", "format", fmt.Sprintf("%q must be a date YYYY-MM-DD", clip(end)))
		}
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		v.add("params.periodEndDate", "format", fmt.Sprintf("%s is before periodStartDate %s", end, start))
	}
}

// validatePrintable checks a free-form name Azure takes as a path segment
// or query value: 1 to 256 bytes of printable UTF-8.
func validatePrintable(field, value string, v *validator) {
	switch {
	case value == "":
		v.add(field, "required", "is required")
	case len(value) > maxDocFieldLen:
		v.add(field, "max_length", fmt.Sprintf("must be at most %d bytes", maxDocFieldLen))
	case !printable(value):
		v.add(field, "pattern", "must be printable UTF-8 without control characters")
	}
}

// validateDocuments checks a documents list; documentName is required when
// named is true.
func validateDocuments(docs []DocumentRef, named bool, v *validator) {
	switch {
	case len(docs) == 0:
		v.add("params.documents", "min_items", "must list at least one document")
	case len(docs) > MaxDocuments:
		v.add("params.documents", "max_items", fmt.Sprintf("lists %d documents, at most %d allowed", len(docs), MaxDocuments))
	}
	for i, d := range docs[:min(len(docs), MaxDocuments)] {
		for _, f := range []struct{ name, value string }{{"documentName", d.DocumentName}, {"invoiceName", d.InvoiceName}} {
			if f.value == "" && f.name == "documentName" && !named {
				continue
			}
			validatePrintable(fmt.Sprintf("params.documents[%d].%s", i, f.name), f.value, v)
		}
	}
}

type validator struct{ fields []FieldError }

func (v *validator) add(field, rule, msg string) {
	v.fields = append(v.fields, FieldError{Field: field, Rule: rule, Message: msg})
}

// match checks value against re; what describes the pattern for a human
// (the pattern itself is always named).
func (v *validator) match(field, value string, re *regexp.Regexp, what string) {
	switch {
	case value == "":
		v.add(field, "required", "is required")
	case !re.MatchString(value):
		msg := fmt.Sprintf("%q must match %s", clip(value), re)
		if what != "" {
			msg += " (" + what + ")"
		}
		v.add(field, "pattern", msg)
	}
}

func (v *validator) err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return &ValidationError{Fields: v.fields}
}

// clip shortens a caller's value before it is quoted in an error.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
