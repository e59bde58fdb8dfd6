package throttle_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/messages"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// 20 calls a second, burst 40: the benchmark's budget.
var limit = throttle.Limit{Rate: throttle.Rate{Calls: 20, Per: time.Second}, Burst: 40}

// learnedAtCeiling is an entry whose estimate is the configured limit.
func learnedAtCeiling() throttle.Entry {
	return throttle.Entry{Learned: throttle.NewLearned(limit, t0)}
}

func TestReserveSpreadsAtTheRateAfterTheBurst(t *testing.T) {
	t.Parallel()
	e := learnedAtCeiling()
	for i := range 40 {
		if at := e.Reserve(limit, t0); !at.Equal(t0) {
			t.Fatalf("call %d of the burst: slot %s, want now", i, at.Sub(t0))
		}
	}
	for i := 1; i <= 20; i++ {
		if at := e.Reserve(limit, t0); at.Sub(t0) != time.Duration(i)*50*time.Millisecond {
			t.Fatalf("call %d past the burst: slot +%s, want +%s", i, at.Sub(t0), time.Duration(i)*50*time.Millisecond)
		}
	}
	if e.Calls != 60 || e.Deferred != 20 {
		t.Errorf("calls %d deferred %d", e.Calls, e.Deferred)
	}
	// Idle for 2 s: the bucket is full again.
	if got := e.Tokens(limit, t0.Add(3*time.Second)); got != 40 {
		t.Errorf("tokens after idling: %v", got)
	}
}

func TestPauseHoldsEveryCallAndEndsWithoutBurst(t *testing.T) {
	t.Parallel()
	var e throttle.Entry
	until := t0.Add(10 * time.Second)
	if added := e.Pause(limit, until, "retry-after", t0); added != 10*time.Second {
		t.Fatalf("pause set for %s", added)
	}
	if added := e.Pause(limit, t0.Add(5*time.Second), "retry-after", t0.Add(time.Second)); added != 0 {
		t.Errorf("a shorter pause changed it by %s", added)
	}
	if added := e.Pause(limit, t0.Add(12*time.Second), "retry-after", t0.Add(time.Second)); added != 2*time.Second {
		t.Errorf("extended by %s, want 2s", added)
	}
	if e.Throttled != 3 || e.Pauses != 2 || e.PausedSeconds != 12 || !e.Paused(t0.Add(11*time.Second)) || e.InFlightAtPause != 2 {
		t.Errorf("%+v", e)
	}
	until = t0.Add(12 * time.Second)
	for i := range 3 {
		want := until.Add(time.Duration(i) * 50 * time.Millisecond)
		if at := e.Reserve(limit, t0.Add(time.Second)); !at.Equal(want) {
			t.Errorf("call %d: slot %s, want %s", i, at.Sub(t0), want.Sub(t0))
		}
	}
}

// A report slows the bucket to what Azure has left, less a reserve (one
// call and a tenth of the burst); its bucket size comes from the largest
// report, and until the reports allow a fit, its rate is taken as a refill
// of the bucket in 2 s.
func TestReportSlowsTheBucket(t *testing.T) {
	t.Parallel()
	e := learnedAtCeiling()
	if !e.Report(limit, throttle.Remaining{Header: throttle.HeaderRemainingTenantWrites, Value: 9}, 0, false, t0) {
		t.Fatal("a report of 9 left did not slow a full bucket")
	}
	eff := e.Effective(limit)
	if eff.Burst != 10 || eff.Rate.Interval() != 200*time.Millisecond {
		t.Errorf("learned %+v, want burst 10 (9 left after one call) at 5/s", eff)
	}
	if got := e.Tokens(limit, t0); got != 7 {
		t.Errorf("tokens %v, want 7 (9 left, two in reserve)", got)
	}
	e.Reserve(limit, t0)
	if got := e.Tokens(limit, t0); got != 6 {
		t.Errorf("tokens %v after a call, want 6", got)
	}
	e.Report(limit, throttle.Remaining{Value: 8}, 0, false, t0)
	if got := e.Tokens(limit, t0); got != 6 {
		t.Errorf("tokens %v, want 6: 8 left after that call is what the bucket holds and the reserve", got)
	}
	e.Report(limit, throttle.Remaining{Value: 5}, 0, false, t0)
	if got := e.Tokens(limit, t0); got != 3 {
		t.Errorf("tokens %v, want 3: 5 left (another client's calls) slows the bucket", got)
	}
	for range 3 {
		e.Reserve(limit, t0)
	}
	if at := e.Reserve(limit, t0); at.Sub(t0) != 200*time.Millisecond {
		t.Errorf("fourth call: +%s, want one interval", at.Sub(t0))
	}
}

