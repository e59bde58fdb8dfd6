package operation_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

const mcaAccount = "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31"

func estateRequest(p messages.Params) messages.Request {
	p.PeriodStartDate, p.PeriodEndDate = "2026-10-01", "2026-10-31"
	return messages.Request{Version: 1, ID: "estate-1", Kind: messages.KindEstate, Profile: "contoso", Params: p}
}

func accounts(names ...string) []messages.Discovered {
	var out []messages.Discovered
	for _, n := range names {
		agreement := "EnterpriseAgreement"
		switch {
		case strings.Contains(n, ":"):
			agreement = "MicrosoftCustomerAgreement"
		case n == "mosp-guid":
			agreement = operation.AgreementMOSP
		}
		out = append(out, messages.Discovered{ID: "/providers/Microsoft.Billing/billingAccounts/" + n, Name: n, DisplayName: "Acct " + n, AgreementType: agreement})
	}
	return out
}

// TestEstateDiscovery walks an estate through its listings: accounts
// (two pages), then subscriptions, then its collections within the window.
// With the global window on, the same: the window bounds the collections'
// downloads, and an estate takes none of its slots (estates holding every
// slot would leave their collections waiting for ever).
func TestEstateDiscovery(t *testing.T) {
	t.Parallel()
	for _, slots := range []int{0, 8} {
		t.Run(fmt.Sprintf("global window %d", slots), func(t *testing.T) {
			t.Parallel()
			walkEstate(t, slots)
		})
	}
}

func walkEstate(t *testing.T, slots int) {
	m := collectionMachine()
	m.Window, m.EstateWindow = 5, 2 // an estate's collections go by their own window
	m.Slots = slots
	req := estateRequest(messages.Params{ExcludeAccounts: []string{"22222222"}})
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	st := operation.NewState(req, t0, time.Hour, 24*time.Hour)
	st.Phase, st.ClaimedBy, st.Unanswered = operation.PhaseStarting, me, 1
	if got := st.CallKind(); got != messages.KindBillingAccounts {
		t.Fatalf("first call %s, want billing accounts", got)
	}
	page := func(items []messages.Discovered, link string) operation.Answer {
		return operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Items: items, NextLink: link}}
	}
	next := "https://management.azure.com/providers/Microsoft.Billing/billingAccounts?api-version=2024-04-01&$skiptoken=2"

	// Accounts, page 1 of 2: the next page.
	step := m.Answer(st, page(accounts("11111111", mcaAccount), next), t0)
	if step.Action != operation.Call || step.Next.Location != next || step.Chunk == nil || len(step.Chunk.Children) != 2 ||
		step.Chunk.Key != operation.ChunkKey("estate-1", 0) {
		t.Fatalf("page 1: %+v", step)
	}
	kid := step.Chunk.Children[1]
	if kid.Scope == nil || *kid.Scope != (operation.EstateScope{Profile: "contoso", Kind: messages.ScopeAccount, ID: mcaAccount,
		Name: "Acct " + mcaAccount, AgreementType: "MicrosoftCustomerAgreement"}) || kid.Skip != "" || kid.Invalid != "" {
		t.Fatalf("MCA scope %+v", kid)
	}
	// Accounts, last page: an excluded account and an MOSP one are
	// skipped; then the subscriptions' listing, from its first page.
	step = m.Answer(*step.Next, page(accounts("22222222", "mosp-guid"), ""), t0)
	if step.Action != operation.Call || step.Next.Location != "" || step.Next.CallKind() != messages.KindSubscriptions ||
		step.Next.Phase != operation.PhaseStarting || step.Next.Collection.SkippedScopes != 2 {
		t.Fatalf("last accounts page: %+v %+v", step, step.Next.Collection)
	}
	if k := step.Chunk.Children; !strings.Contains(k[0].Skip, "excludeAccounts") || !strings.Contains(k[1].Skip, "Online Services") {
		t.Errorf("skips %q %q", k[0].Skip, k[1].Skip)
	}
	// Subscriptions: a pay-as-you-go one is a scope, an EA one skipped;
	// then the window's first two collections.
	subs := []messages.Discovered{
		{ID: "/subscriptions/a", Name: "11111111-2222-3333-4444-555555555555", SubscriptionID: "11111111-2222-3333-4444-555555555555", QuotaID: "PayAsYouGo_2014-09-01"},
		{ID: "/subscriptions/b", Name: "21111111-2222-3333-4444-555555555555", SubscriptionID: "21111111-2222-3333-4444-555555555555", QuotaID: "EnterpriseAgreement_2014-09-01"},
	}
	st = *step.Next
	st.Unanswered = 1
	step = m.Answer(st, page(subs, ""), t0)
	c := step.Next.Collection
	if step.Action != operation.Spawn || step.Next.Phase != operation.PhaseCollecting || c.Total != 6 || c.SkippedScopes != 3 ||
		*step.Spawn != (operation.Range{From: 0, To: 2}) {
		t.Fatalf("subscriptions: %+v %+v", step, c)
	}
	// The children are collections with ids from the estate and the scope.
	child := operation.ChildRequest(req, 1, kid)
	if child.Kind != messages.KindCollection || child.ID != messages.EstateChildID("estate-1", messages.ScopeAccount, mcaAccount) ||
		child.Params.BillingAccountName != mcaAccount || child.Params.PeriodStartDate != "2026-10-01" || child.Profile != "contoso" ||
		*child.Collection != (messages.ChildOf{ID: "estate-1", Index: 1}) {
		t.Fatalf("child %+v", child)
	}
	if err := child.Validate(); err != nil {
		t.Errorf("the child collection is refused: %v", err)
	}
	// Collection 0 ends: the next scope that is not skipped (the
	// subscription at 4) is started; skipped ones are never requested.
	step = m.ChildEnded(*step.Next, 0, false, t0)
	if step.Action != operation.Spawn || *step.Spawn != (operation.Range{From: 2, To: 5}) {
		t.Fatalf("after an end: %+v", step)
	}
	// Collection 1 ends: the range left holds a skipped scope only (the
	// worker requests nothing for it).
	step = m.ChildEnded(*step.Next, 1, true, t0)
	if step.Action != operation.Spawn || *step.Spawn != (operation.Range{From: 5, To: 6}) || step.Next.Collection.InFlight() != 1 {
		t.Fatalf("after the second end: %+v", step)
	}
	step = m.ChildEnded(*step.Next, 4, false, t0)
	if step.Action != operation.Finish {
		t.Fatalf("every scope ended: %+v", step)
	}
}

