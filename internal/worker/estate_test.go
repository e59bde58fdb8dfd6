package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

func TestDiscoveryEveryPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	est, _ := devstack.SampleEstate(12)
	b.emu.SetEstate(est)
	b.emu.SetListing(3, 0) // three items to a page
	partner := est.Accounts[len(est.Accounts)-4]
	mca := est.Accounts[len(est.Accounts)-5]
	for _, c := range []struct {
		kind   messages.Kind
		params messages.Params
		op     string
		want   int
	}{
		{messages.KindBillingAccounts, messages.Params{}, emulator.OpBillingAccountList, len(est.Accounts) - 1}, // one is hidden
		{messages.KindSubscriptions, messages.Params{}, emulator.OpSubscriptionList, len(est.Subscriptions)},
		{messages.KindBillingProfiles, messages.Params{BillingAccountName: mca.Name}, emulator.OpBillingProfileList, len(mca.Profiles)},
		{messages.KindCustomers, messages.Params{BillingAccountName: partner.Name}, emulator.OpCustomerList, len(partner.Customers)},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			req := devstack.Sample(c.kind, b.id(), "")
			req.Params = c.params
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want completion, got %+v", o.Failed)
			}
			got := o.Completed
			pages := (c.want + 2) / 3
			if len(got.Items) != c.want || got.AzureCalls != pages || got.URL != "" {
				t.Fatalf("%d items after %d calls, want %d after %d", len(got.Items), got.AzureCalls, c.want, pages)
			}
			seen := map[string]bool{}
			var types []string
			for _, it := range got.Items {
				if seen[it.ID] || it.Name == "" || len(it.Resource) == 0 {
					t.Errorf("item %+v repeated or incomplete", it)
				}
				seen[it.ID] = true
				types = append(types, it.AgreementType)
				if it.Name == "79999999" {
					t.Errorf("an account only another principal sees was listed")
				}
			}
			switch c.kind {
			case messages.KindBillingAccounts:
				// Open enums: an agreement type Azure may add comes through.
				if s := strings.Join(types, ","); !strings.Contains(s, "SomeFutureAgreement") || !strings.Contains(s, "MicrosoftCustomerAgreement") {
					t.Errorf("agreement types %s", s)
				}
				// The MCA names (':' and '_') survive the round trip.
				if !seen["/providers/Microsoft.Billing/billingAccounts/"+mca.Name] {
					t.Errorf("MCA account %s not among %v", mca.Name, seen)
				}
			case messages.KindSubscriptions:
				if got.Items[0].QuotaID == "" || got.Items[0].SubscriptionID != got.Items[0].Name || got.Items[0].State != "Enabled" {
					t.Errorf("subscription %+v", got.Items[0])
				}
			}
			var calls int
			for _, call := range b.emu.Calls() {
				if call.Operation == c.op && (c.params.BillingAccountName == "" || strings.Contains(call.Path, c.params.BillingAccountName)) {
					calls++
				}
			}
			if calls != pages {
				t.Errorf("emulator saw %d calls of %s, want %d", calls, c.op, pages)
			}
		})
	}
}

func TestEstateCollectsEveryScopeOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.CollectionWindow, c.EstateWindow = 8, 3 })
	est, want := devstack.SampleEstate(50)
	b.emu.SetEstate(est)
	b.emu.SetListing(5, 2)                        // two invoices a month: six in the period, one with a document that fails
	b.emu.SetDefault(emulator.Reply{Status: 200}) // every download answers at once
	req := devstack.Sample(messages.KindEstate, b.id(), "")
	req.Labels = map[string]string{"run": "estate"}
	b.submit(req)
	o := b.wait(req.ID, 5*eventTimeout)
	if o.Completed == nil || o.Completed.Estate == nil {
		t.Fatalf("want the estate's completion, got %+v", o.Failed)
	}
	sum := o.Completed.Estate
	counts := map[string]int{}
	for _, w := range want {
		counts[w.Outcome]++
	}
	if sum.Scopes != len(want) || sum.Completed != counts[messages.OutcomeCompleted] || sum.Failed != counts[messages.OutcomeFailed] ||
		sum.Skipped != counts[messages.OutcomeSkipped] || counts[messages.OutcomeCompleted]+counts[messages.OutcomeFailed] != 50 {
		t.Fatalf("estate %d scopes: %d completed, %d failed, %d skipped; want %v", sum.Scopes, sum.Completed, sum.Failed, sum.Skipped, counts)
	}
	byID := map[string]messages.ScopeOutcome{}
	for _, s := range sum.Children {
		byID[s.Scope+"/"+s.ID] = s
	}
	docs := 0
	for _, w := range want {
		got, ok := byID[w.Kind+"/"+w.ID]
		if !ok || got.Outcome != w.Outcome {
			t.Errorf("scope %s %s: got %+v, want %s", w.Kind, w.ID, got, w.Outcome)
			continue
		}
		if w.Outcome == messages.OutcomeSkipped {
			continue
		}
		if wantID := messages.EstateChildID(req.ID, w.Kind, w.ID); got.CollectionID != wantID {
			t.Errorf("scope %s: collection %s, want %s", w.ID, got.CollectionID, wantID)
		}
		// Its invoice listing was started once: one collection per scope.
		key := w.ID
		starts := 0
		for _, c := range b.emu.CallsFor(key) {
			if (c.Operation == emulator.OpAccountInvoiceList || c.Operation == emulator.OpSubscriptionInvoiceList) && c.Phase == emulator.PhaseStart {
				starts++
			}
		}
		if starts != 1 {
			t.Errorf("scope %s: its invoices were listed %d times, want once", w.ID, starts)
		}
		if w.Outcome == messages.OutcomeFailed && got.Code != messages.CodeAccessDenied {
			t.Errorf("scope %s: failed with %s %q, want %s", w.ID, got.Code, got.Message, messages.CodeAccessDenied)
		}
		if w.Outcome == messages.OutcomeCompleted {
			if got.Documents == 0 || got.Completed+got.Failed != got.Documents {
				t.Errorf("scope %s: %+v", w.ID, got)
			}
			docs += got.Documents
		}
	}
	if sum.Documents != docs || sum.DocumentsFailed == 0 || sum.DocumentsCompleted+sum.DocumentsFailed != docs {
		t.Errorf("documents %d (%d completed, %d failed), scopes add up to %d; want some failed", sum.Documents, sum.DocumentsCompleted, sum.DocumentsFailed, docs)
	}
	// The documents fetched are the emulator's accepted downloads.
	accepted := 0
	for _, c := range b.emu.Calls() {
		if c.Accepted && c.Phase == emulator.PhaseStart && !strings.HasSuffix(c.Operation, "-list") {
			accepted++
		}
	}
	if accepted != sum.DocumentsCompleted {
		t.Errorf("emulator accepted %d downloads, the estate says %d documents completed", accepted, sum.DocumentsCompleted)
	}
	if n := len(b.events(req.ID)); n != 1 {
		t.Errorf("%d events for the estate, want one", n)
	}
	if o.Completed.Labels["run"] != "estate" {
		t.Errorf("labels %v", o.Completed.Labels)
	}
	checkEstateCoverage(t, b, req, want, byID)
}

// checkEstateCoverage holds the coverage grid of an estate's period to the
// estate's event and the emulator's log: every scope it collected is
// known, each month names that scope's collection, a refused scope is
// failed in every month, and a collected scope's months add up to the
// downloads the emulator accepted and refused for it, complete where none
// failed and partial where some did.
func checkEstateCoverage(t *testing.T, b *testBundle, req messages.Request, want []devstack.EstateScope, byID map[string]messages.ScopeOutcome) {
	t.Helper()
	ctx := context.Background()
	from, to := req.Params.PeriodStartDate[:7], req.Params.PeriodEndDate[:7]
	var g client.CoverageGrid
	testwait.ForNoError(t, eventTimeout, "every collected scope's coverage", func() error {
		var err error
		if g, err = b.stack.Client.Coverage(ctx, from, to); err != nil {
			return err
		}
		recorded := 0
		for _, r := range g.Rows {
			for _, c := range r.Cells {
				if c.Status != client.CoverageNever {
					recorded++
				}
			}
		}
		if need := (len(want) - countOutcome(want, messages.OutcomeSkipped)) * len(g.Months); recorded < need {
			return fmt.Errorf("%d of %d scope-months recorded", recorded, need)
		}
		return nil
	})
	rows := map[string]client.CoverageRow{}
	for _, r := range g.Rows {
		rows[r.Scope.Kind+"/"+r.Scope.ID] = r
	}
	partial := 0
	for _, w := range want {
		r, ok := rows[w.Kind+"/"+w.ID]
		if w.Outcome == messages.OutcomeSkipped {
			if ok {
				t.Errorf("skipped scope %s has a coverage row", w.ID)
			}
			continue
		}
		if !ok || len(r.Cells) != len(g.Months) {
			t.Errorf("scope %s: no coverage row (%+v)", w.ID, r)
			continue
		}
		if r.Scope.Name == "" {
			t.Errorf("scope %s: the discovered name is not in its coverage row", w.ID)
		}
		var accepted, refused int
		for _, c := range b.emu.Calls() {
			if c.Phase != emulator.PhaseStart || strings.HasSuffix(c.Operation, "-list") || !strings.Contains(c.Path, "/"+w.ID+"/") {
				continue
			}
			if c.Accepted {
				accepted++
			} else if c.Status == http.StatusNotFound {
				refused++
			}
		}
		archived, failed := 0, 0
		for _, c := range r.Cells {
			if c.Collection != byID[w.Kind+"/"+w.ID].CollectionID {
				t.Errorf("scope %s %s: collection %q, want the estate's", w.ID, c.Month, c.Collection)
			}
			archived, failed = archived+c.Archived, failed+c.Failed
			wantStatus := client.CoverageComplete
			switch {
			case w.Outcome == messages.OutcomeFailed:
				wantStatus = client.CoverageFailed
			case c.Failed > 0 && c.Archived > 0:
				wantStatus = client.CoveragePartial
				partial++
			case c.Failed > 0:
				wantStatus = client.CoverageFailed
			}
			if c.Status != wantStatus {
				t.Errorf("scope %s %s: %s (%d archived, %d failed), want %s", w.ID, c.Month, c.Status, c.Archived, c.Failed, wantStatus)
			}
		}
		if w.Outcome == messages.OutcomeCompleted && (archived != accepted || failed != refused) {
			t.Errorf("scope %s: coverage says %d archived, %d failed; the emulator accepted %d and refused %d", w.ID, archived, failed, accepted, refused)
		}
	}
	if partial == 0 {
		t.Errorf("no partial scope-month: the sample's failing documents did not show")
	}
}

