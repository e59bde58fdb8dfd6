package coverage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/internal/natstest"
	"github.com/azbilling/worker/pkg/messages"
)

const mca = "aabbccdd-1111-2222-3333-444455556666:99990000-1111-2222-3333-444455556666_2019-05-31"

func TestStatusOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rec  *coverage.Record
		want coverage.Status
	}{
		{"no record", nil, coverage.Never},
		{"nothing listed", &coverage.Record{}, coverage.Complete},
		{"all archived, some skipped", &coverage.Record{Listed: 5, Archived: 3, Skipped: 2}, coverage.Complete},
		{"one failed", &coverage.Record{Listed: 5, Archived: 4, Failed: 1}, coverage.Partial},
		{"all failed", &coverage.Record{Listed: 2, Failed: 2}, coverage.Failed},
		{"the collection failed", &coverage.Record{Code: messages.CodeAccessDenied}, coverage.Failed},
	} {
		if got := coverage.StatusOf(tc.rec); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestEscapeKeepsNamesApartAndKeysValid(t *testing.T) {
	t.Parallel()
	valid := func(k string) bool {
		for _, tok := range strings.Split(k, ".") {
			if tok == "" {
				return false
			}
			for _, c := range tok {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
					return false
				}
			}
		}
		return true
	}
	seen := map[string]string{}
	for _, id := range []string{mca, "12345678", "", "_", "_5F", "a.b", "a_2Eb", "PCN.abc", "a:b", "a_3Ab"} {
		k := coverage.RecordKey(coverage.Ref{Kind: coverage.ScopeAccount, ID: id}, "2026-10")
		if !valid(k) {
			t.Errorf("key %q of %q is not a valid key", k, id)
		}
		if other, ok := seen[k]; ok {
			t.Errorf("%q and %q share the key %q", id, other, k)
		}
		seen[k] = id
	}
}

