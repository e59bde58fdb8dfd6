package emulator

import (
	"crypto/sha256"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The listings (Invoices - List By Billing Account / By Billing Subscription) serve invoices
// made up from the scope's name: the same scope and period always list the same invoices,
// across restarts and processes. Each month of the period has Options.InvoicesPerMonth
// invoices (default 3), each with a mix of documents (see invoiceDocuments), listed
// Options.PageSize to a page (default 5, or the request's top if smaller) with a nextLink.

// Listing defaults and bounds.
const (
	DefaultPageSize         = 5
	DefaultInvoicesPerMonth = 3
	maxListedMonths         = 36 // a longer period is refused, as a stand-in for Azure's own limits
	maxTop                  = 50
	maxDocumentName         = 256
	skipTokenParam          = "$skiptoken"
	// MissingDocumentPrefix starts the names of documents that are listed but whose download
	// fails with 404 DocumentNotFound (a partial collection).
	MissingDocumentPrefix = "GONE-"
)

// missingDocument reports whether a download of document doc answers 404.
func missingDocument(doc string) bool { return strings.HasPrefix(doc, MissingDocumentPrefix) }

func printableText(s string) bool {
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

// listingSettings are the listing's current page size and invoices per month.
type listingSettings struct {
	PageSize         int `json:"pageSize"`
	InvoicesPerMonth int `json:"invoicesPerMonth"`
	// Unnamed adds the documents a worker cannot simply fetch by name (see
	// unnamedDocuments).
	Unnamed bool `json:"unnamed,omitempty"`
}

// SetUnnamedDocuments turns on or off, from the next call on, the
// listings' documents without a name or kept by an external source (see
// unnamedDocuments).
func (s *Server) SetUnnamedDocuments(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.listing.Unnamed = on
}

// ExternalDocumentURL is the externalUrl of invoice's ENF document in a
// listing with unnamed documents.
func ExternalDocumentURL(invoice string) string { return "https://nfe.invalid/documents/" + invoice }

// unnamedDocuments changes the k-th invoice's documents as Azure's listings sometimes have
// them: every third invoice's Invoice document has no name (its download without
// documentName gives it); the next one lists also a tax receipt without a name; every
// other one lists an electronic invoice of Brazil's ENF source, with only an externalUrl.
func unnamedDocuments(name string, k int, docs []invoiceDocument) []invoiceDocument {
	switch k % 3 {
	case 0:
		docs[0].Name, docs[0].DocumentNumbers = "", nil
	case 1:
		docs = append(docs, invoiceDocument{Kind: "TaxReceipt", Source: "DRS"})
	}
	if k%2 == 1 {
		docs = append(docs, invoiceDocument{Kind: "Invoice", Source: "ENF", ExternalURL: ExternalDocumentURL(name)})
	}
	return docs
}

// SetListing changes the page size and the number of invoices per month of the listings, from
// the next call on; zero keeps a value.
func (s *Server) SetListing(pageSize, invoicesPerMonth int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pageSize > 0 {
		s.st.listing.PageSize = pageSize
	}
	if invoicesPerMonth > 0 {
		s.st.listing.InvoicesPerMonth = invoicesPerMonth
	}
}

// list answers a page of a listing: validation of the period, then the script's next reply
// (a 200 serves the page).
func (s *Server) list(x *exchange, op *operation) {
	from, to, problem, target := listPeriod(x.query, s.now())
	if problem != "" {
		s.reject(x, http.StatusBadRequest, "InvalidParameter", target, "%s", problem)
		return
	}
	skip := 0
	if x.query.Has(skipTokenParam) {
		n, err := strconv.Atoi(x.query.Get(skipTokenParam))
		if err != nil || n < 0 {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", skipTokenParam, "The skip token is not valid.")
			return
		}
		skip = n
	}
	top := 0
	if x.query.Has("top") {
		n, err := strconv.Atoi(x.query.Get("top"))
		if err != nil || n < 1 || n > maxTop {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", "top", "The value of 'top' must be an integer from 1 to %d.", maxTop)
			return
		}
		top = n
	}
	rep := s.take(x, op, skip == 0)
	if rep.Reset || rep.Body != nil || rep.Status != http.StatusOK {
		s.answer(x, op, rep)
		return
	}
	s.mu.Lock()
	settings := s.st.listing
	s.mu.Unlock()
	size := settings.PageSize
	if top > 0 && top < size {
		size = top
	}
	scope := op.billingAccount
	if op.op == OpSubscriptionInvoiceList {
		scope = "default/billingSubscriptions/" + op.subscriptionID
	}
	all := listedInvoices(scope, op.op == OpSubscriptionInvoiceList, op.subscriptionID, from, to, settings.InvoicesPerMonth)
	if settings.Unnamed {
		for k := range all {
			all[k].Properties.Documents = unnamedDocuments(all[k].Name, k, all[k].Properties.Documents)
		}
	}
	page := struct {
		Value    []invoice `json:"value"`
		NextLink string    `json:"nextLink,omitempty"`
	}{Value: []invoice{}}
	if skip < len(all) {
		page.Value = all[skip:min(skip+size, len(all))]
	}
	if end := skip + size; end < len(all) {
		q := url.Values{}
		for k, v := range x.query {
			q[k] = v
		}
		q.Set(skipTokenParam, strconv.Itoa(end))
		page.NextLink = s.base(x.r) + x.r.URL.Path + "?" + q.Encode()
	}
	if !s.wait(x.r, time.Duration(rep.Delay)) {
		panic(http.ErrAbortHandler)
	}
	for k, v := range rep.Header {
		x.w.Header().Set(k, v)
	}
	writeRaw(x.w, http.StatusOK, jsonType, marshal(page))
}

// listPeriod reads periodStartDate and periodEndDate (ISO dates); without them the period is
// the twelve months up to now.
func listPeriod(q url.Values, now time.Time) (from, to time.Time, problem, target string) {
	to = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	from = to.AddDate(-1, 0, 0)
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"periodStartDate", &from}, {"periodEndDate", &to}} {
		if !q.Has(p.name) {
			continue
		}
		t, err := time.Parse(time.DateOnly, q.Get(p.name))
		if err != nil {
			return from, to, "The value of '" + p.name + "' is not a valid date (yyyy-MM-dd).", p.name
		}
		*p.dst = t
	}
	switch {
	case to.Before(from):
		return from, to, "periodEndDate must not be before periodStartDate.", "periodEndDate"
	case to.Sub(from) > maxListedMonths*31*24*time.Hour:
		return from, to, "The period must not be longer than " + strconv.Itoa(maxListedMonths) + " months.", "periodStartDate"
	}
	return from, to, "", ""
}

