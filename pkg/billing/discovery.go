package billing

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/azbilling/worker/pkg/messages"
)

// APIVersion20221201 is the Resource Manager version of Subscriptions -
// List.
const APIVersion20221201 = "2022-12-01"

// ShapeDiscoveryList is one page of a discovery listing: {value: [item],
// nextLink}, the item a billing account, billing profile, customer or
// subscription.
const ShapeDiscoveryList ResultShape = "DiscoveryListResult"

func init() {
	for _, op := range []*Operation{
		{
			Kind: messages.KindBillingAccounts, Name: "BillingAccounts_List",
			path: func(messages.Params) string { return strings.TrimSuffix(billingAccounts, "/") },
		},
		{
			Kind: messages.KindBillingProfiles, Name: "BillingProfiles_ListByBillingAccount",
			path: func(p messages.Params) string {
				return billingAccounts + seg(p.BillingAccountName) + "/billingProfiles"
			},
		},
		{
			Kind: messages.KindCustomers, Name: "Customers_ListByBillingAccount",
			path: func(p messages.Params) string {
				if p.BillingProfileName != "" {
					return billingAccounts + seg(p.BillingAccountName) + "/billingProfiles/" + seg(p.BillingProfileName) + "/customers"
				}
				return billingAccounts + seg(p.BillingAccountName) + "/customers"
			},
		},
		{
			Kind: messages.KindSubscriptions, Name: "Subscriptions_List", APIVersion: APIVersion20221201,
			path: func(messages.Params) string { return "/subscriptions" },
		},
	} {
		op.Method, op.Result = http.MethodGet, ShapeDiscoveryList
		if op.APIVersion == "" {
			op.APIVersion = APIVersion20240401
		}
		operations[op.Kind] = op
	}
}

// discoveryItem is the part of a listed resource the worker reads; the
// rest is kept in Properties.
type discoveryItem struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Properties  json.RawMessage `json:"properties"`
	DisplayName string          `json:"displayName"`
	// A subscription's (Resource Manager puts them at the top level).
	SubscriptionID string `json:"subscriptionId"`
	TenantID       string `json:"tenantId"`
	State          string `json:"state"`
	Policies       struct {
		QuotaID string `json:"quotaId"`
	} `json:"subscriptionPolicies"`
}

type discoveryProps struct {
	DisplayName   string `json:"displayName"`
	AgreementType string `json:"agreementType"`
	AccountStatus string `json:"accountStatus"`
	AccountType   string `json:"accountType"`
	Status        string `json:"status"`
}

// parseDiscoveryList reads one page of a discovery listing. Enums are
// strings: a value Azure adds passes as sent.
func parseDiscoveryList(body []byte) (Result, error) {
	var page struct {
		Value    *[]json.RawMessage `json:"value"`
		NextLink string             `json:"nextLink"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return Result{}, &MalformedError{Status: 200, Reason: "not a listing page: " + jsonProblem(err)}
	}
	if page.Value == nil {
		return Result{}, &MalformedError{Status: 200, Reason: "listing page without value"}
	}
	res := Result{NextLink: page.NextLink, Items: make([]messages.Discovered, 0, len(*page.Value))}
	for i, raw := range *page.Value {
		d, err := readDiscovered(raw)
		if err != nil {
			var me *MalformedError
			if errors.As(err, &me) {
				me.Reason = fmt.Sprintf("value[%d]: %s", i, me.Reason)
			}
			return Result{}, err
		}
		res.Items = append(res.Items, d)
	}
	return res, nil
}

func readDiscovered(raw json.RawMessage) (messages.Discovered, error) {
	var it discoveryItem
	if err := json.Unmarshal(raw, &it); err != nil {
		return messages.Discovered{}, &MalformedError{Status: 200, Reason: "not a listed resource: " + jsonProblem(err)}
	}
	if it.SubscriptionID != "" {
		// Resource Manager's subscription: no name, no properties.
		if it.ID == "" {
			it.ID = "/subscriptions/" + it.SubscriptionID
		}
		return messages.Discovered{
			ID: it.ID, Name: it.SubscriptionID, DisplayName: it.DisplayName, SubscriptionID: it.SubscriptionID,
			State: it.State, QuotaID: it.Policies.QuotaID, TenantID: it.TenantID, Resource: raw,
		}, nil
	}
	if it.ID == "" {
		return messages.Discovered{}, &MalformedError{Status: 200, Reason: "listed resource without id"}
	}
	if it.Name == "" {
		if u, err := url.PathUnescape(path.Base(it.ID)); err == nil {
			it.Name = u
		}
	}
	var p discoveryProps
	if len(it.Properties) > 0 {
		if err := json.Unmarshal(it.Properties, &p); err != nil {
			return messages.Discovered{}, &MalformedError{Status: 200, Reason: "properties: " + jsonProblem(err)}
		}
	}
	return messages.Discovered{
		ID: it.ID, Name: it.Name, DisplayName: p.DisplayName, AgreementType: p.AgreementType,
		AccountStatus: p.AccountStatus, AccountType: p.AccountType, Status: p.Status, Resource: raw,
	}, nil
}
