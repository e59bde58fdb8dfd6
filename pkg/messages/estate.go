package messages

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
)

// The discovery kinds (docs/azure.md, "Discovery"): paged listings of the
// scopes a principal can see. Their completion event carries the items
// found, every page (Completed.Items).
const (
	// KindBillingAccounts lists the billing accounts the principal can see
	// (Microsoft.Billing 2024-04-01, Billing Accounts - List).
	KindBillingAccounts Kind = "billing-accounts"
	// KindBillingProfiles lists the billing profiles of a billing account
	// (Microsoft.Billing 2024-04-01, Billing Profiles - List By Billing
	// Account).
	KindBillingProfiles Kind = "billing-profiles"
	// KindCustomers lists the customers of a partner's billing account, or
	// of one of its billing profiles (Microsoft.Billing 2024-04-01,
	// Customers - List By Billing Account / By Billing Profile).
	KindCustomers Kind = "customers"
	// KindSubscriptions lists the principal's subscriptions (Resource
	// Manager 2022-12-01, Subscriptions - List).
	KindSubscriptions Kind = "subscriptions"
)

// KindEstate collects every scope a principal can see: it discovers the
// billing accounts and the pay-as-you-go subscriptions of its credential
// profile, starts one collection per scope (at most the collection window
// at once), and ends with one event saying, per scope, its collection and
// the outcome.
const KindEstate Kind = "estate"

// Scope kinds of an estate.
const (
	ScopeAccount      = "account"
	ScopeSubscription = "subscription"
)

// Outcomes of an estate's scope beside completed and failed.
const OutcomeSkipped = "skipped"

// MaxDiscovered bounds the items a discovery kind may find, and the scopes
// an estate may consider: one event carries them all. Past it the request
// fails with CodeTooMany.
const MaxDiscovered = 1000

// MaxEstateIDLen bounds an estate's id: its collections' ids add 17
// characters, and must still be a collection's id.
const MaxEstateIDLen = MaxCollectionIDLen - 17

// MaxEstateFilters bounds each of an estate's filter lists.
const MaxEstateFilters = 100

// Discovers reports whether the kind is a discovery listing; its
// completion event carries the items found.
func (k Kind) Discovers() bool {
	return k == KindBillingAccounts || k == KindBillingProfiles || k == KindCustomers || k == KindSubscriptions
}

// Discovered is one item a discovery kind found: a billing account, a
// billing profile, a customer or a subscription. Azure's enums (agreement
// types, statuses) are open: a value this code does not know is passed on
// as sent, and Resource keeps the item as Azure sent it.
type Discovered struct {
	// ID is the resource id; Name its last segment (a billing account's
	// name, such as 12345678 or GUID:GUID_YYYY-MM-DD; a subscription's id).
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	// AgreementType, AccountStatus and AccountType: a billing account's.
	AgreementType string `json:"agreementType,omitempty"`
	AccountStatus string `json:"accountStatus,omitempty"`
	AccountType   string `json:"accountType,omitempty"`
	// Status: a billing profile's or a customer's.
	Status string `json:"status,omitempty"`
	// SubscriptionID, State and QuotaID: a subscription's
	// (subscriptionPolicies.quotaId tells a pay-as-you-go subscription).
	SubscriptionID string `json:"subscriptionId,omitempty"`
	State          string `json:"state,omitempty"`
	QuotaID        string `json:"quotaId,omitempty"`
	TenantID       string `json:"tenantId,omitempty"`
	// Resource is the whole item as Azure sent it (every property, known
	// or not).
	Resource json.RawMessage `json:"resource,omitempty"`
}

// EstateSummary is what an estate's completion event says of its scopes.
type EstateSummary struct {
	// Scopes counts the scopes discovered (accounts and subscriptions);
	// Completed, Failed and Skipped count them by outcome.
	Scopes    int `json:"scopes"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	// Documents, DocumentsCompleted and DocumentsFailed add up the
	// scopes' collections.
	Documents          int `json:"documents"`
	DocumentsCompleted int `json:"documentsCompleted"`
	DocumentsFailed    int `json:"documentsFailed"`
	// Children lists every scope: failed ones first, then completed, then
	// skipped, each in discovery order.
	Children []ScopeOutcome `json:"children"`
}

// ScopeOutcome is one scope of an estate.
type ScopeOutcome struct {
	// Scope is account or subscription; ID the billing account's name or
	// the subscription's id.
	Scope         string `json:"scope"`
	ID            string `json:"id"`
	DisplayName   string `json:"displayName,omitempty"`
	AgreementType string `json:"agreementType,omitempty"`
	// CollectionID is the id of the scope's collection (none when
	// skipped).
	CollectionID string `json:"collectionId,omitempty"`
	// Outcome is completed (the collection completed, even with failed
	// documents), failed (the collection failed) or skipped (Message says
	// why).
	Outcome string `json:"outcome"`
	// Documents, Completed and Failed are the collection's counts.
	Documents int `json:"documents"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// Code and Message, for a failed or skipped scope.
	Code    Code   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// EstateChildID is the id of the collection an estate starts for a scope:
// the estate's id, '-', and 16 hex digits of a digest of the scope kind
// and id. The same scope of the same estate always gets the same id.
func EstateChildID(estate, scope, id string) string { return ChildID(estate, scope, id) }

// validateEstate checks an estate's params: a period, document kinds and
// filters.
func (p Params) validateEstate(v *validator) {
	if p.PeriodStartDate == "" {
		v.add("params.periodStartDate", "required", "is required for kind estate")
	}
	if p.PeriodEndDate == "" {
		v.add("params.periodEndDate", "required", "is required for kind estate")
	}
	p.validateDocumentKinds(v)
	for _, list := range []struct {
		field string
		items []string
	}{{"params.includeAccounts", p.IncludeAccounts}, {"params.excludeAccounts", p.ExcludeAccounts}, {"params.agreementTypes", p.AgreementTypes}} {
		if len(list.items) > MaxEstateFilters {
			v.add(list.field, "max_items", fmt.Sprintf("lists %d items, at most %d allowed", len(list.items), MaxEstateFilters))
		}
		for i, s := range list.items[:min(len(list.items), MaxEstateFilters)] {
			if s == "" || len(s) > 128 || !printable(s) {
				v.add(fmt.Sprintf("%s[%d]", list.field, i), "format", "must be 1 to 128 printable characters")
			}
		}
	}
	if p.AccountNamePattern != "" {
		if _, err := path.Match(p.AccountNamePattern, ""); err != nil || len(p.AccountNamePattern) > 256 {
			v.add("params.accountNamePattern", "format", "must be a shell pattern (*, ?, [a-z]) of at most 256 characters")
		}
	}
}

// EstateTakes reports whether an estate with params p collects the billing
// account d (its filters): "" when it does, or the reason it does not.
func (p Params) EstateTakes(d Discovered) string {
	name := d.Name
	if len(p.IncludeAccounts) > 0 && !contains(p.IncludeAccounts, name) {
		return "not among params.includeAccounts"
	}
	if contains(p.ExcludeAccounts, name) {
		return "among params.excludeAccounts"
	}
	if len(p.AgreementTypes) > 0 && !contains(p.AgreementTypes, d.AgreementType) {
		return fmt.Sprintf("agreement type %q is not among params.agreementTypes", d.AgreementType)
	}
	if p.AccountNamePattern != "" {
		if ok, _ := path.Match(p.AccountNamePattern, d.DisplayName); !ok {
			return fmt.Sprintf("display name %q does not match params.accountNamePattern", d.DisplayName)
		}
	}
	return ""
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }
