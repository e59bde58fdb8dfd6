package worker_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// listing returns a listing request of kind over January to March 2026 for
// scope (a billing account name, or a subscription id).
func listing(kind messages.Kind, id, scope string) messages.Request {
	req := devstack.Sample(kind, id, "")
	if kind == messages.KindAccountInvoices {
		req.Params.BillingAccountName = scope
	} else {
		req.Params.SubscriptionID = scope
	}
	return req
}

func TestListingEveryPage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(4, 3) // nine invoices in the period, four to a page
	for _, c := range []struct {
		kind  messages.Kind
		scope string
	}{
		{messages.KindAccountInvoices, "10000001"},
		{messages.KindSubscriptionInvoices, "10000002-2222-3333-4444-555555555555"},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			req := listing(c.kind, b.id(), c.scope)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want completion, got %+v", o.Failed)
			}
			got := o.Completed
			calls := b.emu.CallsFor(c.scope)
			if len(got.Invoices) != 9 || got.AzureCalls != 3 || len(calls) != 3 || got.URL != "" {
				t.Fatalf("%d invoices after %d calls (emulator %d), want 9 after 3", len(got.Invoices), got.AzureCalls, len(calls))
			}
			if calls[0].Phase != emulator.PhaseStart || calls[1].Phase != emulator.PhasePage || calls[2].Phase != emulator.PhasePage {
				t.Errorf("calls %+v", calls)
			}
			if !strings.Contains(calls[0].Query, "periodStartDate=2026-01-01") || !strings.Contains(calls[0].Query, "periodEndDate=2026-03-31") {
				t.Errorf("first page query %q", calls[0].Query)
			}
			seen := map[string]bool{}
			var statuses, kinds []string
			for i, inv := range got.Invoices {
				if seen[inv.Name] || inv.InvoiceDate == nil || i > 0 && inv.InvoiceDate.Before(*got.Invoices[i-1].InvoiceDate) {
					t.Errorf("invoice %d %s repeated or out of order", i, inv.Name)
				}
				seen[inv.Name] = true
				statuses = append(statuses, inv.Status)
				for _, d := range inv.Documents {
					kinds = append(kinds, d.Kind)
				}
			}
			// Open enums come through as Azure sent them.
			if !strings.Contains(strings.Join(statuses, ","), "PastDue") || !strings.Contains(strings.Join(kinds, ","), "Statement") {
				t.Errorf("statuses %v, document kinds %v", statuses, kinds)
			}
		})
	}
}

func TestListingThrottledPageResumes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.emu.SetListing(4, 3)
	const account = "10000003"
	b.emu.Script(account, emulator.OK(), emulator.Throttled(http.StatusTooManyRequests, "Retry-After", "1"), emulator.OK())
	req := listing(messages.KindAccountInvoices, b.id(), account)
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil || len(o.Completed.Invoices) != 9 || o.Completed.AzureCalls != 4 {
		t.Fatalf("want 9 invoices after 4 calls, got %+v %+v", o.Completed, o.Failed)
	}
	calls := b.emu.CallsFor(account)
	if len(calls) != 4 || calls[1].Status != http.StatusTooManyRequests || calls[2].Query != calls[1].Query {
		t.Fatalf("calls %+v: want the throttled page asked again", calls)
	}
	if gap := calls[2].Time.Sub(calls[1].Time); gap < time.Second {
		t.Errorf("the throttled page came again after %s, before its Retry-After", gap)
	}
}

func TestListingFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	foreign := `{"value":[],"nextLink":"https://elsewhere.example/providers/Microsoft.Billing/billingAccounts/1/invoices?sig=secret"}`
	for _, c := range []struct {
		name    string
		account string
		reply   emulator.Reply
		code    messages.Code
	}{
		{"403", "10000004", emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "no"), messages.CodeAccessDenied},
		{"400", "10000005", emulator.Fail(http.StatusBadRequest, "InvalidFilter", "bad period"), messages.CodeAzureError},
		{"nextLink elsewhere", "10000006", emulator.Reply{Status: http.StatusOK, Body: &foreign}, messages.CodeLocationRejected},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b.emu.Script(c.account, c.reply)
			req := listing(messages.KindAccountInvoices, b.id(), c.account)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Failed == nil || o.Failed.Code != c.code {
				t.Fatalf("want %s, got %+v %+v", c.code, o.Completed, o.Failed)
			}
			if strings.Contains(o.Failed.Message, "secret") {
				t.Errorf("message carries the signature: %s", o.Failed.Message)
			}
		})
	}
}