// Before the first answer a scope has no estimate: one call goes (the
// probe); the calls asked for while its answer is awaited are woken 500 ms
// later inside a pause of the scope, so that they ask again under the
// budget the answer tells; they take no slot of the bucket. The answer
// ends that pause: they go when they ask again.
func TestFirstCallProbesTheBudget(t *testing.T) {
	t.Parallel()
	var e throttle.Entry
	if at := e.Reserve(limit, t0); !at.Equal(t0) {
		t.Fatalf("the probe: +%s", at.Sub(t0))
	}
	for i := 1; i <= 3; i++ {
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		if at := e.Reserve(limit, now); at.Sub(now) != 500*time.Millisecond || !e.Paused(at) || e.PauseSource != throttle.PauseProbe {
			t.Fatalf("call %d: +%s, paused until +%s (%s)", i, at.Sub(now), e.PausedUntil.Sub(t0), e.PauseSource)
		}
	}
	if e.Calls != 1 || e.Deferred != 3 || e.Pauses != 0 {
		t.Errorf("calls %d deferred %d pauses %d", e.Calls, e.Deferred, e.Pauses)
	}
	// The probe's answer: 9 left. It ends the probe's pause; the calls
	// asking again get slots at once, at most the learned burst less the
	// reserve, then at the rate.
	answered := t0.Add(50 * time.Millisecond)
	e.Report(limit, throttle.Remaining{Value: 9}, 0, false, answered)
	if e.Paused(answered) {
		t.Fatalf("still paused until +%s (%s) after the probe's answer", e.PausedUntil.Sub(t0), e.PauseSource)
	}
	now := t0.Add(600 * time.Millisecond)
	free := 0
	for range 20 {
		if at := e.Reserve(limit, now); at.Equal(now) {
			free++
		}
	}
	if free > 10 || free < 5 {
		t.Errorf("%d calls at once after the answer, want at most the learned burst (10) less the reserve", free)
	}
	// A report of plenty ends the probe the same way, and so does a
	// throttled answer, whose pause is Azure's (not a call in flight).
	for name, answer := range map[string]func(e *throttle.Entry, now time.Time){
		"plenty": func(e *throttle.Entry, now time.Time) {
			e.Report(limit, throttle.Remaining{Value: 1000}, 0, false, now)
		},
		"throttled": func(e *throttle.Entry, now time.Time) {
			e.Pause(limit, now.Add(3*time.Second), "retry-after", now)
		},
	} {
		var p throttle.Entry
		p.Reserve(limit, t0)
		p.Reserve(limit, t0.Add(time.Millisecond))
		answer(&p, answered)
		if p.PauseSource == throttle.PauseProbe || p.InFlightAtPause != 0 {
			t.Errorf("%s: pause %s until +%s, %d in flight", name, p.PauseSource, p.PausedUntil.Sub(t0), p.InFlightAtPause)
		}
	}
	// A probe that got no answer (token refused, connection failed) lets
	// the next call probe at once.
	var failed throttle.Entry
	failed.Reserve(limit, t0)
	failed.Reserve(limit, t0.Add(time.Millisecond))
	if !failed.Unanswered(answered) || failed.Paused(answered) {
		t.Fatalf("unanswered probe: paused until +%s", failed.PausedUntil.Sub(t0))
	}
	if at := failed.Reserve(limit, answered); !at.Equal(answered) || failed.Calls != 2 {
		t.Errorf("after an unanswered probe: +%s, %d calls; want a new probe at once (a later slot would find its own probe holding it)", at.Sub(answered), failed.Calls)
	}
	if failed.Unanswered(answered.Add(time.Second)) && failed.Learned != nil {
		t.Error("an unanswered call after the estimate changed the entry")
	}
	// A probe whose answer never comes is given up after 10 s.
	var lost throttle.Entry
	lost.Reserve(limit, t0)
	if at := lost.Reserve(limit, t0.Add(10*time.Second)); !at.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("after a lost probe: +%s, want a new probe at once", at.Sub(t0))
	}
	// An entry of older code (no estimate) decodes and probes the same way.
	old, err := throttle.DecodeEntry([]byte(`{"version":1,"scope":"default.billing.writes","rate":"10/1s","burst":200,"tat":"2026-11-27T12:00:00Z","calls":5,"deferred":0,"throttled":0,"pauses":0,"pausedSeconds":0,"updatedAt":"2026-11-27T12:00:00Z"}`))
	if err != nil || old.Learned != nil || old.Calls != 5 {
		t.Fatalf("old entry: %+v, %v", old, err)
	}
	if got := old.Effective(limit); got.Burst != 1 || got.Rate.Interval() != 100*time.Millisecond {
		t.Errorf("old entry enforces %+v", got)
	}
}