func TestMonthsAndRange(t *testing.T) {
	t.Parallel()
	if got := strings.Join(coverage.Months("2026-01-15", "2026-03-01"), ","); got != "2026-01,2026-02,2026-03" {
		t.Errorf("months of a period: %s", got)
	}
	if got := coverage.Months("2026-03-01", "2026-01-01"); got != nil {
		t.Errorf("a backwards period: %v", got)
	}
	for _, tc := range [][3]string{
		{"2026-01-01", "2026-03-31", "2026-01,2026-02,2026-03"},
		{"2026-01-15", "2026-03-31", "2026-02,2026-03"},
		{"2026-01-01", "2026-02-27", "2026-01"},
		{"2024-02-01", "2024-02-29", "2024-02"},
		{"2026-10-05", "2026-10-05", ""},
	} {
		if got := strings.Join(coverage.WholeMonths(tc[0], tc[1]), ","); got != tc[2] {
			t.Errorf("whole months of %s..%s: %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
	if m, err := coverage.ParseRange("2026-01", "2026-11"); err != nil || len(m) != 11 || m[10] != "2026-11" {
		t.Errorf("range: %v %v", m, err)
	}
	for _, bad := range [][2]string{{"2026-1", "2026-11"}, {"2026-01", "2026-13"}, {"2026-05", "2026-04"}, {"2000-01", "2026-01"}, {"2026-01-01", "2026-02"}} {
		if _, err := coverage.ParseRange(bad[0], bad[1]); err == nil {
			t.Errorf("range %v accepted", bad)
		}
	}
}

func completedCollection(id string, accepted time.Time, months ...messages.MonthCount) (messages.Request, *messages.Completed) {
	req := messages.Request{Version: 1, ID: id, Kind: messages.KindCollection, Profile: "contoso",
		Params: messages.Params{BillingAccountName: mca, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-02-28"}}
	sum := &messages.CollectionSummary{Months: months, Children: []messages.ChildOutcome{
		{ID: id + "-1", InvoiceName: "G1", DocumentName: "TR-G1", Outcome: messages.OutcomeFailed, Code: messages.CodeAzureError, Month: "2026-02"},
		{ID: id + "-2", InvoiceName: "G1", DocumentName: "G1", Outcome: messages.OutcomeCompleted, Month: "2026-02"},
	}}
	return req, &messages.Completed{ID: id, Kind: messages.KindCollection, Collected: sum, AcceptedAt: accepted, CompletedAt: accepted.Add(time.Minute)}
}

func TestRecordsOfACollection(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	req, ev := completedCollection("c1", t0,
		messages.MonthCount{Month: "2026-01", Documents: 2, Completed: 2, Skipped: 1, Reasons: map[string]int{messages.SkipExternal: 1}},
		messages.MonthCount{Month: "2026-02", Documents: 2, Completed: 1, Failed: 1})
	recs := coverage.Records(req, ev, nil)
	if len(recs) != 2 {
		t.Fatalf("records %+v", recs)
	}
	jan, feb := recs[0], recs[1]
	if jan.Month != "2026-01" || jan.Listed != 3 || jan.Archived != 2 || jan.Skipped != 1 || jan.Reasons[messages.SkipExternal] != 1 ||
		coverage.StatusOf(&jan) != coverage.Complete || jan.Collection != "c1" || jan.Scope.ID != mca || jan.Scope.Profile != "contoso" {
		t.Errorf("January %+v", jan)
	}
	if coverage.StatusOf(&feb) != coverage.Partial || len(feb.Failures) != 1 || feb.Failures[0].Child != "c1-1" || len(jan.Failures) != 0 {
		t.Errorf("February %+v", feb)
	}
	// A failed collection: every month of its period failed, with its code.
	accepted := t0
	failed := coverage.Records(req, nil, &messages.Failed{Code: messages.CodeAccessDenied, Message: "403", AcceptedAt: &accepted, FailedAt: t0})
	if len(failed) != 2 || failed[1].Code != messages.CodeAccessDenied || coverage.StatusOf(&failed[0]) != coverage.Failed {
		t.Errorf("failed collection's records %+v", failed)
	}
	// A period that covers January in part: February's record only.
	req.Params.PeriodStartDate = "2026-01-20"
	if recs := coverage.Records(req, ev, nil); len(recs) != 1 || recs[0].Month != "2026-02" {
		t.Errorf("records of a period from the 20th: %+v", recs)
	}
}

func TestGrid(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	acct := coverage.Scope{Kind: coverage.ScopeAccount, ID: "12345678"}
	sub := coverage.Scope{Kind: coverage.ScopeSubscription, ID: "11111111-2222-3333-4444-555555555555", Name: "Pay as you go"}
	old := coverage.Record{Scope: acct, Month: "2026-01", Collection: "old", AcceptedAt: t0, Listed: 1, Failed: 1}
	newer := coverage.Record{Scope: acct, Month: "2026-01", Collection: "new", AcceptedAt: t0.Add(time.Hour), Listed: 1, Archived: 1}
	feb := coverage.Record{Scope: coverage.Scope{Kind: coverage.ScopeAccount, ID: "12345678"}, Month: "2026-02", Collection: "new", AcceptedAt: t0, Listed: 2, Archived: 1, Failed: 1}
	outside := coverage.Record{Scope: acct, Month: "2025-12", Collection: "x", Code: messages.CodeTimeout}
	rows := coverage.Grid([]coverage.Scope{sub, {Kind: coverage.ScopeAccount, ID: "12345678", Name: "Contoso EA", AgreementType: "EnterpriseAgreement"}},
		[]coverage.Record{newer, feb, old, outside}, []string{"2026-01", "2026-02", "2026-03"})
	var got []string
	for _, r := range rows {
		var cells []string
		for _, c := range r.Cells {
			cells = append(cells, string(c.Status))
		}
		got = append(got, fmt.Sprintf("%s %s %q: %s", r.Scope.Kind, r.Scope.ID, r.Scope.Name, strings.Join(cells, " ")))
	}
	want := []string{
		`account 12345678 "Contoso EA": complete partial never_collected`,
		`subscription 11111111-2222-3333-4444-555555555555 "Pay as you go": never_collected never_collected never_collected`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("grid:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rows[0].Cells[0].Record.Collection != "new" {
		t.Errorf("the older collection's record won: %+v", rows[0].Cells[0].Record)
	}
}

func TestDueMonthAndLate(t *testing.T) {
	t.Parallel()
	grace := 5 * 24 * time.Hour
	for _, tc := range []struct {
		now  time.Time
		want string
	}{
		{time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC), "2026-10"},  // five days after October ended
		{time.Date(2026, 11, 5, 23, 0, 0, 0, time.UTC), "2026-09"}, // not yet
		{time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC), "2025-12"},
		{time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), "2025-11"},
	} {
		if got := coverage.DueMonth(tc.now, grace); got != tc.want {
			t.Errorf("due month at %s: %s, want %s", tc.now, got, tc.want)
		}
	}
	a := coverage.Scope{Kind: coverage.ScopeAccount, ID: "1"}
	b := coverage.Scope{Kind: coverage.ScopeAccount, ID: "2"}
	c := coverage.Scope{Kind: coverage.ScopeAccount, ID: "3"}
	month, late := coverage.Late([]coverage.Scope{a, b, c}, []coverage.Record{
		{Scope: a, Month: "2026-10", Collection: "x"}, {Scope: b, Month: "2026-10", Collection: "y", Failed: 1, Archived: 1},
		{Scope: c, Month: "2026-09", Collection: "z"},
	}, time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), grace)
	if month != "2026-10" || late[coverage.Partial] != 1 || late[coverage.Never] != 1 || late[coverage.Complete] != 0 || len(late) != 2 {
		t.Errorf("late in %s: %v", month, late)
	}
}

func TestStoreKeepsTheNewestCollection(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_coverage"})
	if err != nil {
		t.Fatal(err)
	}
	st := coverage.Store{KV: kv}
	t0 := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	if err := st.PutScope(ctx, coverage.Scope{Profile: "contoso", Kind: coverage.ScopeAccount, ID: mca, Name: "Contoso MCA", AgreementType: "MicrosoftCustomerAgreement"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutScope(ctx, coverage.Scope{Kind: "tenant", ID: "x"}); err == nil {
		t.Error("a scope of an unknown kind was registered")
	}
	newReq, newEv := completedCollection("new", t0.Add(time.Hour), messages.MonthCount{Month: "2026-01", Documents: 1, Completed: 1})
	oldReq, oldEv := completedCollection("old", t0, messages.MonthCount{Month: "2026-01", Documents: 1, Failed: 1})
	// The newer collection ends first; the older one's record must not
	// replace it.
	if err := st.PutRecords(ctx, coverage.Records(newReq, newEv, nil)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRecords(ctx, coverage.Records(oldReq, oldEv, nil)); err != nil {
		t.Fatal(err)
	}
	scopes, recs, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(scopes) != 1 || scopes[0].Name != "Contoso MCA" || len(recs) != 1 || recs[0].Collection != "new" {
		t.Fatalf("scopes %+v, records %+v", scopes, recs)
	}
	// A newer one still replaces it.
	newestReq, newestEv := completedCollection("newest", t0.Add(2*time.Hour), messages.MonthCount{Month: "2026-01", Documents: 1, Failed: 1})
	if err := st.PutRecords(ctx, coverage.Records(newestReq, newestEv, nil)); err != nil {
		t.Fatal(err)
	}
	_, recs, _ = st.Load(ctx)
	if len(recs) != 1 || recs[0].Collection != "newest" || coverage.StatusOf(&recs[0]) != coverage.Failed {
		t.Errorf("records %+v", recs)
	}
	// An empty bucket reads as nothing.
	empty, _ := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "test_empty"})
	if s, r, err := (coverage.Store{KV: empty}).Load(ctx); err != nil || len(s)+len(r) != 0 {
		t.Errorf("empty bucket: %v %v %v", s, r, err)
	}
}