// An account listed twice on a page is collected once: the second is
// skipped (its collection would have the first one's id, and never end on
// its own).
func TestEstateDuplicateScope(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	st := operation.NewState(estateRequest(messages.Params{}), t0, time.Hour, 24*time.Hour)
	st.Phase, st.ClaimedBy, st.Unanswered = operation.PhaseStarting, me, 1
	step := m.Answer(st, operation.Answer{Outcome: operation.Done, Status: 200,
		Result: &operation.Result{Items: accounts("11111111", "22222222", "11111111")}}, t0)
	k := step.Chunk.Children
	if len(k) != 3 || k[0].Skip != "" || k[1].Skip != "" || k[2].Skip != "listed twice on one page" || step.Next.Collection.SkippedScopes != 1 {
		t.Fatalf("children %+v, collection %+v", k, step.Next.Collection)
	}
}

func TestEstateFinish(t *testing.T) {
	t.Parallel()
	m := collectionMachine()
	req := estateRequest(messages.Params{})
	st := operation.NewState(req, t0, time.Hour, 24*time.Hour)
	st.Phase = operation.PhaseCollecting
	st.Collection = &operation.Collection{Pages: []int{4}, Total: 4, Spawned: 4, Completed: 1, Failed: 2, SkippedScopes: 1}
	scope := func(kind, id string) *operation.EstateScope {
		return &operation.EstateScope{Kind: kind, ID: id, Name: "n-" + id}
	}
	ends := []operation.ChildEnd{
		{Child: operation.Child{Scope: scope(messages.ScopeAccount, "11111111")},
			Completed: &messages.Completed{Collected: &messages.CollectionSummary{Documents: 5, Completed: 4, Failed: 1}}},
		{Child: operation.Child{Scope: scope(messages.ScopeAccount, "22222222")},
			Failed: &messages.Failed{Code: messages.CodeAccessDenied, Message: "403"}},
		{Child: operation.Child{Scope: scope(messages.ScopeSubscription, "33333333-2222-3333-4444-555555555555")}}, // state gone
		{Child: operation.Child{Scope: scope(messages.ScopeAccount, "mosp"), Skip: "MOSP"}},
	}
	step := m.Finish(st, ends, nil, t0)
	ev := step.Next.Completed
	if step.Action != operation.Publish || ev == nil || ev.Estate == nil || ev.Collected != nil {
		t.Fatalf("finish: %+v", step)
	}
	e := ev.Estate
	if e.Scopes != 4 || e.Completed != 1 || e.Failed != 2 || e.Skipped != 1 || e.Documents != 5 || e.DocumentsCompleted != 4 || e.DocumentsFailed != 1 {
		t.Fatalf("summary %+v", e)
	}
	// Failed first, then completed, then skipped.
	order := []string{e.Children[0].ID, e.Children[1].ID, e.Children[2].ID, e.Children[3].ID}
	if order[0] != "22222222" || order[2] != "11111111" || order[3] != "mosp" || e.Children[1].Code != messages.CodeInternal {
		t.Errorf("children %+v", e.Children)
	}
	if c := e.Children[2]; c.CollectionID != messages.EstateChildID("estate-1", messages.ScopeAccount, "11111111") || c.Documents != 5 {
		t.Errorf("completed scope %+v", c)
	}
	if s := e.Children[3]; s.CollectionID != "" || s.Outcome != messages.OutcomeSkipped || s.Message != "MOSP" {
		t.Errorf("skipped scope %+v", s)
	}
}

func TestEstateValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		mutate func(*messages.Request)
		field  string
	}{
		{"no period", func(r *messages.Request) { r.Params.PeriodEndDate = "" }, "params.periodEndDate"},
		{"an account param", func(r *messages.Request) { r.Params.BillingAccountName = "12345678" }, "params.billingAccountName"},
		{"bad pattern", func(r *messages.Request) { r.Params.AccountNamePattern = "[" }, "params.accountNamePattern"},
		{"empty filter item", func(r *messages.Request) { r.Params.IncludeAccounts = []string{""} }, "params.includeAccounts[0]"},
		{"long id", func(r *messages.Request) { r.ID = strings.Repeat("e", messages.MaxEstateIDLen+1) }, "id"},
		{"child of a collection", func(r *messages.Request) { r.Collection = &messages.ChildOf{ID: "x"} }, "collection"},
	} {
		req := estateRequest(messages.Params{})
		c.mutate(&req)
		err := req.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want a problem with %s", c.name, err, c.field)
		}
	}
	// A collection may be an estate's child, not a collection's.
	coll := collectionRequest()
	coll.Collection = &messages.ChildOf{ID: strings.Repeat("e", messages.MaxEstateIDLen+1)}
	if err := coll.Validate(); err == nil {
		t.Error("a collection child of a too-long id was taken")
	}
	coll.Collection.ID = "estate-1"
	if err := coll.Validate(); err != nil {
		t.Errorf("an estate's collection refused: %v", err)
	}
}
