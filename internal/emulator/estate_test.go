package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

type discoveryPage struct {
	Value    []map[string]any `json:"value"`
	NextLink string           `json:"nextLink"`
}

func TestEstateListings(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.srv.SetEstate(Estate{
		Accounts: []EstateAccount{
			{Name: "70000001", DisplayName: "EA one", AgreementType: "EnterpriseAgreement", ListingStatus: http.StatusForbidden},
			{Name: "70000002", DisplayName: "EA two", AgreementType: "EnterpriseAgreement"},
			{Name: mcaAccount, DisplayName: "MCA", AgreementType: "MicrosoftCustomerAgreement", Profiles: []string{"AB-CD", "EF-GH"}},
			{Name: "70000003", DisplayName: "Not the caller's", AgreementType: "EnterpriseAgreement", Principals: []string{"someone-else"}},
		},
		Subscriptions: []EstateSubscription{{ID: testSub, DisplayName: "PAYG", QuotaID: "PayAsYouGo_2014-09-01"}},
	})
	// Every page of the accounts the caller sees, two to a page.
	var names []string
	path := armPrefix[:len(armPrefix)-1] + "?api-version=2024-04-01&top=2"
	for pages := 0; path != ""; pages++ {
		if pages > 3 {
			t.Fatal("more pages than accounts")
		}
		resp, body := b.call(t, request{method: http.MethodGet, path: path})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		var p discoveryPage
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Value {
			names = append(names, v["name"].(string))
			if v["properties"].(map[string]any)["agreementType"] == "" {
				t.Errorf("account %v without agreementType", v)
			}
		}
		path = strings.TrimPrefix(p.NextLink, b.srv.URL())
	}
	if strings.Join(names, ",") != "70000001,70000002,"+mcaAccount {
		t.Errorf("accounts %v", names)
	}
	if n := len(b.srv.CallsFor(OpBillingAccountList)); n != 2 {
		t.Errorf("%d calls logged for the accounts' listing, want 2", n)
	}
	// Profiles of an account; none of one the caller does not see.
	resp, body := b.call(t, request{method: http.MethodGet, path: armPrefix + mcaAccount + "/billingProfiles?api-version=2024-04-01"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name":"EF-GH"`) {
		t.Errorf("profiles: %d %s", resp.StatusCode, body)
	}
	resp, body = b.call(t, request{method: http.MethodGet, path: armPrefix + "70000003/billingProfiles?api-version=2024-04-01"})
	wantError(t, resp, body, http.StatusNotFound, "BillingAccountNotFound", "billingAccountName")
	// Subscriptions, Resource Manager's shape and api-version.
	resp, body = b.call(t, request{method: http.MethodGet, path: "/subscriptions?api-version=2022-12-01"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"quotaId":"PayAsYouGo_2014-09-01"`) || strings.Contains(string(body), `"properties"`) {
		t.Errorf("subscriptions: %d %s", resp.StatusCode, body)
	}
	resp, body = b.call(t, request{method: http.MethodGet, path: "/subscriptions?api-version=2024-04-01"})
	wantError(t, resp, body, http.StatusBadRequest, "InvalidApiVersionParameter", "api-version")
	// The invoices of an account that refuses them, and of one the caller
	// does not see: 403; of the others, the listing.
	for account, status := range map[string]int{"70000001": http.StatusForbidden, "70000003": http.StatusForbidden, "70000002": http.StatusOK} {
		resp, body := b.call(t, request{method: http.MethodGet, path: armPrefix + account + "/invoices?api-version=2024-04-01"})
		if status != http.StatusOK {
			wantError(t, resp, body, status, "AuthorizationFailed", "")
		} else if resp.StatusCode != http.StatusOK {
			t.Errorf("account %s: %d %s", account, resp.StatusCode, body)
		}
	}
}
