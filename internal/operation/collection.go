package operation

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
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
}

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
}

// Chunk is the documents of one listed page, stored under Key.
type Chunk struct {
	Key      string
	Children []Child
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
func (c *Collection) Done() bool { return c.Completed+c.Failed == c.Total }

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
	req := messages.Request{
		Version: messages.Version, ID: messages.ChildID(coll.ID, c.Invoice, c.Document),
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

// children picks a page's documents the collection fetches: those of the
// kinds it asked for that have a name, each once, and the reports asked
// for per invoice (PriceSheet, CostDetails); with the first page, the
// reports of the period (ReservationDetails, a subscription's CostDetails
// per month).
func children(coll messages.Request, base int, first bool, invoices []messages.Invoice) []Child {
	var out []Child
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
				DocKind: messages.DocReservationDetails, From: p.PeriodStartDate, To: p.PeriodEndDate})
		}
		if p.Fetches(messages.DocCostDetails) && p.SubscriptionID != "" {
			for _, m := range months(p.PeriodStartDate, p.PeriodEndDate) {
				add(Child{Invoice: m[0][:7], Document: messages.DocCostDetails, DocKind: messages.DocCostDetails, From: m[0], To: m[1]})
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
		if p.Fetches(messages.DocPriceSheet) && p.BillingAccountName != "" {
			add(Child{Invoice: inv.Name, Document: messages.DocPriceSheet, DocKind: messages.DocPriceSheet, Profile: profile, Period: period})
		}
		if p.Fetches(messages.DocCostDetails) && p.BillingAccountName != "" {
			add(Child{Invoice: inv.Name, Document: messages.DocCostDetails, DocKind: messages.DocCostDetails, Profile: profile, Period: period})
		}
		for _, d := range inv.Documents {
			key := [2]string{inv.Name, d.Name}
			if d.Name == "" || !coll.Params.Fetches(d.Kind) || seen[key] {
				continue
			}
			seen[key] = true
			add(Child{Invoice: inv.Name, Document: d.Name, DocKind: d.Kind})
		}
	}
	return out
}

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
		c = &copied
	}
	st.Collection = c
	kids := children(st.Request, c.Total, len(c.Pages) == 0, r.Invoices)
	if c.Total+len(kids) > m.MaxDocuments {
		m.fail(&st, messages.CodeTooMany, fmt.Sprintf("the collection lists more than %d documents (%d after %d pages); "+
			"nothing was downloaded: narrow the period, or the document kinds", m.MaxDocuments, c.Total+len(kids), len(c.Pages)+1), nil, false, now)
		return m.settle(&st)
	}
	chunk := &Chunk{Key: ChunkKey(st.Request.ID, len(c.Pages)), Children: kids}
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

// fanOut decides what a collecting state does next: finish, request more
// children up to the window, or nothing (wait for ends).
func (m Machine) fanOut(st *State) Step {
	c := st.Collection
	if m.Slots > 0 {
		// The global window decides how many more (Granted), and is told
		// of the ends (which free slots), the last included.
		return Step{Next: st, Action: Share}
	}
	if c.Done() {
		return Step{Next: st, Action: Finish}
	}
	from, to := c.Spawned, c.Spawned
	for room := max(m.Window, 1) - c.InFlight(); to < c.Total && room > 0; to++ {
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
	case st.Phase.Terminal(), st.Request.Kind != messages.KindCollection, i < 0:
		return Step{Action: Ack} // nothing to count
	case st.Phase == PhaseCollecting && i >= c.Total:
		return Step{Action: Ack} // not a child this collection made
	case st.Phase != PhaseCollecting || i >= c.Spawned:
		// The child was requested, and ended, before the state that
		// requested it was stored: come back when it is.
		return Step{Action: Retry, Delay: staleReadRetry}
	case c.ended(i) && m.Slots > 0:
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
// that lists them (ends[i] is child i's).
func (m Machine) Finish(st State, ends []ChildEnd, now time.Time) Step {
	if st.Phase.Terminal() {
		return Step{Action: Republish}
	}
	c := st.Collection
	sum := messages.CollectionSummary{Documents: c.Total, Invoices: c.Invoices, Children: []messages.ChildOutcome{}}
	var done, failed []messages.ChildOutcome
	for i, e := range ends {
		req := ChildRequest(st.Request, i, e.Child)
		o := messages.ChildOutcome{ID: req.ID, InvoiceName: e.Child.Invoice, DocumentName: e.Child.Document,
			DocumentKind: e.Child.DocKind, Kind: req.Kind}
		// The state under the child's id is another request's: the child
		// was refused with id_conflict.
		taken := e.Request != nil && (e.Request.Collection == nil || *e.Request.Collection != *req.Collection)
		switch {
		case taken:
			o.Code, o.Message = messages.CodeIDConflict, fmt.Sprintf("the child's id %s is taken by another request (a %s)", req.ID, e.Request.Kind)
		case e.Completed != nil:
			o.Outcome, o.URL, o.ExpiryTime = messages.OutcomeCompleted, e.Completed.URL, e.Completed.ExpiryTime
			done = append(done, o)
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
	}
	sum.Completed, sum.Failed = len(done), len(failed)
	sum.Children = append(append(sum.Children, failed...), done...)
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
}