func countOutcome(want []devstack.EstateScope, outcome string) int {
	n := 0
	for _, w := range want {
		if w.Outcome == outcome {
			n++
		}
	}
	return n
}

// Two credential profiles (two tenants), each with its own estate: each
// discovers what its own principal sees, and every call of its
// collections goes with its own tenant's token.
func TestEstatePerProfile(t *testing.T) {
	t.Parallel()
	const tenantA, tenantB = "aaaaaaaa-0000-0000-0000-00000000000a", "bbbbbbbb-0000-0000-0000-00000000000b"
	b := identitySetup(t, devstack.Options{
		Emulator: emulator.Options{Clients: map[string]emulator.Client{
			"app-a": {Tenant: tenantA, Secret: "secret-of-a"},
			"app-b": {Tenant: tenantB, Secret: "secret-of-b"},
		}, Default: []emulator.Reply{emulator.OK()}},
	}, func(c *config.Config) {
		c.AzureProfilesFile = writeProfiles(t, fmt.Sprintf(`{
  "default": "tenant-a",
  "profiles": {
    "tenant-a": {"credential": "client-secret", "tenantId": %q, "clientId": "app-a", "clientSecretFile": %q},
    "tenant-b": {"credential": "client-secret", "tenantId": %q, "clientId": "app-b", "clientSecretFile": %q}
  }
}`, tenantA, writeFile(t, "a", "secret-of-a"), tenantB, writeFile(t, "b", "secret-of-b")))
	})
	b.emu.SetListing(5, 1)
	b.emu.SetEstate(emulator.Estate{
		Accounts: []emulator.EstateAccount{
			{Name: "71000001", DisplayName: "A's enrollment", AgreementType: "EnterpriseAgreement", Principals: []string{"app-a"}},
			{Name: "71000002", DisplayName: "A's other", AgreementType: "EnterpriseAgreement", Principals: []string{"app-a"}},
			{Name: "72000001", DisplayName: "B's enrollment", AgreementType: "EnterpriseAgreement", Principals: []string{"app-b"}},
		},
		Subscriptions: []emulator.EstateSubscription{
			{ID: "73000000-0000-4000-8000-000000000001", DisplayName: "B's PAYG", QuotaID: "PayAsYouGo_2014-09-01", Principals: []string{"app-b"}},
		},
	})
	scopes := map[string][]string{"tenant-a": {"71000001", "71000002"}, "tenant-b": {"72000001", "73000000-0000-4000-8000-000000000001"}}
	tenants := map[string]string{"tenant-a": tenantA, "tenant-b": tenantB}
	ids := map[string]string{}
	for profile := range scopes {
		req := devstack.Sample(messages.KindEstate, b.id(), "")
		req.Profile = profile
		b.submit(req)
		ids[profile] = req.ID
	}
	for profile, want := range scopes {
		o := b.wait(ids[profile], 3*eventTimeout)
		if o.Completed == nil || o.Completed.Estate == nil {
			t.Fatalf("%s: %+v", profile, o.Failed)
		}
		var got []string
		for _, s := range o.Completed.Estate.Children {
			got = append(got, s.ID)
			if s.Outcome != messages.OutcomeCompleted {
				t.Errorf("%s: scope %+v", profile, s)
			}
			for _, c := range b.emu.CallsFor(s.ID) {
				if c.Tenant != tenants[profile] {
					t.Errorf("%s: %s %s in tenant %q", profile, c.Method, c.Path, c.Tenant)
				}
			}
			// Its collection is the estate's profile's.
			if st, err := b.stack.Client.Status(t.Context(), s.CollectionID); err != nil || st.Request.Profile != profile {
				t.Errorf("%s: collection %s: %+v %v", profile, s.CollectionID, st, err)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: scopes %v, want %v", profile, got, want)
		}
	}
}
