// Package coverage answers the month-end question: for each known billing
// scope (a billing account or a billing subscription) and each month, were
// all its documents archived? A record per scope and month says what the
// latest collection of that scope found for the month (documents listed,
// archived, failed, skipped with their reasons, when, by which
// collection); Grid draws scopes by months from the records and the
// registered scopes (a scope registered but never collected shows as
// never collected). This file is pure: records, keys and the grid; store.go
// keeps them in a key-value bucket.
package coverage

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// The kinds of scope.
const (
	ScopeAccount      = "account"
	ScopeSubscription = "subscription"
)

// Scope is a billing scope that coverage knows of.
type Scope struct {
	// Profile is the credential profile it is collected with (empty: the
	// default profile).
	Profile string `json:"profile,omitempty"`
	// Kind is ScopeAccount or ScopeSubscription; ID the billing account's
	// name or the subscription's id.
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Name and AgreementType, when known (discovery knows them; a
	// collection does not).
	Name          string `json:"name,omitempty"`
	AgreementType string `json:"agreementType,omitempty"`
}

// Ref is what names a scope: its profile, kind and id.
type Ref struct{ Profile, Kind, ID string }

// Ref returns the scope's name.
func (s Scope) Ref() Ref { return Ref{s.Profile, s.Kind, s.ID} }

// Check reports what is wrong with a scope to register.
func (s Scope) Check() error {
	switch {
	case s.Kind != ScopeAccount && s.Kind != ScopeSubscription:
		return fmt.Errorf("scope kind %q is not %s or %s", s.Kind, ScopeAccount, ScopeSubscription)
	case s.ID == "" || len(s.ID) > 256:
		return fmt.Errorf("scope id must be 1 to 256 characters")
	case len(s.Profile) > 64 || len(s.Name) > 256 || len(s.AgreementType) > 64:
		return fmt.Errorf("scope profile, name or agreement type too long")
	}
	return nil
}

// ScopeOf is the scope a collection request collects.
func ScopeOf(r messages.Request) Scope {
	if r.Params.SubscriptionID != "" {
		return Scope{Profile: r.Profile, Kind: ScopeSubscription, ID: r.Params.SubscriptionID}
	}
	return Scope{Profile: r.Profile, Kind: ScopeAccount, ID: r.Params.BillingAccountName}
}

// Record is what the latest collection of a scope found for one month.
type Record struct {
	Scope Scope `json:"scope"`
	// Month is YYYY-MM.
	Month string `json:"month"`
	// Collection is the collection's request id; AcceptedAt when it was
	// accepted (a record of a collection accepted later replaces this
	// one), CollectedAt when it ended.
	Collection  string    `json:"collection"`
	AcceptedAt  time.Time `json:"acceptedAt"`
	CollectedAt time.Time `json:"collectedAt"`
	// Code and Message, when the collection itself failed (its listing
	// was refused, say): nothing of the month is known then.
	Code    messages.Code `json:"code,omitempty"`
	Message string        `json:"message,omitempty"`
	// Listed counts the month's documents: Archived and Failed those
	// fetched, by outcome, Skipped those not fetched (by reason in
	// Reasons).
	Listed   int            `json:"listed"`
	Archived int            `json:"archived"`
	Failed   int            `json:"failed"`
	Skipped  int            `json:"skipped"`
	Reasons  map[string]int `json:"reasons,omitempty"`
	Failures []Failure      `json:"failures,omitempty"`
}

// Failure is one failed document of a record's month.
type Failure struct {
	Child        string        `json:"child"`
	InvoiceName  string        `json:"invoiceName"`
	DocumentName string        `json:"documentName,omitempty"`
	Code         messages.Code `json:"code"`
}

// maxFailures bounds a record's Failures (its counts stay whole).
const maxFailures = 50

// Status is a cell of the grid.
type Status string

// The statuses of a scope's month.
const (
	// Complete: collected, and no document failed (skipped ones are
	// accounted for, with their reasons).
	Complete Status = "complete"
	// Partial: some documents archived, some failed.
	Partial Status = "partial"
	// Failed: the collection failed, or every document it fetched did.
	Failed Status = "failed"
	// Never: a known scope with no record of the month.
	Never Status = "never_collected"
)

// Statuses lists every Status, best first.
var Statuses = []Status{Complete, Partial, Failed, Never}

// StatusOf is a record's status; Never for none.
func StatusOf(r *Record) Status {
	switch {
	case r == nil:
		return Never
	case r.Code != "":
		return Failed
	case r.Failed == 0:
		return Complete
	case r.Archived == 0:
		return Failed
	}
	return Partial
}

// Records makes a collection's records, one per month its period covers
// whole (a month it covers in part, a day of it say, gets none: it did not
// list the month's every invoice), from its outcome: a completed
// collection's counts by month, with the month's failed children; or a
// failed collection's error in each month.
func Records(req messages.Request, completed *messages.Completed, failed *messages.Failed) []Record {
	base := Record{Scope: ScopeOf(req), Collection: req.ID}
	whole := WholeMonths(req.Params.PeriodStartDate, req.Params.PeriodEndDate)
	var recs []Record
	switch {
	case completed != nil && completed.Collected != nil:
		base.AcceptedAt, base.CollectedAt = completed.AcceptedAt, completed.CompletedAt
		sum := completed.Collected
		at := map[string]int{}
		for _, m := range sum.Months {
			if !slices.Contains(whole, m.Month) {
				continue
			}
			r := base
			r.Month, r.Listed, r.Archived, r.Failed, r.Skipped = m.Month, m.Documents+m.Skipped, m.Completed, m.Failed, m.Skipped
			r.Reasons = maps.Clone(m.Reasons)
			at[m.Month] = len(recs)
			recs = append(recs, r)
		}
		for _, c := range sum.Children {
			if i, ok := at[c.Month]; ok && c.Outcome == messages.OutcomeFailed && len(recs[i].Failures) < maxFailures {
				recs[i].Failures = append(recs[i].Failures, Failure{Child: c.ID, InvoiceName: c.InvoiceName, DocumentName: c.DocumentName, Code: c.Code})
			}
		}
	case failed != nil:
		if failed.AcceptedAt != nil {
			base.AcceptedAt = *failed.AcceptedAt
		}
		base.CollectedAt, base.Code, base.Message = failed.FailedAt, failed.Code, failed.Message
		for _, m := range whole {
			r := base
			r.Month = m
			recs = append(recs, r)
		}
	}
	return recs
}

// Newer reports whether record r should replace stored: it is of a
// collection accepted later, or of the same collection.
func (r Record) Newer(stored Record) bool {
	return r.Collection == stored.Collection || !r.AcceptedAt.Before(stored.AcceptedAt)
}

// maxMonths bounds the months of a period or a grid.
const maxMonths = 120

// Months lists the months (YYYY-MM) a period of ISO dates (or of months)
// touches, oldest first, at most maxMonths; none for an unreadable period.
func Months(from, to string) []string {
	f, err1 := parseMonth(from)
	t, err2 := parseMonth(to)
	if err1 != nil || err2 != nil || t.Before(f) {
		return nil
	}
	var out []string
	for m := f; !m.After(t) && len(out) < maxMonths; m = m.AddDate(0, 1, 0) {
		out = append(out, m.Format("2006-01"))
	}
	return out
}

// WholeMonths lists the months (YYYY-MM) a period of ISO dates covers
// from their first day to their last, oldest first.
func WholeMonths(from, to string) []string {
	f, err1 := time.Parse(time.DateOnly, from)
	t, err2 := time.Parse(time.DateOnly, to)
	if err1 != nil || err2 != nil {
		return nil
	}
	var out []string
	for _, m := range Months(from, to) {
		first, _ := time.Parse("2006-01", m)
		if !first.Before(f) && !first.AddDate(0, 1, -1).After(t) {
			out = append(out, m)
		}
	}
	return out
}

// parseMonth reads YYYY-MM or YYYY-MM-DD as the first of its month.
func parseMonth(s string) (time.Time, error) {
	if len(s) >= 7 {
		if t, err := time.Parse("2006-01", s[:7]); err == nil && (len(s) == 7 || len(s) == 10) {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a month (YYYY-MM)", s)
}

// ParseRange checks a grid's months, from and to as YYYY-MM.
func ParseRange(from, to string) ([]string, error) {
	f, err := parseMonth(from)
	if err != nil || len(from) != 7 {
		return nil, fmt.Errorf("from: %q is not a month (YYYY-MM)", from)
	}
	t, err := parseMonth(to)
	if err != nil || len(to) != 7 {
		return nil, fmt.Errorf("to: %q is not a month (YYYY-MM)", to)
	}
	if t.Before(f) {
		return nil, fmt.Errorf("to (%s) is before from (%s)", to, from)
	}
	if n := (t.Year()-f.Year())*12 + int(t.Month()-f.Month()) + 1; n > maxMonths {
		return nil, fmt.Errorf("%d months asked, at most %d", n, maxMonths)
	}
	return Months(from, to), nil
}

// Cell is one scope's month in the grid.
type Cell struct {
	Month  string
	Status Status
	// Record is the month's record; nil when never collected.
	Record *Record
}

// Row is one scope's months.
type Row struct {
	Scope Scope
	Cells []Cell
}

// Grid draws scopes by months: every registered scope and every scope a
// record names, ordered by profile, kind and id, each with a cell per
// month. A scope's registered name and agreement type win over a
// record's.
func Grid(scopes []Scope, records []Record, months []string) []Row {
	known := map[Ref]Scope{}
	for _, r := range records {
		known[r.Scope.Ref()] = r.Scope
	}
	for _, s := range scopes {
		known[s.Ref()] = s
	}
	byCell := map[Ref]map[string]*Record{}
	for i := range records {
		r := &records[i]
		ref := r.Scope.Ref()
		if byCell[ref] == nil {
			byCell[ref] = map[string]*Record{}
		}
		if old := byCell[ref][r.Month]; old == nil || r.Newer(*old) {
			byCell[ref][r.Month] = r
		}
	}
	refs := slices.SortedFunc(maps.Keys(known), func(a, b Ref) int {
		return cmp.Or(strings.Compare(a.Profile, b.Profile), strings.Compare(a.Kind, b.Kind), strings.Compare(a.ID, b.ID))
	})
	rows := make([]Row, 0, len(refs))
	for _, ref := range refs {
		row := Row{Scope: known[ref]}
		for _, m := range months {
			rec := byCell[ref][m]
			row.Cells = append(row.Cells, Cell{Month: m, Status: StatusOf(rec), Record: rec})
		}
		rows = append(rows, row)
	}
	return rows
}

// DueMonth is the latest month whose end lies grace or more before now:
// the month every scope's documents should be archived for by now.
func DueMonth(now time.Time, grace time.Duration) string {
	now = now.UTC()
	m := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC) // the end of last month
	for now.Sub(m) < grace {
		m = m.AddDate(0, -1, 0)
	}
	return m.AddDate(0, -1, 0).Format("2006-01")
}

// Late counts the scopes whose due month (DueMonth) is not complete, by
// status: what the coverage metric reports.
func Late(scopes []Scope, records []Record, now time.Time, grace time.Duration) (month string, late map[Status]int) {
	month = DueMonth(now, grace)
	late = map[Status]int{}
	for _, row := range Grid(scopes, records, []string{month}) {
		if s := row.Cells[0].Status; s != Complete {
			late[s]++
		}
	}
	return month, late
}
