package operation_test

import (
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
)

func wakeMachine() operation.Machine {
	m := machine()
	m.Wake = operation.WakePolicy{Lead: 300 * time.Millisecond, HoldMax: time.Second}
	return m
}

func TestFireAt(t *testing.T) {
	t.Parallel()
	due := t0.Add(2 * time.Second)
	if got := wakeMachine().FireAt(due); !got.Equal(due.Add(-300 * time.Millisecond)) {
		t.Errorf("fire at %s, want 300ms before %s", got, due)
	}
	if got := machine().FireAt(due); !got.Equal(due) {
		t.Errorf("no lead: fire at %s, want %s", got, due)
	}
}

// TestArrived: a wake-up whose body says when its poll is due is held
// until then when it arrives early by at most the bound, and handled at
// once otherwise.
func TestArrived(t *testing.T) {
	t.Parallel()
	due := t0.Add(2 * time.Second)
	for _, tc := range []struct {
		name  string
		m     operation.Machine
		now   time.Time
		held  bool
		delay time.Duration
	}{
		{"arrives at the lead: held for the lead", wakeMachine(), due.Add(-300 * time.Millisecond), true, 300 * time.Millisecond},
		{"arrives 1 ms early: held 1 ms", wakeMachine(), due.Add(-time.Millisecond), true, time.Millisecond},
		{"arrives exactly at the bound: held the bound", wakeMachine(), due.Add(-time.Second), true, time.Second},
		{"arrives earlier than the bound: not held", wakeMachine(), due.Add(-time.Second - time.Nanosecond), false, 0},
		{"arrives at the due time: not held", wakeMachine(), due, false, 0},
		{"arrives late: not held", wakeMachine(), due.Add(time.Minute), false, 0},
		{"no hold configured: never held", machine(), due.Add(-time.Millisecond), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			step, held := tc.m.Arrived(due, tc.now)
			if held != tc.held {
				t.Fatalf("held %v, want %v", held, tc.held)
			}
			if !held {
				return
			}
			if step.Action != operation.HoldWake || step.Delay != tc.delay || step.Next != nil {
				t.Errorf("step %v delay %s next %v, want hold %s", step.Action, step.Delay, step.Next, tc.delay)
			}
			if step.Delay > tc.m.Wake.HoldMax || tc.now.Add(step.Delay).Before(due) {
				t.Errorf("a hold of %s from %s: more than the bound, or ends before %s", step.Delay, tc.now, due)
			}
		})
	}
}

// TestResumeEarlyWakeUp: the stored state's due time decides too (a
// wake-up whose body carries no due time, a clock that differs): early by
// at most the bound, it is held, never called; earlier, it comes back as
// before.
func TestResumeEarlyWakeUp(t *testing.T) {
	t.Parallel()
	m := wakeMachine()
	loc := "https://management.azure.com/op/1"
	for _, tc := range []struct {
		name   string
		next   time.Time
		action operation.Action
		delay  time.Duration
	}{
		{"early by the lead: held until due", t0.Add(300 * time.Millisecond), operation.HoldWake, 300 * time.Millisecond},
		{"early by the bound: held until due", t0.Add(time.Second), operation.HoldWake, time.Second},
		{"earlier than the bound: handed back until due", t0.Add(time.Second + time.Millisecond), operation.Retry, time.Second + time.Millisecond},
		{"due: claimed and called", t0, operation.Call, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Resume(state(waiting(loc, 2, tc.next)), operation.Delivery{Wake: 2}, t0)
			if s.Action != tc.action || s.Delay != tc.delay {
				t.Fatalf("step %v delay %s, want %v %s", s.Action, s.Delay, tc.action, tc.delay)
			}
			if tc.action != operation.Call && s.Next != nil {
				t.Errorf("an early wake-up stores %+v", s.Next)
			}
		})
	}
	// A stale wake-up is not held, whatever its timing.
	if s := m.Resume(state(waiting(loc, 2, t0.Add(300*time.Millisecond))), operation.Delivery{Wake: 1}, t0); s.Action != operation.Schedule {
		t.Errorf("stale wake-up: %v", s.Action)
	}
	if operation.HoldWake.String() != "hold-wake" {
		t.Errorf("HoldWake is %q", operation.HoldWake.String())
	}
}
