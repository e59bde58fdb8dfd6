package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The relative periods a schedule's fire may cover.
const (
	PreviousMonth = "previous-month"
	MonthToDate   = "month-to-date"
	PreviousDay   = "previous-day"
	// PreviousNDays is followed by ":N", 1 to MaxDays.
	PreviousNDays = "previous-n-days"
	// MaxDays bounds N of previous-n-days.
	MaxDays = 366
)

// Relative is a parsed relative period; the zero value is "no period".
type Relative struct {
	// Name is one of the constants above, or empty.
	Name string
	// Days is N of previous-n-days.
	Days int
}

// ParseRelative reads a relative period: previous-month, month-to-date,
// previous-day, previous-n-days:N, or empty for none.
func ParseRelative(s string) (Relative, error) {
	switch s {
	case "":
		return Relative{}, nil
	case PreviousMonth, MonthToDate, PreviousDay:
		return Relative{Name: s}, nil
	}
	if n, ok := strings.CutPrefix(s, PreviousNDays+":"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > MaxDays {
			return Relative{}, fmt.Errorf("period %q: N of previous-n-days:N must be a whole number from 1 to %d", s, MaxDays)
		}
		return Relative{Name: PreviousNDays, Days: days}, nil
	}
	return Relative{}, fmt.Errorf("period %q: want previous-month, month-to-date, previous-day or previous-n-days:N", s)
}

func (r Relative) String() string {
	if r.Name == PreviousNDays {
		return fmt.Sprintf("%s:%d", r.Name, r.Days)
	}
	return r.Name
}

// Period is the stretch of days one request covers.
type Period struct {
	// Key names it in request ids: 2026-10 for a month, 2026-10-05 for a
	// day, 2026-10-01_2026-10-15 for other ranges, and for a schedule
	// without a period the fire's time in UTC (20261110T050000Z).
	Key string `json:"key"`
	// From and To are its first and last day (YYYY-MM-DD), empty without
	// a period.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// Resolve returns the period a fire at t covers, with the dates read in
// loc (UTC when nil): the month before t's month, t's month up to t's
// day, the day before t's day, or the N days before t's day.
func (r Relative) Resolve(t time.Time, loc *time.Location) Period {
	if loc == nil {
		loc = time.UTC
	}
	l := t.In(loc)
	y, m, d := l.Date()
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC) }
	today := day(y, m, d)
	switch r.Name {
	case PreviousMonth:
		return Month(day(y, m-1, 1))
	case MonthToDate:
		return span(day(y, m, 1), today)
	case PreviousDay:
		return Day(today.AddDate(0, 0, -1))
	case PreviousNDays:
		return span(today.AddDate(0, 0, -r.Days), today.AddDate(0, 0, -1))
	}
	return Period{Key: t.UTC().Format("20060102T150405Z")}
}

// Month is the period of the calendar month of t.
func Month(t time.Time) Period {
	first := time.Date(t.Year(), t.Month(), 1, 12, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1)
	return Period{Key: first.Format("2006-01"), From: first.Format(time.DateOnly), To: last.Format(time.DateOnly)}
}

// Day is the period of the day of t.
func Day(t time.Time) Period {
	d := t.Format(time.DateOnly)
	return Period{Key: d, From: d, To: d}
}

func span(from, to time.Time) Period {
	f, t := from.Format(time.DateOnly), to.Format(time.DateOnly)
	if f == t {
		return Period{Key: f, From: f, To: t}
	}
	return Period{Key: f + "_" + t, From: f, To: t}
}

// Named returns the period a key names, for "run --period": a month
// (2026-10) for previous-month, a day (2026-10-05) for previous-day and
// month-to-date (the month up to that day), the last day of the N days
// for previous-n-days:N.
func (r Relative) Named(key string) (Period, error) {
	switch r.Name {
	case PreviousMonth:
		t, err := time.Parse("2006-01", key)
		if err != nil {
			return Period{}, fmt.Errorf("period %q: a %s schedule's period is a month such as 2026-10", key, r)
		}
		return Month(t), nil
	case "":
		return Period{}, fmt.Errorf("period %q: the schedule has no period; run it without one", key)
	}
	t, err := time.Parse(time.DateOnly, key)
	if err != nil {
		return Period{}, fmt.Errorf("period %q: a %s schedule's period is named by a day such as 2026-10-05", key, r)
	}
	switch r.Name {
	case PreviousDay:
		return Day(t), nil
	case MonthToDate:
		return span(time.Date(t.Year(), t.Month(), 1, 12, 0, 0, 0, time.UTC), t), nil
	}
	return span(t.AddDate(0, 0, 1-r.Days), t), nil
}

// Between returns the periods from the one holding from to the one
// holding to, for a backfill: every month for previous-month, every day
// for previous-day. Other periods overlap or depend on the fire time and
// are refused. At most limit periods.
func (r Relative) Between(from, to time.Time, limit int) ([]Period, error) {
	if to.Before(from) {
		return nil, fmt.Errorf("backfill: %s is before %s", to.Format(time.DateOnly), from.Format(time.DateOnly))
	}
	var out []Period
	switch r.Name {
	case PreviousMonth:
		for t := time.Date(from.Year(), from.Month(), 1, 12, 0, 0, 0, time.UTC); !t.After(to.Add(12 * time.Hour)); t = t.AddDate(0, 1, 0) {
			out = append(out, Month(t))
		}
	case PreviousDay:
		for t := time.Date(from.Year(), from.Month(), from.Day(), 12, 0, 0, 0, time.UTC); !t.After(to.Add(12 * time.Hour)); t = t.AddDate(0, 0, 1) {
			out = append(out, Day(t))
		}
	default:
		return nil, fmt.Errorf("backfill: only previous-month and previous-day schedules have periods that follow one another; this one's is %q", r)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("backfill: %d periods, more than the limit of %d", len(out), limit)
	}
	return out, nil
}
