package operation

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// An estate (messages.KindEstate) is a collection of collections. It lists
// the billing accounts its principal can see, then the principal's
// subscriptions (the Azure calls of the operation, each page a call, as a
// listing's); each listed page's scopes go into a chunk of their own
// (ChunkKey, as a collection's documents do), each scope an EstateScope.
// Then, in PhaseCollecting, it starts one collection per scope
// (EstateChildRequest, its id derived from the estate's id and the
// scope), never more than Machine.Window at once, counts their ends as a
// collection counts its children's, and finishes with one event that
// lists every scope's outcome (FinishEstate).
//
// Which listed items are scopes: every billing account the filters take,
// but for those of the Microsoft Online Services Program (their invoices
// are their subscriptions'), and every pay-as-you-go subscription (its
// invoices under the billing account "default"). The others are kept as
// skipped scopes, with the reason, so the event accounts for every item
// listed.

// EstateScope is one scope an estate found: the shape in which the
// estate's chunks (bucket billing_collections, keys ChunkKey(estate id,
// page)) keep its discovered scopes, for anything that reads them later
// (coverage). Profile is the estate's credential profile ("" for the
// default one); Kind is messages.ScopeAccount or ScopeSubscription; ID the
// billing account's name or the subscription's id.
type EstateScope struct {
	Profile       string `json:"profile,omitempty"`
	Kind          string `json:"kind"`
	ID            string `json:"id"`
	Name          string `json:"name,omitempty"`
	AgreementType string `json:"agreementType,omitempty"`
}

// Agreement types Azure names (an open list: others are collected as
// billing accounts).
const (
	AgreementMOSP = "MicrosoftOnlineServicesProgram"
)

// PayAsYouGo reports whether a listed subscription is a pay-as-you-go
// one, by its offer's quota id (subscriptionPolicies.quotaId): its
// invoices are then under the billing account "default".
func PayAsYouGo(d messages.Discovered) bool {
	return strings.HasPrefix(strings.ToLower(d.QuotaID), "payasyougo")
}

// EstateChildRequest is the request of an estate's child i: the collection
// of its scope, for the estate's period and document kinds, with the
// estate's profile, labels and archive choice.
func EstateChildRequest(est messages.Request, i int, c Child) messages.Request {
	req := messages.Request{
		Version: messages.Version, Kind: messages.KindCollection,
		Profile: est.Profile, Labels: est.Labels, Archive: est.Archive, Collection: &messages.ChildOf{ID: est.ID, Index: i},
		Params: messages.Params{PeriodStartDate: est.Params.PeriodStartDate, PeriodEndDate: est.Params.PeriodEndDate,
			DocumentKinds: slices.Clone(est.Params.DocumentKinds)},
	}
	s := c.Scope
	if s == nil {
		return req
	}
	req.ID = messages.EstateChildID(est.ID, s.Kind, s.ID)
	if s.Kind == messages.ScopeSubscription {
		req.Params.SubscriptionID = s.ID
	} else {
		req.Params.BillingAccountName = s.ID
	}
	return req
}

// estateChildren makes the children of one listed page of an estate.
func estateChildren(est messages.Request, base int, listing messages.Kind, items []messages.Discovered) []Child {
	out := make([]Child, 0, len(items))
	seen := map[string]bool{}
	for _, d := range items {
		c := Child{Scope: &EstateScope{Profile: est.Profile, Kind: messages.ScopeAccount, ID: d.Name, Name: d.DisplayName, AgreementType: d.AgreementType}}
		if listing == messages.KindSubscriptions {
			c.Scope.Kind, c.Scope.ID, c.Scope.AgreementType = messages.ScopeSubscription, d.SubscriptionID, ""
			if !PayAsYouGo(d) {
				c.Skip = fmt.Sprintf("not a pay-as-you-go subscription (offer %q): its invoices are its billing account's", d.QuotaID)
			}
		} else {
			switch {
			case d.AgreementType == AgreementMOSP:
				c.Skip = "a Microsoft Online Services Program account: its invoices are its subscriptions' (each a scope of its own)"
			default:
				c.Skip = est.Params.EstateTakes(d)
			}
		}
		if key := c.Scope.Kind + "/" + c.Scope.ID; seen[key] && c.Skip == "" {
			// Its collection is the first one's (the same id).
			c.Skip = "listed twice on one page"
		} else {
			seen[key] = true
		}
		if c.Skip == "" {
			if err := EstateChildRequest(est, base+len(out), c).Validate(); err != nil {
				c.Invalid = err.Error()
			}
		}
		out = append(out, c)
	}
	return out
}