// listedInvoices makes the invoices of scope dated within [from, to], in date order.
func listedInvoices(scope string, subscription bool, subscriptionID string, from, to time.Time, perMonth int) []invoice {
	var out []invoice
	month := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC)
	for k := 0; !month.After(to); month = month.AddDate(0, 1, 0) {
		for i := range perMonth {
			date := month.AddDate(0, 0, 4+i*20/perMonth) // the 5th to the 24th
			if perMonth <= 20 {
				date = month.AddDate(0, 0, 4+i)
			}
			if date.Before(from) || date.After(to) {
				continue
			}
			name := invoiceNameFor(scope, date, i)
			inv := invoice{
				ID:   armPrefix + scope + "/invoices/" + name,
				Name: name,
				Type: "Microsoft.Billing/billingAccounts/invoices",
				Properties: invoiceProperties{
					AmountDue:              amount{Currency: "USD", Value: 0},
					BilledAmount:           amount{Currency: "USD", Value: float64(100 + 10*k)},
					BillingProfileID:       armPrefix + scope + "/billingProfiles/EMUL-ATOR-BG7-TGB",
					Documents:              invoiceDocuments(name, k),
					DocumentType:           "Invoice",
					DueDate:                date.AddDate(0, 0, 30).Format(time.RFC3339),
					InvoiceDate:            date.Format(time.RFC3339),
					InvoicePeriodStartDate: month.AddDate(0, -1, 0).Format(time.RFC3339),
					InvoicePeriodEndDate:   month.AddDate(0, 0, -1).Format(time.RFC3339),
					InvoiceType:            "AzureServices",
					IsMonthlyInvoice:       true,
					Payments:               []struct{}{},
					Status:                 []string{"Paid", "Due", "PastDue", "Paid"}[k%4], // PastDue: not in the spec's enum
					SubTotal:               amount{Currency: "USD", Value: float64(100 + 10*k)},
					TaxAmount:              amount{Currency: "USD", Value: 0},
					TotalAmount:            amount{Currency: "USD", Value: float64(100 + 10*k)},
				},
			}
			if subscription {
				inv.Properties.SubscriptionID = subscriptionID
			}
			out = append(out, inv)
			k++
		}
	}
	return out
}

// invoiceNameFor makes an invoice name that passes the 2024-04-01 pattern: G and nine letters
// or digits, from a digest of the scope, the date and the index.
func invoiceNameFor(scope string, date time.Time, i int) string {
	sum := sha256.Sum256([]byte(scope + "|" + date.Format(time.DateOnly) + "|" + strconv.Itoa(i)))
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := []byte("G000000000")
	for j := 1; j < len(b); j++ {
		b[j] = alphabet[int(sum[j])%len(alphabet)]
	}
	return string(b)
}

// invoiceDocuments is the k-th invoice's mix: always the invoice; then, by k, a tax receipt,
// a credit note, an EA summary and transactions file, a void note, a document of a kind the
// specification does not list, and a tax receipt that is listed but whose download fails.
func invoiceDocuments(name string, k int) []invoiceDocument {
	doc := func(kind, docName string) invoiceDocument {
		return invoiceDocument{Kind: kind, Name: docName, Source: "DRS", DocumentNumbers: []string{docName}}
	}
	docs := []invoiceDocument{doc("Invoice", name)}
	if k%2 == 0 {
		docs = append(docs, doc("TaxReceipt", "TR-"+name))
	}
	if k%3 == 0 {
		docs = append(docs, doc("CreditNote", "CN-"+name))
	}
	if k%4 == 1 {
		docs = append(docs, doc("Summary", "SUM-"+name), doc("Transactions", "TX-"+name))
	}
	if k%5 == 2 {
		docs = append(docs, doc("VoidNote", "VN-"+name))
	}
	if k%6 == 5 {
		docs = append(docs, doc("Statement", "ST-"+name)) // a kind the specification does not list
	}
	if k%7 == 3 {
		docs = append(docs, doc("TaxReceipt", MissingDocumentPrefix+name))
	}
	return docs
}
