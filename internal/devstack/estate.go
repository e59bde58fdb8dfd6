package devstack

import (
	"fmt"
	"net/http"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// An estate for the emulator: the tenant dev mode, the tests and the
// benchmark collect with one estate request.

// SamplePartnerAccount is the partner (MPA) account of SampleEstate, with
// a billing profile and three customers: the sample billing-profiles and
// customers requests list its.
var SamplePartnerAccount = estateGUID(0xc0000000, 1) + ":" + estateGUID(0xc0000000, 2) + "_2020-01-31"

func estateGUID(a, b int) string { return fmt.Sprintf("%08x-%04x-4000-8000-%012x", a, b, a*1000+b) }

// DevEstateScopes is how many scopes dev mode's estate collects.
const DevEstateScopes = 6

// HiddenPrincipal is a client id other than the dev client's: the scopes
// only it sees are not the dev client's to discover.
const HiddenPrincipal = "another-app"

// EstateScope is one scope of SampleEstate as an estate finds it.
type EstateScope struct {
	Kind, ID string
	// Outcome is what the estate's event says of it: completed, failed
	// (its invoice listing answers 403) or skipped.
	Outcome string
}

// SampleEstate makes an estate of n collected scopes (n >= 4): enterprise
// enrollments, MCA accounts with billing profiles, a partner account with
// customers, an account of an agreement type Azure may add, and
// pay-as-you-go subscriptions; the first enrollment's invoice listing
// answers 403. Beside them, scopes the estate skips (a Microsoft Online
// Services Program account, an enterprise subscription) and an account
// only HiddenPrincipal sees. Every scope's invoices list documents whose
// download fails (emulator.MissingDocumentPrefix), so its collection
// partly fails. It returns what an estate of the dev client finds.
func SampleEstate(n int) (emulator.Estate, []EstateScope) {
	var est emulator.Estate
	var want []EstateScope
	guid := estateGUID
	account := func(a emulator.EstateAccount, outcome string) {
		est.Accounts = append(est.Accounts, a)
		if outcome != "" {
			want = append(want, EstateScope{Kind: messages.ScopeAccount, ID: a.Name, Outcome: outcome})
		}
	}
	subs := n / 3
	ea := max(1, (n-subs-2)*2/3)
	mca := max(0, n-subs-2-ea)
	for i := range ea {
		a := emulator.EstateAccount{Name: fmt.Sprintf("%d", 70000001+i), DisplayName: fmt.Sprintf("Enrollment %d", i+1), AgreementType: "EnterpriseAgreement"}
		outcome := messages.OutcomeCompleted
		if i == 0 {
			a.ListingStatus, outcome = http.StatusForbidden, messages.OutcomeFailed
		}
		account(a, outcome)
	}
	for i := range mca {
		account(emulator.EstateAccount{Name: guid(0xa0000000+i, 1) + ":" + guid(0xb0000000+i, 2) + "_2019-05-31",
			DisplayName: fmt.Sprintf("Contoso MCA %d", i+1), AgreementType: "MicrosoftCustomerAgreement",
			Profiles: []string{fmt.Sprintf("PROF-%04d-BG7-TGB", i), fmt.Sprintf("PROF-%04d-BG8-TGB", i)}}, messages.OutcomeCompleted)
	}
	account(emulator.EstateAccount{Name: SamplePartnerAccount, DisplayName: "Fabrikam Partner",
		AgreementType: "MicrosoftPartnerAgreement", Profiles: []string{"PART-0001-BG7-TGB"},
		Customers: []string{guid(0xd0000000, 1), guid(0xd0000000, 2), guid(0xd0000000, 3)}}, messages.OutcomeCompleted)
	account(emulator.EstateAccount{Name: guid(0xe0000000, 1), DisplayName: "Future agreement", AgreementType: "SomeFutureAgreement"},
		messages.OutcomeCompleted)
	account(emulator.EstateAccount{Name: guid(0xf0000000, 1), DisplayName: "Online services", AgreementType: "MicrosoftOnlineServicesProgram"},
		messages.OutcomeSkipped)
	account(emulator.EstateAccount{Name: "79999999", DisplayName: "Not ours", AgreementType: "EnterpriseAgreement",
		Principals: []string{HiddenPrincipal}}, "")
	for i := range subs {
		s := emulator.EstateSubscription{ID: guid(0x50000000+i, 3), DisplayName: fmt.Sprintf("PAYG %d", i+1), QuotaID: "PayAsYouGo_2014-09-01"}
		est.Subscriptions = append(est.Subscriptions, s)
		want = append(want, EstateScope{Kind: messages.ScopeSubscription, ID: s.ID, Outcome: messages.OutcomeCompleted})
	}
	ent := emulator.EstateSubscription{ID: guid(0x60000000, 3), DisplayName: "EA dev/test", QuotaID: "EnterpriseAgreement_2014-09-01"}
	est.Subscriptions = append(est.Subscriptions, ent)
	want = append(want, EstateScope{Kind: messages.ScopeSubscription, ID: ent.ID, Outcome: messages.OutcomeSkipped})
	return est, want
}
