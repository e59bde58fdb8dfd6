package console_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// The Schedules page lists each schedule with its cron, zone, next fire
// (in its zone and UTC), whether it is paused, and its latest periods with
// their outcome, each linked to its request's page.
func TestSchedulesPage(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	c, ctx := tb.stack.Client, context.Background()
	summary := func(id, invoice string) messages.Schedule {
		return messages.Schedule{Version: 1, ID: id, Cron: "@daily", Request: messages.ScheduledRequest{
			Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: "12345678", InvoiceName: invoice}}}
	}
	monthly := messages.Schedule{Version: 1, ID: "coll-monthly", Cron: "0 6 10 * *", TimeZone: "Europe/Amsterdam", Period: schedule.PreviousMonth,
		Request: messages.ScheduledRequest{Kind: messages.KindCollection, Params: messages.Params{BillingAccountName: "12345678", DocumentKinds: []string{"Invoice"}}}}
	tb.stack.Emulator.SetListing(0, 1) // one invoice a month: a short collection
	for _, s := range []messages.Schedule{monthly, summary("sum-fail", failInvoice), summary("sum-slow", slowInvoice)} {
		if _, err := c.PutSchedule(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.BackfillSchedule(ctx, monthly.ID, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), 2); err != nil {
		t.Fatal(err)
	}
	failed, err := c.RunSchedule(ctx, "sum-fail", "")
	if err != nil {
		t.Fatal(err)
	}
	slow, err := c.RunSchedule(ctx, "sum-slow", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PauseSchedule(ctx, "sum-slow"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"coll-monthly-2025-01", "coll-monthly-2025-02"} {
		if st := tb.state(t, id, client.Phase.Terminal); st.Phase != client.PhaseCompleted {
			t.Fatalf("%s: %s %+v", id, st.Phase, st.Failed)
		}
	}
	tb.state(t, failed.ID, func(p client.Phase) bool { return p == client.PhaseFailed })
	tb.state(t, slow.ID, func(p client.Phase) bool { return p == client.PhaseWaiting })

	code, body := get(t, httpClient(t), tb.url+"/schedules")
	if code != http.StatusOK || !strings.Contains(body, `<a href="/schedules" aria-current="page">Schedules</a>`) || !strings.Contains(body, "3 schedules") {
		t.Fatalf("schedules page: %d %s", code, body)
	}
	row := func(id string) string {
		m := regexp.MustCompile(`(?s)<tr id="schedule-` + id + `">.*?</tr>`).FindString(body)
		if m == "" {
			t.Fatalf("no row of %s in %s", id, body)
		}
		return m
	}
	v, err := c.GetSchedule(ctx, monthly.ID)
	if err != nil {
		t.Fatal(err)
	}
	r := row(monthly.ID)
	for _, want := range []string{
		"<code>0 6 10 * *</code>", "Europe/Amsterdam", "previous-month",
		v.Next.Format("2006-01-02 15:04:05 MST"), v.NextUTC.Format("2006-01-02 15:04:05"),
		`<a href="/collections/coll-monthly-2025-02">2025-02</a> <span class="outcome outcome-completed"`,
		`<a href="/collections/coll-monthly-2025-01">2025-01</a>`,
	} {
		if !strings.Contains(r, want) {
			t.Errorf("coll-monthly's row lacks %q: %s", want, r)
		}
	}
	if strings.Index(r, "2025-02") > strings.Index(r, "2025-01") {
		t.Errorf("periods not newest first: %s", r)
	}
	if r := row("sum-fail"); !strings.Contains(r, `<a href="/operations/`+failed.ID+`">`) || !strings.Contains(r, "outcome-failed") ||
		!strings.Contains(r, "<code>"+string(messages.CodeAzureError)) || !strings.Contains(r, "UTC") {
		t.Errorf("sum-fail's row: %s", r)
	}
	if r := row("sum-slow"); !strings.Contains(r, "phase-paused") || !strings.Contains(r, "none (paused)") ||
		!strings.Contains(r, `<a href="/operations/`+slow.ID+`">`) || !strings.Contains(r, "outcome-running") || !strings.Contains(r, "phase-waiting") {
		t.Errorf("sum-slow's row: %s", r)
	}
	// Each period's link leads to its request's page.
	if code, body := get(t, httpClient(t), tb.url+"/collections/coll-monthly-2025-02"); code != http.StatusOK || !strings.Contains(body, "coll-monthly-2025-02") {
		t.Errorf("a period's collection page: %d", code)
	}
}
