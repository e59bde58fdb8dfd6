package billing_test

import (
	"errors"
	"testing"

	"github.com/azbilling/worker/pkg/billing"
)

func TestParseDiscoveryList(t *testing.T) {
	t.Parallel()
	// A billing account of an agreement type the specification does not
	// list, with a property it does not know, and a subscription (Resource
	// Manager's shape: no name, no properties).
	body := `{"value": [
	  {"id": "/providers/Microsoft.Billing/billingAccounts/aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31",
	   "name": "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31",
	   "properties": {"displayName": "Contoso", "agreementType": "SomethingNew", "accountStatus": "UnderReview", "newField": {"x": 1}}},
	  {"id": "/subscriptions/11111111-2222-3333-4444-555555555555", "subscriptionId": "11111111-2222-3333-4444-555555555555",
	   "displayName": "PAYG", "state": "PastDue", "subscriptionPolicies": {"quotaId": "PayAsYouGo_2014-09-01"}}
	], "nextLink": "https://management.azure.com/providers/Microsoft.Billing/billingAccounts?$skiptoken=1"}`
	res, err := billing.ParseResult(billing.ShapeDiscoveryList, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.NextLink == "" {
		t.Fatalf("result %+v", res)
	}
	a, s := res.Items[0], res.Items[1]
	if a.AgreementType != "SomethingNew" || a.AccountStatus != "UnderReview" || a.DisplayName != "Contoso" ||
		a.Name[8] != '-' || string(a.Resource) == "" {
		t.Errorf("account %+v", a)
	}
	if s.Name != "11111111-2222-3333-4444-555555555555" || s.SubscriptionID != s.Name || s.State != "PastDue" ||
		s.QuotaID != "PayAsYouGo_2014-09-01" || s.DisplayName != "PAYG" {
		t.Errorf("subscription %+v", s)
	}
	for _, bad := range []string{`{}`, `{"value": [{"name": "x"}]}`, `{"value": [{"id": "/x", "properties": "no"}]}`, `[`} {
		var me *billing.MalformedError
		if _, err := billing.ParseResult(billing.ShapeDiscoveryList, []byte(bad)); !errors.As(err, &me) {
			t.Errorf("%s: %v, want a MalformedError", bad, err)
		}
	}
	// An item without a name takes its id's last segment.
	res, err = billing.ParseResult(billing.ShapeDiscoveryList, []byte(`{"value": [{"id": "/providers/Microsoft.Billing/billingAccounts/1/billingProfiles/AB-CD"}]}`))
	if err != nil || res.Items[0].Name != "AB-CD" {
		t.Errorf("nameless item: %+v, %v", res.Items, err)
	}
}
