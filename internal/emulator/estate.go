package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The discovery listings (docs/azure.md, "Discovery"): Billing Accounts -
// List, Billing Profiles - List By Billing Account, Customers - List By
// Billing Account (and By Billing Profile), all Microsoft.Billing
// 2024-04-01, and Resource Manager's Subscriptions - List (2022-12-01).
// They serve the estate SetEstate gives, each caller (the client id its
// token was issued to) seeing its share, paged like the invoice listings
// (top, at most 50; a nextLink with a skip token).
const (
	OpBillingAccountList = "billing-account-list"
	OpBillingProfileList = "billing-profile-list"
	OpCustomerList       = "customer-list"
	OpSubscriptionList   = "subscription-list"
)

// Estate is a tenant's billing estate.
type Estate struct {
	Accounts      []EstateAccount
	Subscriptions []EstateSubscription
}

// EstateAccount is one billing account of an estate.
type EstateAccount struct {
	// Name is the account's name: digits (EA), GUID:GUID_YYYY-MM-DD (MCA,
	// MPA) or a GUID.
	Name, DisplayName string
	// AgreementType is EnterpriseAgreement, MicrosoftCustomerAgreement,
	// MicrosoftPartnerAgreement, MicrosoftOnlineServicesProgram, or any
	// other string (the enum is open).
	AgreementType string
	// AccountStatus: default Active.
	AccountStatus string
	// Profiles are its billing profiles' names; Customers a partner's
	// customers' names (each under the first profile, if any).
	Profiles, Customers []string
	// Principals are the client ids that see the account; empty: every
	// caller.
	Principals []string
	// ListingStatus, when not zero, is the status its invoice listing
	// answers (403: the principal may see the account, not its invoices).
	ListingStatus int
}

// EstateSubscription is one subscription of an estate.
type EstateSubscription struct {
	ID, DisplayName string
	// QuotaID is subscriptionPolicies.quotaId: PayAsYouGo_2014-09-01 for
	// a pay-as-you-go one, EnterpriseAgreement_2014-09-01, ...
	QuotaID string
	// State: default Enabled.
	State         string
	Principals    []string
	ListingStatus int
}

// SetEstate sets the estate the discovery listings serve (and the invoice
// listings' refusals); it survives Reset.
func (s *Server) SetEstate(e Estate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.estate = &e
}

func sees(principals []string, who string) bool {
	return len(principals) == 0 || slices.Contains(principals, who)
}

func init() {
	routes = append(routes,
		route{op: OpBillingAccountList, method: http.MethodGet, apiVersion: "2024-04-01", prefix: "/providers/Microsoft.Billing/",
			segs: []string{"billingAccounts"}},
		route{op: OpBillingProfileList, method: http.MethodGet, apiVersion: "2024-04-01",
			segs: strings.Split("{billingAccountName}/billingProfiles", "/"), patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern}},
		route{op: OpCustomerList, method: http.MethodGet, apiVersion: "2024-04-01",
			segs: strings.Split("{billingAccountName}/customers", "/"), patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern}},
		route{op: OpCustomerList, method: http.MethodGet, apiVersion: "2024-04-01",
			segs:     strings.Split("{billingAccountName}/billingProfiles/{billingProfileName}/customers", "/"),
			patterns: map[string]*regexp.Regexp{"billingAccountName": billingAccountPattern}},
		route{op: OpSubscriptionList, method: http.MethodGet, apiVersion: "2022-12-01", prefix: "/", segs: []string{"subscriptions"}},
	)
}

// discovery reports whether op is one of the discovery listings.
func discovery(op string) bool {
	return op == OpBillingAccountList || op == OpBillingProfileList || op == OpCustomerList || op == OpSubscriptionList
}

