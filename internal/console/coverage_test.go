package console_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// The Coverage page draws the known scopes by months as a heatmap: each
// cell coloured by its status, linked to its collection, and a cell with
// failed documents to each of them.
func TestCoveragePage(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{Now: func() time.Time { return time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC) }})
	c, ctx := tb.stack.Client, context.Background()
	emu := tb.stack.Emulator
	emu.SetListing(50, 4) // four invoices a month: the fourth's tax receipt is gone (404)
	emu.Script("20000041", emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "not yours"))
	collect := func(id, account, from, to string) {
		req := messages.Request{Version: 1, ID: id, Kind: messages.KindCollection,
			Params: messages.Params{BillingAccountName: account, PeriodStartDate: from, PeriodEndDate: to, DocumentKinds: []string{"Invoice", "TaxReceipt"}}}
		if _, err := c.Submit(ctx, req, nil); err != nil {
			t.Fatal(err)
		}
		tb.state(t, id, client.Phase.Terminal)
	}
	collect("cov-good", "20000040", "2026-01-01", "2026-02-28")
	collect("cov-refused", "20000041", "2026-02-01", "2026-02-28")
	if err := c.PutScope(ctx, client.CoverageScope{Kind: "subscription", ID: "11111111-2222-3333-4444-555555555555", Name: "Pay <as> you go"}); err != nil {
		t.Fatal(err)
	}
	var g client.CoverageGrid
	testwait.ForNoError(t, 20*time.Second, "the records", func() error {
		var err error
		g, err = c.Coverage(ctx, "2026-01", "2026-02")
		if err == nil && len(g.Rows) != 3 {
			return fmt.Errorf("%d rows", len(g.Rows))
		}
		return err
	})

	// The default months: the six up to last month (the console's clock).
	code, body := get(t, httpClient(t), tb.url+"/coverage")
	if code != http.StatusOK || !strings.Contains(body, `<a href="/coverage" aria-current="page">Coverage</a>`) ||
		!strings.Contains(body, "<th>2025-09</th>") || !strings.Contains(body, "<th>2026-02</th>") || strings.Contains(body, "<th>2026-03</th>") {
		t.Fatalf("coverage page: %d %s", code, body)
	}
	code, body = get(t, httpClient(t), tb.url+"/coverage?from=2026-01&to=2026-02")
	if code != http.StatusOK || !strings.Contains(body, "3 scopes:") {
		t.Fatalf("coverage page: %d %s", code, body)
	}
	row := func(id string) string {
		m := regexp.MustCompile(`(?s)<tr id="scope-` + regexp.QuoteMeta(id) + `">.*?</tr>`).FindString(body)
		if m == "" {
			t.Fatalf("no row of %s in %s", id, body)
		}
		return m
	}
	cell := func(row, month string) string {
		return regexp.MustCompile(`(?s)<td class="cell cell-[a-z_]+" data-month="` + month + `".*?</td>`).FindString(row)
	}
	good := row("account-20000040")
	// One of the two months has the gone tax receipt: which one is the
	// grid's to say; the page must say the same.
	for i, month := range g.Months {
		want := g.Rows[0].Cells[i]
		got := cell(good, month)
		if !strings.Contains(got, `cell-`+want.Status+`"`) || !strings.Contains(got, `<a class="coll" href="/collections/cov-good">`) {
			t.Errorf("%s: cell %q, want status %s linked to its collection", month, got, want.Status)
		}
		for _, f := range want.Failures {
			if !strings.Contains(got, `<a href="/operations/`+f.Child+`">`) {
				t.Errorf("%s: the failure %s is not linked: %q", month, f.Child, got)
			}
		}
	}
	statuses := g.Rows[0].Cells[0].Status + " " + g.Rows[0].Cells[1].Status
	if !strings.Contains(statuses, client.CoveragePartial) {
		t.Errorf("the good account's months are %s: want one partial (the gone tax receipt)", statuses)
	}
	refused := row("account-20000041")
	if c := cell(refused, "2026-02"); !strings.Contains(c, `cell-failed"`) || !strings.Contains(c, "<code>access_denied</code>") ||
		!strings.Contains(c, `href="/collections/cov-refused"`) {
		t.Errorf("refused February: %q", c)
	}
	if c := cell(refused, "2026-01"); !strings.Contains(c, `cell-never_collected"`) {
		t.Errorf("refused January: %q", c)
	}
	sub := row("subscription-11111111-2222-3333-4444-555555555555")
	if !strings.Contains(sub, "Pay &lt;as&gt; you go") || strings.Count(sub, "cell-never_collected") != 2 {
		t.Errorf("registered scope: %q", sub)
	}
	// Months it cannot read: a clear refusal.
	if code, body := get(t, httpClient(t), tb.url+"/coverage?from=2026-13&to=2026-02"); code != http.StatusBadRequest || !strings.Contains(body, "not a month") {
		t.Errorf("bad months: %d %s", code, body)
	}
}
