package schedule

import (
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseCron(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want, err string }{
		{in: "0 6 10 * *", want: "0 0 6 10 * *"},
		{in: "*/5 * * * * *", want: "*/5 * * * * *"},
		{in: "@monthly", want: "@monthly"},
		{in: "@every 90s", want: "@every 1m30s"},
		{in: "0 0 6 10 * mon-fri", want: "0 0 6 10 * mon-fri"},
		{in: "@every 500ms", err: "at least 1s"},
		{in: "@fortnightly", err: "unknown macro"},
		{in: "* * *", err: "has 3 fields"},
		{in: "0 0 25 * * *", err: "hours: 25 is outside 0-23"},
		{in: "0 0 0 0 * *", err: "day of month: 0 is outside 1-31"},
		{in: "0 0 0 * * 5-2", err: "starts after it ends"},
		{in: "0 0 0 * * */0", err: "positive number"},
	} {
		c, err := ParseCron(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseCron(%q) = %v, want an error with %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("ParseCron(%q): %v", tc.in, err)
		case tc.err == "" && c.String() != tc.want:
			t.Errorf("ParseCron(%q).String() = %q, want %q", tc.in, c.String(), tc.want)
		}
	}
}

func TestCronNext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cron, zone, after string
		want                    []string // the next fires, in UTC
	}{
		{"10th at 06:00 Amsterdam, winter and summer", "0 0 6 10 * *", "Europe/Amsterdam", "2026-02-11T00:00:00Z",
			[]string{"2026-03-10T05:00:00Z", "2026-04-10T04:00:00Z", "2026-05-10T04:00:00Z"}},
		{"every 5 seconds", "*/5 * * * * *", "", "2026-01-01T00:00:03Z",
			[]string{"2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"}},
		{"five fields: minute 30 of every hour", "30 * * * *", "", "2026-01-01T00:30:00Z",
			[]string{"2026-01-01T01:30:00Z", "2026-01-01T02:30:00Z"}},
		{"31st: only months that have one", "0 0 0 31 * *", "", "2026-01-31T00:00:00Z",
			[]string{"2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"}},
		{"29 February: leap years only", "0 0 0 29 2 *", "", "2024-03-01T00:00:00Z",
			[]string{"2028-02-29T00:00:00Z"}},
		// Amsterdam's clocks skip 02:00-03:00 on 29 March 2026: 02:30 does
		// not fire that day.
		{"a time the spring change skips does not fire", "0 30 2 * * *", "Europe/Amsterdam", "2026-03-28T02:00:00Z",
			[]string{"2026-03-30T00:30:00Z"}},
		// On 25 October 2026 02:00-03:00 comes twice: the server fires at
		// both (a schedule's two fires of one day cover one period).
		{"a time the autumn change repeats fires twice", "0 30 2 * * *", "Europe/Amsterdam", "2026-10-24T12:00:00Z",
			[]string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-26T01:30:00Z"}},
		// Sao Paulo skipped midnight on 4 November 2018 (DST began at 00:00).
		{"@daily on a day without a midnight", "@daily", "America/Sao_Paulo", "2018-11-03T12:00:00Z",
			[]string{"2018-11-05T02:00:00Z"}},
		// Sydney's first of the month at midnight is the day before in UTC,
		// and DST starts on 4 October 2026.
		{"@monthly in Sydney across DST", "@monthly", "Australia/Sydney", "2026-09-15T00:00:00Z",
			[]string{"2026-09-30T14:00:00Z", "2026-10-31T13:00:00Z"}},
		{"weekdays 07:00 Sao Paulo", "0 0 7 * * mon-fri", "America/Sao_Paulo", "2026-01-02T12:00:00Z",
			[]string{"2026-01-05T10:00:00Z", "2026-01-06T10:00:00Z"}},
		{"day of month or day of week when both are set", "0 0 0 1 * sun", "", "2026-02-26T00:00:00Z",
			[]string{"2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"}},
	} {
		c, err := ParseCron(tc.cron)
		if err != nil {
			t.Fatal(err)
		}
		var loc *time.Location
		if tc.zone != "" {
			loc = zone(t, tc.zone)
		}
		at := utc(tc.after)
		for i, w := range tc.want {
			at = c.Next(at, loc)
			if !at.Equal(utc(w)) {
				t.Errorf("%s: fire %d = %s, want %s", tc.name, i, at.UTC().Format(time.RFC3339), w)
				break
			}
		}
	}
	never, _ := ParseCron("0 0 0 30 2 *")
	if n := never.Next(utc("2026-01-01T00:00:00Z"), nil); !n.IsZero() {
		t.Errorf("30 February fires at %s", n)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		period, zone, at string
		want             Period
	}{
		{PreviousMonth, "Europe/Amsterdam", "2026-11-10T05:00:00Z", Period{"2026-10", "2026-10-01", "2026-10-31"}},
		{PreviousMonth, "", "2024-03-10T00:00:00Z", Period{"2024-02", "2024-02-01", "2024-02-29"}},
		{PreviousMonth, "", "2026-01-05T00:00:00Z", Period{"2025-12", "2025-12-01", "2025-12-31"}},
		// Midnight of 1 October in Sydney is still September in UTC: the
		// schedule's zone decides.
		{PreviousMonth, "Australia/Sydney", "2026-09-30T14:00:00Z", Period{"2026-09", "2026-09-01", "2026-09-30"}},
		{PreviousMonth, "", "2026-09-30T14:00:00Z", Period{"2026-08", "2026-08-01", "2026-08-31"}},
		{MonthToDate, "", "2026-11-15T08:00:00Z", Period{"2026-11-01_2026-11-15", "2026-11-01", "2026-11-15"}},
		{MonthToDate, "", "2026-11-01T08:00:00Z", Period{"2026-11-01", "2026-11-01", "2026-11-01"}},
		{PreviousDay, "", "2024-03-01T06:00:00Z", Period{"2024-02-29", "2024-02-29", "2024-02-29"}},
		{PreviousDay, "America/Sao_Paulo", "2026-03-01T02:00:00Z", Period{"2026-02-27", "2026-02-27", "2026-02-27"}},
		{PreviousDay, "Europe/Amsterdam", "2026-03-29T22:30:00Z", Period{"2026-03-29", "2026-03-29", "2026-03-29"}},
		{"previous-n-days:30", "", "2024-03-01T06:00:00Z", Period{"2024-01-31_2024-02-29", "2024-01-31", "2024-02-29"}},
		{"previous-n-days:1", "", "2026-01-01T06:00:00Z", Period{"2025-12-31", "2025-12-31", "2025-12-31"}},
		{"", "Europe/Amsterdam", "2026-11-10T05:00:00Z", Period{Key: "20261110T050000Z"}},
	} {
		r, err := ParseRelative(tc.period)
		if err != nil {
			t.Fatal(err)
		}
		var loc *time.Location
		if tc.zone != "" {
			loc = zone(t, tc.zone)
		}
		if got := r.Resolve(utc(tc.at), loc); got != tc.want {
			t.Errorf("%s in %q at %s = %+v, want %+v", tc.period, tc.zone, tc.at, got, tc.want)
		}
	}
	for _, bad := range []string{"last-month", "previous-n-days:0", "previous-n-days:367", "previous-n-days:x"} {
		if _, err := ParseRelative(bad); err == nil {
			t.Errorf("ParseRelative(%q) accepted", bad)
		}
	}
}