func TestRemainingOf(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set(throttle.HeaderRemainingTenantWrites, "195")
	h.Set(throttle.HeaderRemainingTenantReads, "12")
	h.Set(throttle.HeaderCostManagementQPURemaining, "QueriesPerHour:597,QueriesPerMin:57,QueriesPer10Sec:9")
	for _, tc := range []struct {
		c    throttle.Class
		want int64
		ok   bool
	}{{throttle.BillingWrites, 195, true}, {throttle.BillingReads, 12, true}, {throttle.CostManagement, 9, true}} {
		r, ok := throttle.RemainingOf(tc.c, h, t0)
		if ok != tc.ok || r.Value != tc.want {
			t.Errorf("%s: %v %+v", tc.c, ok, r)
		}
	}
	if _, ok := throttle.RemainingOf(throttle.BillingWrites, http.Header{"X-Ms-Ratelimit-Remaining-Tenant-Writes": {"lots"}}, t0); ok {
		t.Error("a value that is not a count was read")
	}
}

func TestScopeOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind    messages.Kind
		polling bool
		want    throttle.Scope
	}{
		{messages.KindInvoiceSummary, false, "default.billing.writes"},
		{messages.KindInvoiceSummary, true, "default.billing.reads"},
		{messages.KindInvoice, false, "default.billing.reads"},
		{messages.KindInvoicePriceSheet, false, "default.costmanagement.requests"},
		{messages.KindInvoicePriceSheet, true, "default.costmanagement.requests"},
		{messages.KindProfilePriceSheet, false, "default.costmanagement.requests"},
		{messages.KindAccountDocument, false, "default.billing.writes"},
		{messages.KindAccountDocument, true, "default.billing.reads"},
		{messages.KindInvoiceTransactions, false, "default.billing.writes"},
		{messages.KindAccountInvoices, false, "default.billing.reads"},
		{messages.KindAccountInvoices, true, "default.billing.reads"},
		{messages.KindCostDetails, false, "default.costmanagement.requests"},
		{messages.KindCostDetails, true, "default.costmanagement.requests"},
		{messages.KindReservationDetails, false, "default.costmanagement.requests"},
		{messages.KindBenefitUtilization, true, "default.costmanagement.requests"},
		{messages.KindAccountPriceSheet, false, "default.costmanagement.requests"},
	} {
		if got := throttle.ScopeOf("default", tc.kind, tc.polling); got != tc.want {
			t.Errorf("%s polling=%v: %s, want %s", tc.kind, tc.polling, got, tc.want)
		}
	}
	s := throttle.ScopeOf("tenant-b", messages.KindInvoice, false)
	if s.Profile() != "tenant-b" || s.Class() != throttle.BillingReads {
		t.Errorf("%s: %s %s", s, s.Profile(), s.Class())
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"10/1s": "10/1s", "10/s": "10/1s", "600/1h": "600/1h", "12/10s": "12/10s", "1.5/1m": "1.5/1m", "3/1500ms": "3/1.5s"} {
		r, err := throttle.ParseRate(in)
		if err != nil || r.String() != want {
			t.Errorf("%q: %v %q, want %q", in, err, r, want)
		}
	}
	for _, bad := range []string{"", "10", "0/1s", "-1/1s", "10/0s", "x/1s", "10/fortnight"} {
		if _, err := throttle.ParseRate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Calls let through after the reported one were not counted by Azure yet:
// the bucket holds what Azure reported less those, and owes any excess.
func TestReportCountsCallsInFlight(t *testing.T) {
	t.Parallel()
	e := learnedAtCeiling()
	if !e.Report(limit, throttle.Remaining{Value: 19}, 11, false, t0) {
		t.Fatal("not slowed")
	}
	if got := e.Tokens(limit, t0); got != 5 {
		t.Errorf("tokens %v, want 5 (19 left, 11 let through since, 3 in reserve)", got)
	}
	owed := learnedAtCeiling()
	owed.Report(limit, throttle.Remaining{Value: 0}, 4, false, t0)
	// Four calls owed and one in reserve: the next slot is six intervals
	// away (of the learned 1 call a bucket of one refills in 2 s).
	iv := owed.Effective(limit).Rate.Interval()
	if at := owed.Reserve(limit, t0); at.Sub(t0) != 6*iv || iv != 2*time.Second {
		t.Errorf("next slot +%s, want 6 intervals of 2s", at.Sub(t0))
	}
}

// Without headers, the estimate the spacing of 429s lowers keeps the
// bucket's level: the slots the configured burst of 200 put after a pause
// (an empty bucket of 200, 20 s at 10/s) are not carried over to the
// smaller bucket, where they would hold the next call for most of them.
func TestSpacingEstimateKeepsTheBucketLevel(t *testing.T) {
	t.Parallel()
	var e throttle.Entry
	now := t0
	e.Reserve(defaultWrites, now)
	e.Unreported(defaultWrites, false, now)
	// Azure answers 5 a second: ten answers, then a 429 that pauses the
	// scope for 1 s, and again.
	for range 10 {
		for range 10 {
			now = now.Add(100 * time.Millisecond)
			e.Reserve(defaultWrites, now)
			e.Unreported(defaultWrites, false, now)
		}
		now = now.Add(100 * time.Millisecond)
		e.Pause(defaultWrites, now.Add(time.Second), "retry-after", now)
		e.Unreported(defaultWrites, true, now)
		if e.Learned.Trial != nil {
			break
		}
		now = now.Add(time.Second)
	}
	if e.Learned.Trial == nil {
		t.Fatalf("no lower estimate tried: %+v", *e.Learned)
	}
	got := e.Effective(defaultWrites)
	if r := got.Rate.Calls / got.Rate.Per.Seconds(); r < 4 || r > 6 {
		t.Errorf("estimate %.2f/s, want about 5/s", r)
	}
	if next := e.Reserve(defaultWrites, now); next.Sub(e.PausedUntil) > time.Second {
		t.Errorf("next slot %s after the pause's end (estimate %+v)", next.Sub(e.PausedUntil), got)
	}
}