// discovered records a listed page of an estate: its scopes go into a
// chunk; then the next page, the subscriptions' listing, or the
// collections.
func (m Machine) discovered(st State, r *Result, now time.Time) Step {
	c := st.Collection
	if c == nil {
		c = &Collection{}
	} else {
		copied := *c
		copied.Pages, copied.Ended = append([]int(nil), c.Pages...), append([]byte(nil), c.Ended...)
		c = &copied
	}
	st.Collection = c
	listing := c.Listing
	if listing == "" {
		listing = messages.KindBillingAccounts
	}
	kids := estateChildren(st.Request, c.Total, listing, r.Items)
	if c.Total+len(kids) > messages.MaxDiscovered {
		m.fail(&st, messages.CodeTooMany, fmt.Sprintf("the estate lists more than %d billing accounts and subscriptions (%d after %d pages); "+
			"nothing was collected: narrow it with its filters, or collect the accounts one by one", messages.MaxDiscovered, c.Total+len(kids), len(c.Pages)+1),
			nil, false, now)
		return m.settle(&st)
	}
	chunk := &Chunk{Key: ChunkKey(st.Request.ID, len(c.Pages)), Children: kids}
	for i, k := range kids {
		switch {
		case k.Skip != "":
			c.setEnded(c.Total + i)
			c.SkippedScopes++
		case k.Invalid != "":
			c.setEnded(c.Total + i)
			c.Failed++
		}
	}
	c.Pages = append(c.Pages, len(kids))
	c.Total += len(kids)
	switch {
	case r.NextLink != "":
		st.Location = r.NextLink
		m.claim(&st, now)
		return Step{Next: &st, Action: Call, Chunk: chunk}
	case c.Listing == "":
		// The billing accounts are listed: now the subscriptions, from
		// their first page.
		c.Listing, st.Location = messages.KindSubscriptions, ""
		m.claim(&st, now)
		return Step{Next: &st, Action: Call, Chunk: chunk}
	}
	st.Location, st.Phase = "", PhaseCollecting
	st.ClaimedBy, st.ClaimedUntil, st.UpdatedAt = "", time.Time{}, now
	step := m.fanOut(&st)
	step.Chunk = chunk
	return step
}

// CallKind is the kind whose Azure operation st's next call goes to: an
// estate's current listing, or the request's own CallKind.
func (s *State) CallKind() messages.Kind {
	if s.Request.Kind == messages.KindEstate && s.Collection != nil && s.Collection.Listing != "" {
		return s.Collection.Listing
	}
	return s.Request.CallKind()
}

// finishEstate ends an estate whose collections have all ended, with the
// event that lists every scope (ends[i] is child i's).
func (m Machine) finishEstate(st State, ends []ChildEnd, now time.Time) Step {
	sum := messages.EstateSummary{Scopes: len(ends), Children: []messages.ScopeOutcome{}}
	var done, failed, skipped []messages.ScopeOutcome
	for i, e := range ends {
		s := e.Child.Scope
		if s == nil {
			s = &EstateScope{}
		}
		req := EstateChildRequest(st.Request, i, e.Child)
		o := messages.ScopeOutcome{Scope: s.Kind, ID: s.ID, DisplayName: s.Name, AgreementType: s.AgreementType, CollectionID: req.ID}
		taken := e.Request != nil && (e.Request.Collection == nil || *e.Request.Collection != *req.Collection)
		switch {
		case e.Child.Skip != "":
			o.CollectionID, o.Outcome, o.Message = "", messages.OutcomeSkipped, e.Child.Skip
			skipped = append(skipped, o)
			continue
		case taken:
			o.Code, o.Message = messages.CodeIDConflict, fmt.Sprintf("the collection's id %s is taken by another request (a %s)", req.ID, e.Request.Kind)
		case e.Completed != nil && e.Completed.Collected != nil:
			cs := e.Completed.Collected
			o.Outcome, o.Documents, o.Completed, o.Failed = messages.OutcomeCompleted, cs.Documents, cs.Completed, cs.Failed
			sum.Documents += cs.Documents
			sum.DocumentsCompleted += cs.Completed
			sum.DocumentsFailed += cs.Failed
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
	sum.Completed, sum.Failed, sum.Skipped = len(done), len(failed), len(skipped)
	sum.Children = slices.Concat(sum.Children, failed, done, skipped)
	st.Collection = nil
	st.Complete(messages.Completed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind, Estate: &sum,
		AcceptedAt: st.AcceptedAt, CompletedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}, now)
	return Step{Next: &st, Action: Publish}
}
