package operation

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// A collection (messages.KindCollection) is an operation in two parts. It
// lists its scope's invoices page by page (the Azure calls of the
// operation, as a listing's), keeping each page's documents in a chunk of
// its own (Step.Chunk, stored apart from the state, which grows by a count
// per page only); then, in PhaseCollecting, it starts one child request per
// document (Step.Spawn), never more than Machine.Window at once, and
// counts each child's end (ChildEnded) in a bitmap until every one has
// ended; Finish then makes its completion event from the children's
// outcomes. Every decision is a transition here; the worker stores the
// chunks, publishes the children and gathers their outcomes.

// PhaseCollecting: a collection listed every page and waits for its
// children.
const PhaseCollecting Phase = "collecting"

// The further actions of a collection.
const (
	// Spawn: publish the child requests Step.Spawn names (before storing
	// Next: a crash in between publishes them again, which their ids make
	// harmless), then store Next and acknowledge.
	Spawn Action = iota + 100
	// Finish: every child has ended: store Next (if any), gather the
	// children's outcomes and pass them to Machine.Finish.
	Finish
)

// Collection is a collection's progress, in its State.
type Collection struct {
	// Pages counts the documents kept from each listed page: chunk n (see
	// ChunkKey) holds page n's.
	Pages []int `json:"pages,omitempty"`
	// Invoices counts the invoices listed.
	Invoices int `json:"invoices"`
	// Total counts the documents (children) listed so far.
	Total int `json:"total"`
	// Spawned: the children [0, Spawned) were requested.
	Spawned int `json:"spawned"`
	// Ended has bit i set when child i has ended; Completed and Failed count
	// them by outcome.
	Ended     []byte `json:"ended,omitempty"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
	// Skipped counts the listed documents each page skipped (kept in the
	// page's skipped chunk, SkippedKey, when not zero), Listed every
	// document the invoices listed.
	Skipped []int `json:"skipped,omitempty"`
	Listed  int   `json:"listed,omitempty"`
	// SkippedScopes counts an estate's scopes it does not collect (ended
	// from the start).
	SkippedScopes int `json:"skippedScopes,omitempty"`
	// Listing is the discovery listing an estate is at: empty for its
	// billing accounts, then messages.KindSubscriptions.
	Listing messages.Kind `json:"listing,omitempty"`
}

// Skipped is a listed document a collection does not fetch, kept in its
// page's skipped chunk.
type Skipped struct {
	Invoice     string `json:"i"`
	Document    string `json:"d,omitempty"`
	DocKind     string `json:"k"`
	Reason      string `json:"r"`
	ExternalURL string `json:"u,omitempty"`
	// Month is the month of the invoice's date (YYYY-MM).
	Month string `json:"m"`
}

// SkippedKey is the key of page n's skipped documents of collection id.
func SkippedKey(id string, page int) string { return ChunkKey(id, page) + ".skipped" }

// Child is one listed document of a collection, kept in its page's chunk.
type Child struct {
	Invoice  string `json:"i"`
	Document string `json:"d"`
	DocKind  string `json:"k"`
	// Profile is the invoice's billing profile name, for a price sheet
	// or cost details.
	Profile string `json:"p,omitempty"`
	// Period is the invoice's billing period (YYYYMM), for an EA price
	// sheet or cost details; From and To a month of the collection's
	// period, for a subscription's cost details, or the whole period, for
	// reservation details.
	Period string `json:"bp,omitempty"`
	From   string `json:"f,omitempty"`
	To     string `json:"t,omitempty"`
	// Invalid explains why no request could be made for the document (its
	// names break the request rules): the child is failed from the start.
	Invalid string `json:"x,omitempty"`
	// Month is the month the document counts in (YYYY-MM): its invoice's
	// date's, or the start of the period of a report.
	Month string `json:"m,omitempty"`
	// Scope is an estate's child: the scope its collection is of. Skip,
	// when not empty, says why the estate does not collect it (ended from
	// the start).
	Scope *EstateScope `json:"s,omitempty"`
	Skip  string       `json:"sk,omitempty"`
}

// Chunk is the documents of one listed page, stored under Key, and the
// page's skipped documents, stored under SkippedKey when there are any.
type Chunk struct {
	Key        string
	Children   []Child
	SkippedKey string
	Skipped    []Skipped
}

// ChunkKey is the key of page n's chunk of collection id.
func ChunkKey(id string, page int) string { return id + "." + strconv.Itoa(page) }

// Range is a half-open range of child indexes.
type Range struct{ From, To int }

// HasEnded reports whether child i has ended.
func (c *Collection) HasEnded(i int) bool { return c.ended(i) }

// ended reports whether child i has ended.
func (c *Collection) ended(i int) bool {
	return i/8 < len(c.Ended) && c.Ended[i/8]&(1<<(i%8)) != 0
}

func (c *Collection) setEnded(i int) {
	for len(c.Ended) <= i/8 {
		c.Ended = append(c.Ended, 0)
	}
	c.Ended[i/8] |= 1 << (i % 8)
}

// InFlight counts the children requested and not yet ended.
func (c *Collection) InFlight() int {
	n := 0
	for i := range c.Spawned {
		if !c.ended(i) {
			n++
		}
	}
	return n
}

// Done reports whether every listed child has ended.
func (c *Collection) Done() bool { return c.Completed+c.Failed+c.SkippedScopes == c.Total }

// Locate returns the page holding child i and its place in that page.
func (c *Collection) Locate(i int) (page, at int, ok bool) {
	for p, n := range c.Pages {
		if i < n {
			return p, i, true
		}
		i -= n
	}
	return 0, 0, false
}

// ChildRequest is the request of a collection's child i: the download its
// kind of document takes (Summary by the summary download, Transactions by
// the transactions download, PriceSheet by the price sheet of the invoice,
// every other kind by the download by billing account or subscription with
// documentName), with the collection's profile and labels.
func ChildRequest(coll messages.Request, i int, c Child) messages.Request {
	if coll.Kind == messages.KindEstate {
		return EstateChildRequest(coll, i, c)
	}
	id := messages.ChildID(coll.ID, c.Invoice, c.Document)
	if c.Document == "" {
		// A document listed without a name: one per invoice and kind.
		id = messages.ChildID(coll.ID, c.Invoice, "\x00"+c.DocKind)
	}
	req := messages.Request{
		Version: messages.Version, ID: id,
		Profile: coll.Profile, Labels: coll.Labels, Archive: coll.Archive, Collection: &messages.ChildOf{ID: coll.ID, Index: i},
	}
	p := coll.Params
	switch {
	case c.DocKind == messages.DocPriceSheet && c.Profile == "" && c.Period != "":
		req.Kind = messages.KindAccountPriceSheet
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, BillingPeriod: c.Period}
	case c.DocKind == messages.DocPriceSheet:
		req.Kind = messages.KindInvoicePriceSheet
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, BillingProfileName: c.Profile, InvoiceName: c.Invoice}
	case c.DocKind == messages.DocCostDetails:
		req.Kind = messages.KindCostDetails
		switch {
		case p.SubscriptionID != "":
			req.Params = messages.Params{SubscriptionID: p.SubscriptionID, PeriodStartDate: c.From, PeriodEndDate: c.To}
		case c.Profile != "":
			req.Params = messages.Params{BillingAccountName: p.BillingAccountName, BillingProfileName: c.Profile, InvoiceName: c.Invoice}
		default:
			req.Params = messages.Params{BillingAccountName: p.BillingAccountName, BillingPeriod: c.Period}
		}
	case c.DocKind == messages.DocReservationDetails:
		req.Kind = messages.KindReservationDetails
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, PeriodStartDate: c.From, PeriodEndDate: c.To}
	case p.SubscriptionID != "":
		req.Kind = messages.KindSubscriptionDocument
		req.Params = messages.Params{SubscriptionID: p.SubscriptionID, InvoiceName: c.Invoice, DocumentName: c.Document}
	case c.DocKind == messages.DocSummary:
		req.Kind = messages.KindInvoiceSummary
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, InvoiceName: c.Invoice}
	case c.DocKind == messages.DocTransactions:
		req.Kind = messages.KindInvoiceTransactions
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, InvoiceName: c.Invoice}
	default:
		req.Kind = messages.KindAccountDocument
		req.Params = messages.Params{BillingAccountName: p.BillingAccountName, InvoiceName: c.Invoice, DocumentName: c.Document}
	}
	return req
}

// children picks a page's documents the collection fetches, and accounts
// for the others: every listed document is either a child or skipped
// with its reason (see skip). With each invoice come the reports asked for
// per invoice (PriceSheet, CostDetails); with the first page, the reports
// of the period (ReservationDetails, a subscription's CostDetails per
// month).
func children(coll messages.Request, base int, first bool, invoices []messages.Invoice) ([]Child, []Skipped) {
	var out []Child
	var skipped []Skipped
	add := func(c Child) {
		if err := ChildRequest(coll, base+len(out), c).Validate(); err != nil {
			c.Invalid = err.Error()
		}
		out = append(out, c)
	}
	p := coll.Params
	if first {
		// The period's own reports come first, with the first page.
		if p.Fetches(messages.DocReservationDetails) && p.BillingAccountName != "" {
			add(Child{Invoice: p.PeriodStartDate + "_" + p.PeriodEndDate, Document: messages.DocReservationDetails,
				DocKind: messages.DocReservationDetails, From: p.PeriodStartDate, To: p.PeriodEndDate, Month: monthOf(p.PeriodStartDate)})
		}
		if p.Fetches(messages.DocCostDetails) && p.SubscriptionID != "" {
			for _, m := range months(p.PeriodStartDate, p.PeriodEndDate) {
				add(Child{Invoice: m[0][:7], Document: messages.DocCostDetails, DocKind: messages.DocCostDetails, From: m[0], To: m[1], Month: m[0][:7]})
			}
		}
	}
	seen := map[[2]string]bool{}
	for _, inv := range invoices {
		profile, period := "", ""
		if inv.BillingProfileID != "" {
			profile = path.Base(inv.BillingProfileID)
		}
		if inv.PeriodStartDate != nil {
			period = inv.PeriodStartDate.UTC().Format("200601")
		}
		month := monthOf(p.PeriodStartDate)
		if inv.InvoiceDate != nil {
			month = inv.InvoiceDate.UTC().Format("2006-01")
		}
		if p.Fetches(messages.DocPriceSheet) && p.BillingAccountName != "" {
			add(Child{Invoice: inv.Name, Document: messages.DocPriceSheet, DocKind: messages.DocPriceSheet, Profile: profile, Period: period, Month: month})
		}
		if p.Fetches(messages.DocCostDetails) && p.BillingAccountName != "" {
			add(Child{Invoice: inv.Name, Document: messages.DocCostDetails, DocKind: messages.DocCostDetails, Profile: profile, Period: period, Month: month})
		}
		named := slices.ContainsFunc(inv.Documents, func(d messages.InvoiceDocument) bool {
			return d.Kind == messages.DocInvoice && d.Name != ""
		})
		for _, d := range inv.Documents {
			key := [2]string{inv.Name, d.Name}
			if d.Name == "" {
				key[1] = "\x00" + d.Kind
			}
			if reason := skip(p, d, named, seen[key]); reason != "" {
				skipped = append(skipped, Skipped{Invoice: inv.Name, Document: d.Name, DocKind: d.Kind,
					Reason: reason, ExternalURL: d.ExternalURL, Month: month})
				continue
			}
			seen[key] = true
			add(Child{Invoice: inv.Name, Document: d.Name, DocKind: d.Kind, Month: month})
		}
	}
	return out, skipped
}

// skip says why a collection with params p does not fetch listed document
// d (empty: it does): its kind is not asked for; it is an external
// source's (source ENF, or an externalUrl and neither name nor url); it
// has no name and the download without documentName (the invoice's
// default document) would not give it (only an Invoice is that default,
// and only when the invoice lists no named Invoice: named says it does;
// an EA summary or transactions file is fetched by the invoice alone);
// or it was fetched already (seen).
func skip(p messages.Params, d messages.InvoiceDocument, named, seen bool) string {
	switch {
	case !p.Fetches(d.Kind):
		return messages.SkipKindNotRequested
	case d.Source == "ENF" || d.ExternalURL != "" && d.Name == "" && d.URL == "":
		return messages.SkipExternal
	case d.Name != "" && seen:
		return messages.SkipDuplicate
	case d.Name != "":
		return ""
	case seen:
		return messages.SkipNoName // a second nameless document of the kind
	case d.Kind == messages.DocInvoice && !named:
		return ""
	case (d.Kind == messages.DocSummary || d.Kind == messages.DocTransactions) && p.SubscriptionID == "":
		return ""
	}
	return messages.SkipNoName
}

// monthOf is the month (YYYY-MM) of an ISO date.
func monthOf(date string) string { return date[:min(7, len(date))] }

// months splits a period (ISO dates, as a valid collection has them) into
// calendar months, each [first, last] day within the period; at most 13
// (what Cost Management keeps), the latest ones.
func months(start, end string) [][2]string {
	from, err1 := time.Parse(time.DateOnly, start)
	to, err2 := time.Parse(time.DateOnly, end)
	if err1 != nil || err2 != nil || to.Before(from) {
		return nil
	}
	var out [][2]string
	for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(to); m = m.AddDate(0, 1, 0) {
		first, last := m, m.AddDate(0, 1, -1)
		if first.Before(from) {
			first = from
		}
		if last.After(to) {
			last = to
		}
		out = append(out, [2]string{first.Format(time.DateOnly), last.Format(time.DateOnly)})
	}
	return out[max(0, len(out)-13):]
}

// collected records a listed page of a collection: its documents go into a
// chunk; then the next page, or the children.
func (m Machine) collected(st State, r *Result, now time.Time) Step {
	c := st.Collection
	if c == nil {
		c = &Collection{}
	} else {
		copied := *c
		copied.Pages, copied.Ended = append([]int(nil), c.Pages...), append([]byte(nil), c.Ended...)
		copied.Skipped = append([]int(nil), c.Skipped...)
		c = &copied
	}
	st.Collection = c
	kids, skipped := children(st.Request, c.Total, len(c.Pages) == 0, r.Invoices)
	if c.Total+len(kids) > m.MaxDocuments {
		m.fail(&st, messages.CodeTooMany, fmt.Sprintf("the collection lists more than %d documents (%d after %d pages); "+
			"nothing was downloaded: narrow the period, or the document kinds", m.MaxDocuments, c.Total+len(kids), len(c.Pages)+1), nil, false, now)
		return m.settle(&st)
	}
	chunk := &Chunk{Key: ChunkKey(st.Request.ID, len(c.Pages)), Children: kids}
	if len(skipped) > 0 {
		chunk.SkippedKey, chunk.Skipped = SkippedKey(st.Request.ID, len(c.Pages)), skipped
	}
	for len(c.Skipped) < len(c.Pages) {
		c.Skipped = append(c.Skipped, 0) // pages listed before skipped documents were counted
	}
	c.Skipped = append(c.Skipped, len(skipped))
	for _, inv := range r.Invoices {
		c.Listed += len(inv.Documents)
	}
	for i, k := range kids {
		if k.Invalid != "" {
			c.setEnded(c.Total + i)
			c.Failed++
		}
	}
	c.Pages = append(c.Pages, len(kids))
	c.Invoices += len(r.Invoices)
	c.Total += len(kids)
	if r.NextLink != "" {
		st.Location = r.NextLink
		m.claim(&st, now)
		return Step{Next: &st, Action: Call, Chunk: chunk}
	}
	st.Location, st.Phase = "", PhaseCollecting
	st.ClaimedBy, st.ClaimedUntil, st.UpdatedAt = "", time.Time{}, now
	step := m.fanOut(&st)
	step.Chunk = chunk
	return step
}

// shares reports whether the state's children take slots of the global
// window: a collection's do, when the window is on. An estate's children
// are collections, whose own children take the slots; were the estate to
// hold slots for them too, estates could hold every slot while their
// collections waited for one.
func (m Machine) shares(st *State) bool {
	return m.Slots > 0 && st.Request.Kind == messages.KindCollection
}

// fanOut decides what a collecting state does next: finish, request more
// children up to the window, or nothing (wait for ends).
func (m Machine) fanOut(st *State) Step {
	c := st.Collection
	if m.shares(st) {
		// The global window decides how many more (Granted), and is told
		// of the ends (which free slots), the last included.
		return Step{Next: st, Action: Share}
	}
	if c.Done() {
		return Step{Next: st, Action: Finish}
	}
	from, to := c.Spawned, c.Spawned
	window := m.Window
	if st.Request.Kind == messages.KindEstate && m.EstateWindow > 0 {
		window = m.EstateWindow
	}
	for room := max(window, 1) - c.InFlight(); to < c.Total && room > 0; to++ {
		if !c.ended(to) {
			room--
		}
	}
	if to == from {
		return Step{Next: st, Action: Ack}
	}
	c.Spawned = to
	return Step{Next: st, Action: Spawn, Spawn: &Range{From: from, To: to}}
}

// ChildEnded is the transition of a collection told that its child i
// ended (failed or not). A child told twice is counted once.
func (m Machine) ChildEnded(st State, i int, failed bool, now time.Time) Step {
	c := st.Collection
	switch {
	case st.Request.Kind != messages.KindCollection && st.Request.Kind != messages.KindEstate, i < 0:
		return Step{Action: Ack} // nothing to count
	case st.Phase.Terminal():
		// Counted already; a notice told again may be the one whose finish
		// stored the outcome and then failed to record or publish it.
		return Step{Action: Republish}
	case st.Phase == PhaseCollecting && i >= c.Total:
		return Step{Action: Ack} // not a child this collection made
	case st.Phase != PhaseCollecting || i >= c.Spawned:
		// The child was requested, and ended, before the state that
		// requested it was stored: come back when it is.
		return Step{Action: Retry, Delay: staleReadRetry}
	case c.ended(i) && m.shares(&st):
		return Step{Action: Share} // told again (a redelivery): ask again, which repairs a grant cut short
	case c.ended(i):
		if c.Done() {
			return Step{Action: Finish} // the finish did not get through before
		}
		return Step{Action: Ack}
	}
	copied := *c
	copied.Ended = append([]byte(nil), c.Ended...)
	c = &copied
	st.Collection = c
	c.setEnded(i)
	if failed {
		c.Failed++
	} else {
		c.Completed++
	}
	st.UpdatedAt = now
	return m.fanOut(&st)
}

// ChildEnd is what a collection learns of one child at its finish.
type ChildEnd struct {
	Child Child
	// Completed or Failed is the child's outcome event; both nil when its
	// state could not be found (expired, deleted, or the request was
	// rejected before it had one). Request is the request that state is
	// of.
	Completed *messages.Completed
	Failed    *messages.Failed
	Request   *messages.Request
}

// ErrNoChildState is the message of a child whose state was gone at the
// collection's finish.
var ErrNoChildState = errors.New("the child's state was not found when the collection ended " +
	"(expired, deleted, or the request was rejected before it had one: see its failure event)")

// Finish ends a collection whose children have all ended, with the event
// that lists them (ends[i] is child i's) and the listed documents it
// skipped, in listing order.
func (m Machine) Finish(st State, ends []ChildEnd, skipped []Skipped, now time.Time) Step {
	if st.Phase.Terminal() {
		return Step{Action: Republish}
	}
	if st.Request.Kind == messages.KindEstate {
		return m.finishEstate(st, ends, now)
	}
	c := st.Collection
	sum := messages.CollectionSummary{Documents: c.Total, Invoices: c.Invoices, Children: []messages.ChildOutcome{},
		Listed: c.Listed, Skipped: len(skipped), SkippedDocuments: []messages.SkippedDocument{}, Months: []messages.MonthCount{}}
	p := st.Request.Params
	// Every month of the period is counted, and only those: a document
	// dated outside the period (Azure's filter is its own) counts in the
	// period's nearest month, so that no month outside it gets a count the
	// collection did not list in full.
	months := periodMonths(p.PeriodStartDate, p.PeriodEndDate)
	byMonth := map[string]*messages.MonthCount{}
	for _, m := range months {
		byMonth[m] = &messages.MonthCount{Month: m}
	}
	count := func(month string) *messages.MonthCount {
		switch {
		case len(months) == 0:
			month = monthOf(p.PeriodStartDate)
		case month == "" || month < months[0]:
			month = months[0]
		case month > months[len(months)-1]:
			month = months[len(months)-1]
		}
		if byMonth[month] == nil {
			byMonth[month] = &messages.MonthCount{Month: month}
		}
		return byMonth[month]
	}
	for _, k := range skipped {
		mc := count(k.Month)
		mc.Skipped++
		if mc.Reasons == nil {
			mc.Reasons = map[string]int{}
		}
		mc.Reasons[k.Reason]++
		sum.SkippedDocuments = append(sum.SkippedDocuments, messages.SkippedDocument{InvoiceName: k.Invoice,
			DocumentName: k.Document, DocumentKind: k.DocKind, Reason: k.Reason, ExternalURL: k.ExternalURL})
	}
	var done, failed []messages.ChildOutcome
	for i, e := range ends {
		mc := count(e.Child.Month)
		mc.Documents++
		req := ChildRequest(st.Request, i, e.Child)
		o := messages.ChildOutcome{ID: req.ID, InvoiceName: e.Child.Invoice, DocumentName: e.Child.Document,
			DocumentKind: e.Child.DocKind, Kind: req.Kind, Month: mc.Month}
		// The state under the child's id is another request's: the child
		// was refused with id_conflict.
		taken := e.Request != nil && (e.Request.Collection == nil || *e.Request.Collection != *req.Collection)
		switch {
		case taken:
			o.Code, o.Message = messages.CodeIDConflict, fmt.Sprintf("the child's id %s is taken by another request (a %s)", req.ID, e.Request.Kind)
		case e.Completed != nil:
			o.Outcome, o.URL, o.ExpiryTime = messages.OutcomeCompleted, e.Completed.URL, e.Completed.ExpiryTime
			done = append(done, o)
			mc.Completed++
			continue
		case e.Child.Invalid != "":
			o.Code, o.Message = messages.CodeInvalidRequest, e.Child.Invalid
		case e.Failed != nil:
			o.Code, o.Message = e.Failed.Code, e.Failed.Message
		default:
			o.Code, o.Message = messages.CodeInternal, ErrNoChildState.Error()
		}
		o.Outcome = messages.OutcomeFailed
		failed = append(failed, o)
		mc.Failed++
	}
	sum.Completed, sum.Failed = len(done), len(failed)
	sum.Children = append(append(sum.Children, failed...), done...)
	for _, k := range slices.Sorted(maps.Keys(byMonth)) {
		sum.Months = append(sum.Months, *byMonth[k])
	}
	fit(&sum, len(failed))
	st.Collection = nil // its counts are in the event now
	st.Complete(messages.Completed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind, Collected: &sum,
		AcceptedAt: st.AcceptedAt, CompletedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}, now)
	return Step{Next: &st, Action: Publish}
}

// fit shortens a summary whose encoding passes MaxCollectionEventBytes:
// completed children lose their url, then are left out from the last.
func fit(sum *messages.CollectionSummary, failed int) {
	size := func() int { b, _ := json.Marshal(sum); return len(b) }
	if size() <= messages.MaxCollectionEventBytes {
		return
	}
	sum.Truncated = true
	for i := failed; i < len(sum.Children); i++ {
		sum.Children[i].URL = ""
	}
	for size() > messages.MaxCollectionEventBytes && len(sum.Children) > failed {
		cut := max(failed, len(sum.Children)-max(1, (len(sum.Children)-failed)/8))
		sum.Children = sum.Children[:cut]
	}
	for size() > messages.MaxCollectionEventBytes && len(sum.SkippedDocuments) > 0 {
		sum.SkippedDocuments = sum.SkippedDocuments[:len(sum.SkippedDocuments)-max(1, len(sum.SkippedDocuments)/8)]
	}
}

// maxPeriodMonths bounds the months a collection's event counts by.
const maxPeriodMonths = 120

// periodMonths lists the calendar months (YYYY-MM) a period of ISO dates
// touches, at most maxPeriodMonths (the earliest ones).
func periodMonths(start, end string) []string {
	from, err1 := time.Parse(time.DateOnly, start)
	to, err2 := time.Parse(time.DateOnly, end)
	if err1 != nil || err2 != nil || to.Before(from) {
		return nil
	}
	var out []string
	for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(to) && len(out) < maxPeriodMonths; m = m.AddDate(0, 1, 0) {
		out = append(out, m.Format("2006-01"))
	}
	return out
}
