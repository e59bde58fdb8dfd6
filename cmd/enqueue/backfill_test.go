package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
)

// listings counts the emulator's invoice listings of account for the
// period starting on from: one per page of each collection of that month.
func listings(s *devstack.Stack, account, from string) int {
	n := 0
	for _, c := range s.Emulator.CallsFor(account) {
		if c.Operation == emulator.OpAccountInvoiceList && strings.Contains(c.Query, "periodStartDate="+from) {
			n++
		}
	}
	return n
}

func ended(t *testing.T, s *devstack.Stack, ids ...string) {
	t.Helper()
	for _, id := range ids {
		testwait.For(t, 60*time.Second, id+" ended", func() bool {
			st, err := s.Client.Status(context.Background(), id)
			return err == nil && (st.Phase == client.PhaseCompleted || st.Phase == client.PhaseFailed)
		})
	}
}

// settled waits until every consumer of the work stream has nothing to
// deliver and nothing unacknowledged: every fire and request handled.
func settled(t *testing.T, s *devstack.Stack) {
	t.Helper()
	js, err := jetstream.New(s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testwait.ForNoError(t, 60*time.Second, "the work stream's consumers settled", func() error {
		st, err := js.Stream(ctx, s.Client.Layout().WorkStream())
		if err != nil {
			return err
		}
		cs := st.ListConsumers(ctx)
		for info := range cs.Info() {
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("consumer %s: %d to deliver, %d awaiting ack", info.Name, info.NumPending, info.NumAckPending)
			}
		}
		return cs.Err()
	})
}

func startedIDs(t *testing.T, r run) []string {
	t.Helper()
	var out struct{ Started []string }
	if err := json.Unmarshal([]byte(r.stdout), &out); r.code != exitOK || err != nil {
		t.Fatalf("exit %d %v: %q %q", r.code, err, r.stdout, r.stderr)
	}
	return out.Started
}