func TestNamedAndBetween(t *testing.T) {
	t.Parallel()
	month, _ := ParseRelative(PreviousMonth)
	p, err := month.Named("2026-02")
	if err != nil || p != (Period{"2026-02", "2026-02-01", "2026-02-28"}) {
		t.Errorf("Named(2026-02) = %+v, %v", p, err)
	}
	if _, err := month.Named("2026-02-03"); err == nil {
		t.Error("a month schedule took a day as its period")
	}
	n, _ := ParseRelative("previous-n-days:7")
	if p, _ := n.Named("2026-03-07"); p.Key != "2026-03-01_2026-03-07" {
		t.Errorf("previous-n-days:7 named 2026-03-07 = %+v", p)
	}
	ps, err := month.Between(utc("2025-01-01T00:00:00Z"), utc("2025-12-31T00:00:00Z"), 13)
	if err != nil || len(ps) != 12 || ps[0].Key != "2025-01" || ps[11].Key != "2025-12" {
		t.Errorf("Between 2025 = %v, %v", ps, err)
	}
	// --to names a day: the first of a month, at midnight, is in that month.
	if ps, err := month.Between(utc("2025-01-01T00:00:00Z"), utc("2025-02-01T00:00:00Z"), 13); len(ps) != 2 || ps[1].Key != "2025-02" {
		t.Errorf("Between January 1 and February 1 = %v, %v; want January and February", ps, err)
	}
	if _, err := month.Between(utc("2020-01-01T00:00:00Z"), utc("2025-12-31T00:00:00Z"), 13); err == nil {
		t.Error("a backfill over the limit was accepted")
	}
	day, _ := ParseRelative(PreviousDay)
	if ps, _ := day.Between(utc("2024-02-28T00:00:00Z"), utc("2024-03-01T00:00:00Z"), 10); len(ps) != 3 || ps[1].Key != "2024-02-29" {
		t.Errorf("days around a leap day = %v", ps)
	}
	if _, err := n.Between(utc("2024-02-28T00:00:00Z"), utc("2024-03-01T00:00:00Z"), 10); err == nil {
		t.Error("a backfill of overlapping periods was accepted")
	}
}