// discover answers a page of a discovery listing.
func (s *Server) discover(x *exchange, op *operation) {
	skip, top, ok := s.pageBounds(x)
	if !ok {
		return
	}
	s.mu.Lock()
	est := s.estate
	size := s.st.listing.PageSize
	s.mu.Unlock()
	if est == nil {
		est = &Estate{}
	}
	if top > 0 && top < size {
		size = top
	}
	var all []any
	who := x.principal
	switch op.op {
	case OpBillingAccountList:
		for _, a := range est.Accounts {
			if sees(a.Principals, who) {
				all = append(all, accountResource(a))
			}
		}
	case OpSubscriptionList:
		for _, sub := range est.Subscriptions {
			if sees(sub.Principals, who) {
				all = append(all, subscriptionResource(sub))
			}
		}
	default:
		i := slices.IndexFunc(est.Accounts, func(a EstateAccount) bool { return a.Name == op.billingAccount && sees(a.Principals, who) })
		if i < 0 {
			s.reject(x, http.StatusNotFound, "BillingAccountNotFound", "billingAccountName",
				"The billing account '%s' was not found, or the caller has no access to it.", op.billingAccount)
			return
		}
		a := est.Accounts[i]
		if op.op == OpBillingProfileList {
			for _, p := range a.Profiles {
				all = append(all, profileResource(a, p))
			}
		} else {
			for _, c := range a.Customers {
				if op.billingProfile == "" || len(a.Profiles) > 0 && a.Profiles[0] == op.billingProfile {
					all = append(all, customerResource(a, c))
				}
			}
		}
	}
	rep := s.take(x, op, skip == 0)
	if rep.Reset || rep.Body != nil || rep.Status != http.StatusOK {
		s.answer(x, op, rep)
		return
	}
	page := struct {
		Value    []any  `json:"value"`
		NextLink string `json:"nextLink,omitempty"`
	}{Value: []any{}}
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

// pageBounds reads a listing's skip token and top, answering 400 for bad
// ones.
func (s *Server) pageBounds(x *exchange) (skip, top int, ok bool) {
	if x.query.Has(skipTokenParam) {
		n, err := strconv.Atoi(x.query.Get(skipTokenParam))
		if err != nil || n < 0 {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", skipTokenParam, "The skip token is not valid.")
			return 0, 0, false
		}
		skip = n
	}
	if x.query.Has("top") {
		n, err := strconv.Atoi(x.query.Get("top"))
		if err != nil || n < 1 || n > maxTop {
			s.reject(x, http.StatusBadRequest, "InvalidParameter", "top", "The value of 'top' must be an integer from 1 to %d.", maxTop)
			return 0, 0, false
		}
		top = n
	}
	return skip, top, true
}

// listingRefused answers the invoice listing of a scope the estate refuses
// (its ListingStatus, or a scope the caller does not see), and reports
// whether it did.
func (s *Server) listingRefused(x *exchange, op *operation) bool {
	s.mu.Lock()
	est := s.estate
	s.mu.Unlock()
	if est == nil {
		return false
	}
	status, seen, found := 0, false, false
	if op.op == OpSubscriptionInvoiceList {
		for _, sub := range est.Subscriptions {
			if strings.EqualFold(sub.ID, op.subscriptionID) {
				found, seen, status = true, sees(sub.Principals, x.principal), sub.ListingStatus
			}
		}
	} else {
		for _, a := range est.Accounts {
			if a.Name == op.billingAccount {
				found, seen, status = true, sees(a.Principals, x.principal), a.ListingStatus
			}
		}
	}
	switch {
	case !found || seen && status == 0:
		return false
	case !seen || status == http.StatusForbidden:
		s.reject(x, http.StatusForbidden, "AuthorizationFailed", "",
			"The client '%s' does not have authorization to perform action 'Microsoft.Billing/billingAccounts/invoices/read' over scope '%s'.",
			x.principal, x.r.URL.Path)
	default:
		s.reject(x, status, "RequestFailed", "", "The listing failed with status %d.", status)
	}
	return true
}

func accountResource(a EstateAccount) map[string]any {
	status := a.AccountStatus
	if status == "" {
		status = "Active"
	}
	props := map[string]any{
		"displayName": a.DisplayName, "agreementType": a.AgreementType, "accountStatus": status,
		"accountType": "Enterprise", "hasReadAccess": true, "provisioningState": "Succeeded",
	}
	if a.AgreementType == "EnterpriseAgreement" {
		props["enrollmentDetails"] = map[string]any{"language": "en", "countryCode": "US", "currency": "USD", "channel": "EaDirect"}
	}
	return map[string]any{
		"id": armPrefix + a.Name, "name": a.Name, "type": "Microsoft.Billing/billingAccounts", "properties": props,
	}
}

func profileResource(a EstateAccount, p string) map[string]any {
	return map[string]any{
		"id": armPrefix + a.Name + "/billingProfiles/" + p, "name": p, "type": "Microsoft.Billing/billingAccounts/billingProfiles",
		"properties": map[string]any{"displayName": a.DisplayName + " " + p, "status": "Active", "currency": "USD", "billingRelationshipType": "Direct"},
	}
}

func customerResource(a EstateAccount, c string) map[string]any {
	id := armPrefix + a.Name + "/customers/" + c
	if len(a.Profiles) > 0 {
		id = armPrefix + a.Name + "/billingProfiles/" + a.Profiles[0] + "/customers/" + c
	}
	return map[string]any{
		"id": id, "name": c, "type": "Microsoft.Billing/billingAccounts/customers",
		"properties": map[string]any{"displayName": fmt.Sprintf("Customer %s", c), "status": "Active", "systemId": c},
	}
}

func subscriptionResource(sub EstateSubscription) map[string]any {
	state := sub.State
	if state == "" {
		state = "Enabled"
	}
	return map[string]any{
		"id": "/subscriptions/" + sub.ID, "authorizationSource": "RoleBased", "subscriptionId": sub.ID,
		"tenantId": "00000000-0000-0000-0000-000000000001", "displayName": sub.DisplayName, "state": state,
		"subscriptionPolicies": map[string]any{"quotaId": sub.QuotaID, "spendingLimit": "Off", "locationPlacementId": "Public_2014-09-01"},
	}
}
