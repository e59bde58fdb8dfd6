package operation_test

import (
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// runner is the machine with the runner's bounds the worker gives it.
func runner() operation.Machine {
	m := machine()
	m.Runner = operation.RunnerPolicy{
		CallTimeout: 30 * time.Second, AuthMargin: 2 * time.Second, SlotTolerance: 10 * time.Millisecond,
		MaxDeliver: 5, RedeliverFirst: time.Second, RedeliverMax: 10 * time.Second, RejectRetry: 5 * time.Second,
	}
	return m
}

func deadline(at time.Time) func(*operation.State) {
	return func(s *operation.State) { s.Deadline = at }
}

func TestLate(t *testing.T) {
	m := runner()
	for _, tc := range []struct {
		name string
		dl   time.Time
		want bool
	}{
		{"before the deadline: the call goes", t0.Add(time.Nanosecond), false},
		{"at the deadline: late, none is sent", t0, true},
		{"past the deadline: late", t0.Add(-time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Late(state(deadline(tc.dl)), t0); got != tc.want {
				t.Errorf("Late = %v, want %v", got, tc.want)
			}
		})
	}
}

// The deadline, not the call's own timeout, cut a call short when it
// bounded the call and the call ended (for the token: AuthMargin before)
// at it.
func TestCutAtDeadline(t *testing.T) {
	m := runner()
	sent := t0
	for _, tc := range []struct {
		name    string
		dl      time.Time
		outcome operation.Outcome
		ended   time.Time
		want    bool
	}{
		{"no answer at a deadline closer than the timeout: cut", t0.Add(5 * time.Second), operation.NoAnswer, t0.Add(5 * time.Second), true},
		{"no token just before such a deadline (within the margin): cut", t0.Add(5 * time.Second), operation.AuthUnavailable, t0.Add(4 * time.Second), true},
		{"no token well before the deadline: not cut", t0.Add(5 * time.Second), operation.AuthUnavailable, t0.Add(time.Second), false},
		{"no answer with the deadline past the timeout: the timeout cut it", t0.Add(time.Hour), operation.NoAnswer, t0.Add(30 * time.Second), false},
		{"an answer is never cut", t0.Add(5 * time.Second), operation.Transient, t0.Add(5 * time.Second), false},
		{"a late call is never cut (none was sent)", t0, operation.Late, t0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := state(deadline(tc.dl))
			a := operation.Answer{Outcome: tc.outcome, Error: "context deadline exceeded"}
			if got := m.CutAtDeadline(st, a, sent, tc.ended); got != tc.want {
				t.Errorf("CutAtDeadline = %v, want %v", got, tc.want)
			}
		})
	}
	// Answered uses it: a cut call times out at once instead of waiting.
	st := state(func(s *operation.State) {
		claimed(me, "https://management.azure.com/op/1", t0.Add(time.Minute), 0)(s)
		s.Deadline = t0.Add(5 * time.Second)
	})
	s := m.Answered(st, operation.Answer{Outcome: operation.NoAnswer, Error: "context deadline exceeded"}, sent, t0.Add(5*time.Second))
	if s.Action != operation.Publish || s.Next.Failed == nil || s.Next.Failed.Code != messages.CodeTimeout {
		t.Errorf("answered: %v %+v", s.Action, s.Next.Failed)
	}
}