func monthly(t *testing.T) Compiled {
	t.Helper()
	c, err := Compile(messages.Schedule{
		Version: 1, ID: "invoices-monthly", Cron: "0 0 6 10 * *", TimeZone: "Europe/Amsterdam", Period: PreviousMonth,
		Request: messages.ScheduledRequest{Kind: messages.KindCollection, Params: messages.Params{BillingAccountName: "12345678"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCompile(t *testing.T) {
	t.Parallel()
	c := monthly(t)
	r := c.Request(Month(utc("2026-10-01T00:00:00Z")))
	if r.ID != "invoices-monthly-2026-10" || r.Params.PeriodStartDate != "2026-10-01" || r.Params.PeriodEndDate != "2026-10-31" ||
		r.Labels[messages.LabelSchedule] != "invoices-monthly" || r.Labels[messages.LabelPeriod] != "2026-10" {
		t.Errorf("request = %+v", r)
	}
	if err := r.Validate(); err != nil {
		t.Error(err)
	}
	good := c.Schedule
	for _, tc := range []struct {
		name string
		edit func(*messages.Schedule)
		want string
	}{
		{"zone", func(s *messages.Schedule) { s.TimeZone = "Mars/Olympus" }, `timeZone "Mars/Olympus"`},
		{"zone with @every", func(s *messages.Schedule) { s.Cron = "@every 1h" }, "not allowed with @every"},
		{"period of a kind without one", func(s *messages.Schedule) {
			s.Request = messages.ScheduledRequest{Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123"}}
		}, "kind invoice-summary takes no period"},
		{"dates set by hand", func(s *messages.Schedule) { s.Request.Params.PeriodStartDate = "2026-01-01" }, "come from the period"},
		{"request", func(s *messages.Schedule) { s.Request.Params.BillingAccountName = "" }, "request: invalid request"},
		{"id", func(s *messages.Schedule) { s.ID = strings.Repeat("x", 65) }, "1 to 64"},
		{"every problem at once", func(s *messages.Schedule) { s.Cron = "x"; s.Period = "y" }, `period "y"`},
	} {
		s := good
		tc.edit(&s)
		if _, err := Compile(s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Compile = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func keys(p Plan) []string {
	var out []string
	for _, s := range p.Starts {
		out = append(out, s.Period.Key+"/"+s.How)
	}
	return out
}

func TestFire(t *testing.T) {
	t.Parallel()
	c := monthly(t)
	rec := Record{Schedule: c.Schedule, Created: utc("2026-01-01T00:00:00Z")}
	every5, err := Compile(messages.Schedule{Version: 1, ID: "often", Cron: "@every 5s", Request: c.Schedule.Request, Period: PreviousDay})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		c        Compiled
		rec      func(Record) Record
		at       string
		catchUp  int
		want     []string
		skipped  int
		wantLast string
	}{
		{name: "first fire", c: c, rec: func(r Record) Record { return r }, at: "2026-01-10T05:00:00.3Z", catchUp: 13,
			want: []string{"2025-12/fire"}, wantLast: "2026-01-10T05:00:00Z"},
		{name: "the same fire again", c: c, rec: func(r Record) Record { r.LastFire = utc("2026-01-10T05:00:00Z"); return r },
			at: "2026-01-10T05:00:00.3Z", catchUp: 13, wantLast: "2026-01-10T05:00:00Z"},
		{name: "down from February to June: the server fires once on its return", c: c,
			rec: func(r Record) Record {
				r.LastFire = utc("2026-02-10T05:00:00Z")
				r.Cover(c, Month(utc("2026-01-01T00:00:00Z")), ByFire, r.LastFire)
				return r
			},
			at: "2026-06-12T08:00:00Z", catchUp: 13,
			want: []string{"2026-02/catch-up", "2026-03/catch-up", "2026-04/catch-up", "2026-05/fire"}, wantLast: "2026-06-10T04:00:00Z"},
		{name: "catch-up bounded", c: c, rec: func(r Record) Record { r.LastFire = utc("2026-02-10T05:00:00Z"); return r },
			at: "2026-06-12T08:00:00Z", catchUp: 1, want: []string{"2026-04/catch-up", "2026-05/fire"}, skipped: 2, wantLast: "2026-06-10T04:00:00Z"},
		{name: "a period started by hand is not started again", c: c,
			rec: func(r Record) Record {
				r.LastFire = utc("2026-02-10T05:00:00Z")
				r.Cover(c, Month(utc("2026-02-01T00:00:00Z")), ByRun, r.LastFire)
				return r
			},
			at: "2026-03-10T05:00:01Z", catchUp: 13, wantLast: "2026-03-10T05:00:00Z"},
		{name: "paused", c: c, rec: func(r Record) Record { r.Paused = true; return r }, at: "2026-03-10T05:00:01Z", catchUp: 13},
		{name: "every 5s, three fires missed", c: every5,
			rec: func(r Record) Record { r.LastFire = utc("2026-01-01T23:59:50Z"); return r },
			at:  "2026-01-02T00:00:05.2Z", catchUp: 13, want: []string{"2025-12-31/catch-up", "2026-01-01/fire"}, wantLast: "2026-01-02T00:00:05.2Z"},
		{name: "every 5s, on time", c: every5, rec: func(r Record) Record { r.LastFire = utc("2026-01-02T00:00:00.1Z"); return r },
			at: "2026-01-02T00:00:05.2Z", catchUp: 13, want: []string{"2026-01-01/fire"}, wantLast: "2026-01-02T00:00:05.2Z"},
		{name: "every 5s, a fire seen twice", c: every5, rec: func(r Record) Record { r.LastFire = utc("2026-01-02T00:00:05.2Z"); return r },
			at: "2026-01-02T00:00:05.2Z", catchUp: 13, wantLast: "2026-01-02T00:00:05.2Z"},
	} {
		r := tc.rec(rec)
		r.Schedule = tc.c.Schedule
		p := Fire(tc.c, r, utc(tc.at), tc.catchUp)
		if got := strings.Join(keys(p), " "); got != strings.Join(tc.want, " ") {
			t.Errorf("%s: starts %q, want %q", tc.name, got, strings.Join(tc.want, " "))
		}
		if p.Skipped != tc.skipped {
			t.Errorf("%s: skipped %d, want %d", tc.name, p.Skipped, tc.skipped)
		}
		if tc.wantLast != "" && !p.Next.LastFire.Equal(utc(tc.wantLast)) {
			t.Errorf("%s: last fire %s, want %s", tc.name, p.Next.LastFire.UTC().Format(time.RFC3339Nano), tc.wantLast)
		}
		for _, s := range p.Starts {
			if !p.Next.Has(s.Period.Key) || s.Request.ID != tc.c.ID+"-"+s.Period.Key {
				t.Errorf("%s: %s not recorded, or request id %s", tc.name, s.Period.Key, s.Request.ID)
			}
		}
		if len(r.Covered) > 0 && len(p.Next.Covered) > len(r.Covered) && &r.Covered[0] == &p.Next.Covered[0] {
			t.Errorf("%s: the plan shares the record's covered list", tc.name)
		}
	}
}

func TestServerSupports(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"2.15.2": true, "2.14.0": true, "v2.14.1-beta": true, "3.0.0": true,
		"2.12.3": false, "2.11.0": false, "2.9": false, "": false, "dev": false} {
		if ServerSupports(v) != want {
			t.Errorf("ServerSupports(%q) = %v", v, !want)
		}
	}
}

// An estate is a period kind: a schedule fires it for each month, its
// filters copied, not shared, into each request.
func TestEstateTemplate(t *testing.T) {
	t.Parallel()
	c, err := Compile(messages.Schedule{Version: 1, ID: "estate-monthly", Cron: "0 6 3 * *", Period: PreviousMonth,
		Request: messages.ScheduledRequest{Kind: messages.KindEstate, Profile: "contoso",
			Params: messages.Params{AgreementTypes: []string{"EnterpriseAgreement"}, ExcludeAccounts: []string{"12345678"}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Request(Month(utc("2026-10-01T00:00:00Z")))
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	if r.ID != "estate-monthly-2026-10" || r.Kind != messages.KindEstate || r.Params.PeriodStartDate != "2026-10-01" ||
		r.Params.PeriodEndDate != "2026-10-31" || r.Profile != "contoso" {
		t.Errorf("request %+v", r)
	}
	r.Params.ExcludeAccounts[0] = "changed"
	if c.Schedule.Request.Params.ExcludeAccounts[0] != "12345678" {
		t.Error("the request shares the template's filter list")
	}
}