// A backfill through collect and a schedule over the same months make one
// collection per month, whichever comes first: the backfill's ids are the
// ones the schedule's fires give the periods.
func TestCollectBackfillAndScheduleMakeOneCollectionPerMonth(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	now := time.Now()
	last := schedule.Relative{Name: schedule.PreviousMonth}.Resolve(now, time.UTC) // the month a fire now covers
	first := schedule.Month(time.Date(now.Year(), now.Month()-2, 15, 0, 0, 0, 0, time.UTC))
	fires := func(id, account string) []string {
		return []string{"schedule", "add", "--id", id, "--cron", "*/2 * * * * *", "--period", "previous-month",
			"--billing-account", account, "--kinds", "Invoice"}
	}
	backfill := func(id, account string) []string {
		return []string{"collect", "--billing-account", account, "--kinds", "Invoice", "--from", first.From, "--to", last.To,
			"--per", "month", "--schedule", id}
	}
	coveredBy := func(id, key string) string {
		v, err := s.Client.GetSchedule(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range v.Periods {
			if p.Key == key {
				return p.How
			}
		}
		return ""
	}
	want := func(id string) []string { return []string{id + "-" + first.Key, id + "-" + last.Key} }

	// Backfill first, before the schedule exists.
	r := enqueue(t, s, "", backfill("bf-first", "30000011")...)
	if ids := startedIDs(t, r); !slices.Equal(ids, want("bf-first")) || !strings.Contains(r.stderr, "no schedule bf-first yet") {
		t.Fatalf("backfill = %v, want %v (%q)", ids, want("bf-first"), r.stderr)
	}
	ended(t, s, want("bf-first")...)
	before := listings(s, "30000011", last.From)
	if before == 0 {
		t.Fatalf("no listing of %s seen", last.Key)
	}
	// Then the schedule: its fires cover last month, under the backfill's id.
	if r := enqueue(t, s, "", fires("bf-first", "30000011")...); r.code != exitOK {
		t.Fatalf("schedule add: %d %q", r.code, r.stderr)
	}
	testwait.For(t, 30*time.Second, "a fire covered "+last.Key, func() bool { return coveredBy("bf-first", last.Key) == schedule.ByFire })

	// The schedule first, then the backfill.
	if r := enqueue(t, s, "", fires("bf-second", "30000012")...); r.code != exitOK {
		t.Fatalf("schedule add: %d %q", r.code, r.stderr)
	}
	testwait.For(t, 30*time.Second, "a fire covered "+last.Key, func() bool { return coveredBy("bf-second", last.Key) == schedule.ByFire })
	ended(t, s, "bf-second-"+last.Key)
	fired := listings(s, "30000012", last.From)
	r = enqueue(t, s, "", backfill("bf-second", "30000012")...)
	if ids := startedIDs(t, r); !slices.Equal(ids, want("bf-second")) || strings.Contains(r.stderr, "no schedule") {
		t.Fatalf("backfill = %v, want %v (%q)", ids, want("bf-second"), r.stderr)
	}
	ended(t, s, want("bf-second")...)
	if how := coveredBy("bf-second", first.Key); how != schedule.ByBackfill {
		t.Errorf("%s covered by %q, want backfill", first.Key, how)
	}

	// list: the next fire in the zone and in UTC, the latest periods and
	// how they ended.
	if r := enqueue(t, s, "", "schedule", "add", "--id", "bf-zoned", "--cron", "0 6 10 * *", "--tz", "Europe/Amsterdam",
		"--period", "previous-month", "--billing-account", "30000014"); r.code != exitOK {
		t.Fatalf("schedule add: %d %q", r.code, r.stderr)
	}
	r = enqueueWith(t, s, env{tty: true}, "schedule", "list")
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	if l := lines["bf-second"]; r.code != exitOK || !strings.Contains(l, last.Key+" completed") || !strings.Contains(l, first.Key+" completed") ||
		!strings.Contains(l, "UTC") || !strings.Contains(l, "Z)") {
		t.Errorf("list: exit %d, bf-second's line %q (all: %q)", r.code, l, r.stdout)
	}
	zoned, err := s.Client.GetSchedule(context.Background(), "bf-zoned")
	if err != nil {
		t.Fatal(err)
	}
	comp, err := schedule.Compile(zoned.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	next := comp.Cron.Next(time.Now(), comp.Location)
	if l := lines["bf-zoned"]; !strings.Contains(l, "Europe/Amsterdam") || !strings.Contains(l, next.In(comp.Location).Format("2006-01-02 15:04:05 MST")) ||
		!strings.Contains(l, next.UTC().Format(time.RFC3339)) {
		t.Errorf("list: bf-zoned's line %q, want the next fire %v in Amsterdam time and UTC", l, next)
	}
	r = enqueue(t, s, "", "schedule", "list")
	var vs []client.ScheduleView
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 3 || vs[1].Periods[0].Phase != client.PhaseCompleted {
		t.Errorf("list as JSON: %v %q", err, r.stdout)
	}

	// Every fire, request and resubmission handled: still one listing of
	// last month per account, and the backfill's own month listed.
	for _, id := range []string{"bf-first", "bf-second"} {
		if r := enqueue(t, s, "", "schedule", "pause", id); r.code != exitOK {
			t.Fatalf("pause: %q", r.stderr)
		}
	}
	settled(t, s)
	if n := listings(s, "30000011", last.From); n != before {
		t.Errorf("backfill then schedule: %s listed %d times, want %d (one collection)", last.Key, n, before)
	}
	if n := listings(s, "30000012", last.From); n != fired {
		t.Errorf("schedule then backfill: %s listed %d times, want %d (one collection)", last.Key, n, fired)
	}
	if n := listings(s, "30000012", first.From); n == 0 {
		t.Errorf("the backfill's month %s was not collected", first.Key)
	}

	// A backfill under an existing schedule with other params is refused,
	// naming the difference; one without --schedule says what it needs.
	r = enqueue(t, s, "", backfill("bf-second", "30000099")...)
	if r.code == exitOK || !strings.Contains(r.stderr, "30000099") || !strings.Contains(r.stderr, "must be the same") {
		t.Errorf("backfill with other params: exit %d %q", r.code, r.stderr)
	}
	r = enqueue(t, s, "", "collect", "--billing-account", "30000013", "--from", first.From, "--to", last.To, "--per", "month")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--schedule") {
		t.Errorf("--per without --schedule: exit %d %q", r.code, r.stderr)
	}
	r = enqueue(t, s, "", "collect", "--billing-account", "30000013", "--from", first.From, "--to", last.To, "--per", "week", "--schedule", "x")
	if r.code != exitUsage || !strings.Contains(r.stderr, "month or day") {
		t.Errorf("--per week: exit %d %q", r.code, r.stderr)
	}
}

func TestPeriodText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    client.PeriodView
		want string
	}{
		{client.PeriodView{Phase: client.PhaseCompleted}, "completed"},
		{client.PeriodView{Phase: client.PhaseFailed, Code: "listing_failed"}, "failed (listing_failed)"},
		{client.PeriodView{Phase: client.PhaseCollecting}, "running (collecting)"},
		{client.PeriodView{Phase: client.PhaseWaiting}, "running (waiting)"},
		{client.PeriodView{}, "unknown"},
	} {
		if got := periodText(c.p); got != c.want {
			t.Errorf("periodText(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