func TestSkipArchive(t *testing.T) {
	m := archiving()
	expired := func(s *operation.State) {
		inArchive(0, 0)(s)
		exp := t0.Add(-time.Second)
		s.Archiving.Event.ExpiryTime = &exp
	}
	for _, tc := range []struct {
		name   string
		st     operation.State
		store  bool
		skip   bool
		action operation.Action
		check  func(t *testing.T, s operation.Step)
	}{
		{"a store, in time, a live link: download", state(inArchive(0, 0)), true, false, 0, nil},
		{"no store (turned off since): completed with not_configured", state(inArchive(0, 0)), false, true, operation.Publish, func(t *testing.T, s operation.Step) {
			if e := s.Next.Completed.Archive.Error; e == nil || e.Code != messages.ArchiveNotConfigured {
				t.Errorf("%+v", s.Next.Completed.Archive)
			}
		}},
		{"at the deadline: completed with timeout", state(func(s *operation.State) { inArchive(1, 0)(s); s.Deadline = t0 }), true, true, operation.Publish, func(t *testing.T, s operation.Step) {
			if e := s.Next.Completed.Archive.Error; e == nil || e.Code != messages.ArchiveTimeout || s.Next.Archiving.Attempts != 1 {
				t.Errorf("%+v attempts %d", s.Next.Completed.Archive, s.Next.Archiving.Attempts)
			}
		}},
		{"link past its expiry: a new link is asked for", state(expired), true, true, operation.Call, func(t *testing.T, s operation.Step) {
			if !s.Next.Archiving.NeedLink || s.Next.Archiving.Relinks != 1 || !strings.Contains(s.Next.Archiving.LastError, "expired at") {
				t.Errorf("%+v", s.Next.Archiving)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, skip := m.SkipArchive(tc.st, tc.store, t0)
			if skip != tc.skip || s.Action != tc.action {
				t.Fatalf("skip %v action %v, want %v %v", skip, s.Action, tc.skip, tc.action)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestThrottle(t *testing.T) {
	m := runner()
	const scope = "default.billing.writes"
	slotCome := state(func(s *operation.State) {
		waiting("", 3, t0.Add(-time.Second))(s)
		s.Throttled = &operation.Hold{Scope: scope, Until: t0.Add(-time.Second), Slot: true}
	})
	slotAhead := slotCome
	slotAhead.Throttled = &operation.Hold{Scope: scope, Until: t0.Add(time.Second), Slot: true}
	heldNoSlot := slotCome
	heldNoSlot.Throttled = &operation.Hold{Scope: scope, Until: t0.Add(-time.Second)}
	for _, tc := range []struct {
		name  string
		cur   operation.State
		scope string
		want  operation.Ask
	}{
		{"a slot of the scope that has come: ask whether the scope is paused", slotCome, scope, operation.AskPause},
		{"a slot of another scope: reserve", slotCome, "default.billing.reads", operation.AskReserve},
		{"a slot still ahead: reserve", slotAhead, scope, operation.AskReserve},
		{"no slot held: reserve", state(waiting("", 3, t0)), scope, operation.AskReserve},
		{"held by the probe, no slot: reserve", heldNoSlot, scope, operation.AskReserve},
	} {
		t.Run("ask: "+tc.name, func(t *testing.T) {
			if got := m.ThrottleAsk(tc.cur, tc.scope, t0); got != tc.want {
				t.Errorf("ask %v, want %v", got, tc.want)
			}
		})
	}

	next := *m.Accept(request(), operation.Trace{}, t0).Next
	nearDeadline := next
	nearDeadline.Deadline = t0.Add(2 * time.Second)
	pause := t0.Add(10 * time.Second)
	for _, tc := range []struct {
		name    string
		next    operation.State
		g       operation.Gate
		verdict operation.Verdict
		action  operation.Action
	}{
		{"held slot, scope not paused: go on it", next, operation.Gate{Scope: scope, Ask: operation.AskPause}, operation.GoNow, operation.Call},
		{"held slot, throttle unreachable: go anyway", next, operation.Gate{Scope: scope, Ask: operation.AskPause, Unavailable: true}, operation.GoNow, operation.Call},
		{"held slot, scope paused since: reserve another", next, operation.Gate{Scope: scope, Ask: operation.AskPause, PausedUntil: pause}, operation.AskAgain, 0},
		{"held slot taken before the estimate went down: reserve another at the new rate", next,
			operation.Gate{Scope: scope, Ask: operation.AskPause, Reserved: t0.Add(-3 * time.Second), Lowered: t0.Add(-2 * time.Second)}, operation.AskAgain, 0},
		{"held slot taken after the estimate went down: go on it", next,
			operation.Gate{Scope: scope, Ask: operation.AskPause, Reserved: t0.Add(-time.Second), Lowered: t0.Add(-2 * time.Second)}, operation.GoNow, operation.Call},
		{"reserve, throttle unreachable: go anyway", next, operation.Gate{Scope: scope, Ask: operation.AskReserve, Unavailable: true}, operation.GoNow, operation.Call},
		{"reserved slot now: go on it", next, operation.Gate{Scope: scope, Ask: operation.AskReserve, At: t0}, operation.GoOnSlot, operation.Call},
		{"reserved slot that came while reserving (within the tolerance): go on it", next,
			operation.Gate{Scope: scope, Ask: operation.AskReserve, At: t0.Add(5 * time.Millisecond)}, operation.GoOnSlot, operation.Call},
		{"reserved slot ahead: wait for it", next, operation.Gate{Scope: scope, Ask: operation.AskReserve, At: t0.Add(3 * time.Second)}, operation.HoldBack, operation.Schedule},
		{"reserved slot after a pause: wait for it", next,
			operation.Gate{Scope: scope, Ask: operation.AskReserve, At: pause, PausedUntil: pause}, operation.HoldBack, operation.Schedule},
		{"held by the scope's probe (no slot): wait, then reserve", next,
			operation.Gate{Scope: scope, Ask: operation.AskReserve, At: t0.Add(500 * time.Millisecond), NoSlot: true}, operation.HoldBack, operation.Schedule},
		{"reserved slot past the deadline: timeout", nearDeadline,
			operation.Gate{Scope: scope, Ask: operation.AskReserve, At: t0.Add(3 * time.Second)}, operation.HoldBack, operation.Publish},
	} {
		t.Run("verdict: "+tc.name, func(t *testing.T) {
			v, s := m.Throttle(tc.next, tc.g, t0)
			if v != tc.verdict || s.Action != tc.action {
				t.Fatalf("verdict %v action %v, want %v %v", v, s.Action, tc.verdict, tc.action)
			}
			switch tc.action {
			case operation.Call:
				if s.Next == nil || s.Next.Phase != operation.PhaseStarting || s.Next.Unanswered != tc.next.Unanswered {
					t.Errorf("call with %+v", s.Next)
				}
			case operation.Schedule:
				h := s.Next.Throttled
				if h == nil || h.Slot == tc.g.NoSlot || !h.Until.Equal(tc.g.At) || !h.PausedUntil.Equal(tc.g.PausedUntil) || !s.Next.NextAt.Equal(tc.g.At) || s.Next.Unanswered != 0 {
					t.Errorf("hold %+v next %s", h, s.Next.NextAt)
				}
				// A slot records when it was taken (a fall of the
				// estimate after it gives it back); a probe's hold is none.
				if h != nil && h.Slot != h.Reserved.Equal(t0) {
					t.Errorf("hold %+v: taken at %s, want %s for a slot", h, h.Reserved, t0)
				}
			case operation.Publish:
				if s.Next.Failed == nil || s.Next.Failed.Code != messages.CodeTimeout {
					t.Errorf("%+v", s.Next.Failed)
				}
			}
		})
	}
}

func TestRedelivery(t *testing.T) {
	m := runner()
	for _, tc := range []struct {
		name   string
		f      operation.Failure
		action operation.Action
		delay  time.Duration
		keep   bool
		reason string
	}{
		{"first delivery failed: back after 2 s", operation.Failure{Delivered: 1}, operation.Redeliver, 2 * time.Second, false, ""},
		{"unknown count (no metadata): as the first", operation.Failure{}, operation.Redeliver, 2 * time.Second, false, ""},
		{"third: doubled twice", operation.Failure{Delivered: 3}, operation.Redeliver, 8 * time.Second, false, ""},
		{"fourth: capped at the maximum", operation.Failure{Delivered: 4}, operation.Redeliver, 10 * time.Second, false, ""},
		{"a wake-up, before the limit: back too", operation.Failure{Delivered: 4, Wake: true}, operation.Redeliver, 10 * time.Second, false, ""},
		{"a request at the limit: given up, a copy kept", operation.Failure{Delivered: 5}, operation.GiveUp, 0, true, string(messages.CodeInternal)},
		{"a wake-up at the limit: given up, no copy", operation.Failure{Delivered: 7, Wake: true}, operation.GiveUp, 0, false, ""},
		{"a request that no longer validates: rejected", operation.Failure{Delivered: 5, Invalid: true}, operation.Reject, 0, false, ""},
		{"a schedule's fire, before the limit: back", operation.Failure{Delivered: 2, Fire: true}, operation.Redeliver, 4 * time.Second, false, ""},
		{"a schedule's fire at the limit: given up as a fire, a copy kept", operation.Failure{Delivered: 5, Fire: true}, operation.GiveUp, 0, true, operation.ReasonFire},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Redelivery(tc.f, "store unavailable")
			if s.Action != tc.action || s.Delay != tc.delay || s.Keep != tc.keep || s.Reason != tc.reason {
				t.Fatalf("%v delay %s keep %v reason %q", s.Action, s.Delay, s.Keep, s.Reason)
			}
			if tc.action == operation.Redeliver {
				return
			}
			if f := s.Failed; f == nil || f.Code != messages.CodeInternal || !f.Retryable || !strings.Contains(f.Message, "store unavailable") {
				t.Errorf("%+v", s.Failed)
			}
			if fire := strings.Contains(s.Failed.Message, "schedule fire"); fire != tc.f.Fire {
				t.Errorf("a fire %v, but the failure says %q", tc.f.Fire, s.Failed.Message)
			}
		})
	}
	m.Runner.RedeliverMax = 0 // no cap: it keeps doubling, up to 2^6 times the first
	if s := m.Redelivery(operation.Failure{Delivered: 4}, "x"); s.Delay != 16*time.Second {
		t.Errorf("uncapped: %s", s.Delay)
	}
}

func TestGaveUp(t *testing.T) {
	m := runner()
	request := m.Redelivery(operation.Failure{Delivered: 5}, "x")
	wake := m.Redelivery(operation.Failure{Delivered: 5, Wake: true}, "x")
	fire := m.Redelivery(operation.Failure{Delivered: 5, Fire: true}, "x")
	for _, tc := range []struct {
		name   string
		step   operation.Step
		ended  bool
		action operation.Action
		reason string
		delay  time.Duration
	}{
		{"request ended: dropped with internal_error", request, true, operation.Drop, string(messages.CodeInternal), 0},
		{"wake-up ended (or no state to end): dropped", wake, true, operation.Drop, "", 0},
		{"fire kept: dropped as a fire", fire, true, operation.Drop, operation.ReasonFire, 0},
		{"fire not kept: back after the reject retry", fire, false, operation.Redeliver, "", 5 * time.Second},
		{"could not end it: back after the reject retry", request, false, operation.Redeliver, "", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.GaveUp(tc.step, tc.ended)
			if s.Action != tc.action || s.Reason != tc.reason || s.Delay != tc.delay {
				t.Errorf("%v %q %s", s.Action, s.Reason, s.Delay)
			}
		})
	}
}

func TestRunnerSettlements(t *testing.T) {
	m := runner()
	for _, tc := range []struct {
		name   string
		step   operation.Step
		action operation.Action
		delay  time.Duration
	}{
		{"a rejection or give-up failed halfway: back after the reject retry", m.Unsettled(), operation.Redeliver, 5 * time.Second},
		{"the shutdown cut a call off: back once the claim expired", m.Interrupted(), operation.Redeliver, 40 * time.Second},
		{"draining: to another worker at once", m.Elsewhere(), operation.Redeliver, 0},
		{"unreadable wake-up or notice: dropped", m.Stray(false), operation.Drop, 0},
		{"no state (expired): acknowledged", m.Stray(true), operation.Ack, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.step.Action != tc.action || tc.step.Delay != tc.delay || tc.step.Next != nil {
				t.Errorf("%v %s", tc.step.Action, tc.step.Delay)
			}
		})
	}
}

func TestRejected(t *testing.T) {
	m := runner()
	for _, tc := range []struct {
		name          string
		r             operation.Rejection
		reason        string
		count, notify bool
	}{
		{"a request: counted, dropped with its code", operation.Rejection{Code: messages.CodeInvalidRequest}, "invalid_request", true, false},
		{"a collection's child: counted too, its collection told", operation.Rejection{Code: messages.CodeIDConflict, Child: true}, "rejected", true, true},
		{"published before: not counted again", operation.Rejection{Code: messages.CodeInvalidRequest, Again: true}, "rejected", false, false},
		{"a child published before: its collection told again", operation.Rejection{Code: messages.CodeIDConflict, Child: true, Again: true}, "rejected", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Rejected(tc.r)
			if s.Action != operation.Drop || s.Reason != tc.reason || s.Count != tc.count || s.Notify != tc.notify {
				t.Errorf("%v %q count %v notify %v", s.Action, s.Reason, s.Count, s.Notify)
			}
		})
	}
	// A conflict carries its rejection's failure.
	other := request()
	other.Kind = messages.KindInvoice
	s := m.Resume(state(ended(true)), operation.Delivery{Request: &other}, t0)
	if s.Action != operation.Conflict || s.Failed == nil || s.Failed.Code != messages.CodeIDConflict ||
		!strings.Contains(s.Failed.Message, `"req-1"`) || !strings.Contains(s.Failed.Message, string(messages.KindInvoiceSummary)) {
		t.Errorf("%v %+v", s.Action, s.Failed)
	}
}
