package operation_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
)

func slotsMachine(limit int) operation.Machine {
	m := collectionMachine()
	m.Window, m.Slots = 4, limit
	return m
}

type held = map[string]operation.Holding

func TestShareHandsOutFewestHeldFirst(t *testing.T) {
	t.Parallel()
	early := t0.Add(-time.Minute)
	cases := []struct {
		name     string
		limit    int
		slots    operation.Slots
		id       string
		rev      uint64
		inFlight int
		want     int
		take     int
		stale    bool
		next     operation.Slots
		wake     []string
	}{
		{name: "room for all", limit: 10, id: "a", rev: 3, want: 4, take: 4,
			next: operation.Slots{Held: held{"a": {4, 3}}}},
		{name: "room for some: the rest waits", limit: 3, slots: operation.Slots{Held: held{"b": {1, 7}}}, id: "a", rev: 3, want: 4, take: 2,
			next: operation.Slots{Held: held{"a": {2, 3}, "b": {1, 7}}, Waiting: []operation.Waiter{{ID: "a", Want: 2, Since: t0}}}},
		{name: "full: waits, holding nothing", limit: 2, slots: operation.Slots{Held: held{"b": {2, 7}}}, id: "a", rev: 3, want: 1,
			next: operation.Slots{Held: held{"b": {2, 7}}, Waiting: []operation.Waiter{{ID: "a", Want: 1, Since: t0}}}},
		{
			// A big collection's child ended: the freed slot goes to the small
			// one waiting with none, which is woken; the big one waits.
			name: "a freed slot goes to the one holding fewest", limit: 4,
			slots: operation.Slots{Held: held{"big": {4, 9}}, Waiting: []operation.Waiter{{ID: "small", Want: 3, Since: early}}},
			id:    "big", rev: 10, inFlight: 3, want: 1,
			next: operation.Slots{Held: held{"big": {3, 10}}, Waiting: []operation.Waiter{
				{ID: "small", Want: 3, Since: early, Woken: t0}, {ID: "big", Want: 1, Since: t0}}},
			wake: []string{"small"},
		},
		{
			// Equal holdings: the earlier waiter first.
			name: "among equals the earliest", limit: 4,
			slots: operation.Slots{Held: held{"x": {1, 1}, "y": {1, 1}, "big": {2, 5}}, Waiting: []operation.Waiter{
				{ID: "y", Want: 2, Since: early}, {ID: "x", Want: 2, Since: t0}}},
			id: "big", rev: 6, inFlight: 1, want: 3,
			next: operation.Slots{Held: held{"x": {1, 1}, "y": {1, 1}, "big": {1, 6}}, Waiting: []operation.Waiter{
				{ID: "y", Want: 2, Since: early, Woken: t0}, {ID: "x", Want: 2, Since: t0}, {ID: "big", Want: 3, Since: t0}}},
			wake: []string{"y"},
		},
		{
			// The waiter asks: it takes what falls to it and leaves the list.
			name: "a woken waiter takes its share", limit: 4,
			slots: operation.Slots{Held: held{"big": {3, 10}}, Waiting: []operation.Waiter{
				{ID: "small", Want: 3, Since: early, Woken: t0}, {ID: "big", Want: 1, Since: t0}}},
			id: "small", rev: 2, want: 3, take: 1,
			next: operation.Slots{Held: held{"big": {3, 10}, "small": {1, 2}}, Waiting: []operation.Waiter{
				{ID: "small", Want: 2, Since: early}, {ID: "big", Want: 1, Since: t0}}},
		},
		{
			name: "woken lately: not again", limit: 4,
			slots: operation.Slots{Held: held{"big": {4, 9}}, Waiting: []operation.Waiter{{ID: "small", Want: 3, Since: early, Woken: t0.Add(-time.Second)}}},
			id:    "big", rev: 10, inFlight: 3,
			next: operation.Slots{Held: held{"big": {3, 10}}, Waiting: []operation.Waiter{{ID: "small", Want: 3, Since: early, Woken: t0.Add(-time.Second)}}},
		},
		{
			name: "woken long ago (the notice lost?): again", limit: 4,
			slots: operation.Slots{Held: held{"big": {4, 9}}, Waiting: []operation.Waiter{{ID: "small", Want: 3, Since: early, Woken: t0.Add(-operation.SlotWakeAgain)}}},
			id:    "big", rev: 10, inFlight: 3,
			next: operation.Slots{Held: held{"big": {3, 10}}, Waiting: []operation.Waiter{{ID: "small", Want: 3, Since: early, Woken: t0}}},
			wake: []string{"small"},
		},
		{
			name: "an ended collection gives back everything and stops waiting", limit: 4,
			slots: operation.Slots{Held: held{"a": {2, 4}}, Waiting: []operation.Waiter{{ID: "a", Want: 2, Since: early}}},
			id:    "a", rev: 5,
			next: operation.Slots{Held: held{}},
		},
		{
			// Two deliveries deciding from the same state request the same
			// next children: the second gets what the first was given (not
			// more on top), so redeliveries never ratchet the holding up.
			name: "asked again from the same revision", limit: 10,
			slots: operation.Slots{Held: held{"a": {4, 5}}}, id: "a", rev: 5, inFlight: 1, want: 3, take: 3,
			next: operation.Slots{Held: held{"a": {4, 5}}},
		},
		{
			name: "a revision older than the holding's is refused", limit: 10,
			slots: operation.Slots{Held: held{"a": {2, 8}}}, id: "a", rev: 5, inFlight: 1, want: 3, stale: true,
			next: operation.Slots{Held: held{"a": {2, 8}}},
		},
		{
			// A crash after the grant, before the children were recorded:
			// asking again from the newer state sets the holding from it.
			name: "a newer revision sets the holding", limit: 10,
			slots: operation.Slots{Held: held{"a": {4, 5}}}, id: "a", rev: 6, inFlight: 1, want: 0,
			next: operation.Slots{Held: held{"a": {1, 6}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := slotsMachine(c.limit).Share(c.slots, c.id, c.rev, c.inFlight, c.want, t0)
			if g.Take != c.take || g.Stale != c.stale {
				t.Errorf("take %d stale %v, want %d %v", g.Take, g.Stale, c.take, c.stale)
			}
			if !reflect.DeepEqual(g.Wake, c.wake) {
				t.Errorf("wake %v, want %v", g.Wake, c.wake)
			}
			if !reflect.DeepEqual(g.Next, c.next) {
				t.Errorf("next\n %+v\nwant\n %+v", g.Next, c.next)
			}
			if g.Next.InUse() > c.limit && !c.stale {
				t.Errorf("%d slots in use, over %d", g.Next.InUse(), c.limit)
			}
		})
	}
}

// However the collections come and go, no sequence of Shares hands out
// more than the window, and every collection that asked gets slots in
// turn.
func TestShareNeverExceedsTheWindow(t *testing.T) {
	t.Parallel()
	const limit = 7
	m := slotsMachine(limit)
	var s operation.Slots
	ids := []string{"a", "b", "c", "d", "e"}
	inFlight := map[string]int{}
	left := map[string]int{"a": 40, "b": 3, "c": 10, "d": 1, "e": 25}
	rev := map[string]uint64{}
	got := map[string]bool{}
	for step := range 400 {
		id := ids[step%len(ids)]
		if inFlight[id] > 0 && step%3 == 0 {
			inFlight[id]-- // a child ended
			left[id]--
		}
		rev[id]++
		want := min(m.Window-inFlight[id], left[id]-inFlight[id])
		g := m.Share(s, id, rev[id], inFlight[id], max(want, 0), t0.Add(time.Duration(step)*time.Second))
		s = g.Next
		inFlight[id] += g.Take
		if g.Take > 0 {
			got[id] = true
		}
		if s.InUse() > limit {
			t.Fatalf("step %d: %d in use, over %d: %+v", step, s.InUse(), limit, s)
		}
		sum := 0
		for _, n := range inFlight {
			sum += n
		}
		if sum > limit {
			t.Fatalf("step %d: %d children in flight, over %d", step, sum, limit)
		}
	}
	if len(got) != len(ids) {
		t.Errorf("only %v got slots", got)
	}
}

func TestTidyGivesBackSlotsOfCollectionsThatEnded(t *testing.T) {
	t.Parallel()
	m := slotsMachine(5)
	s := operation.Slots{Held: held{"gone": {2, 3}, "ended": {1, 3}, "idle": {3, 3}, "granted": {2, 6}, "busy": {1, 9}}, Waiting: []operation.Waiter{
		{ID: "gone", Want: 1, Since: t0}, {ID: "full", Want: 1, Since: t0}, {ID: "waiter", Want: 2, Since: t0, Woken: t0.Add(-time.Minute)}}}
	seen := map[string]operation.SlotHolder{
		"gone":  {},
		"ended": {Found: true},
		// Stored past its holding's revision, idle: its worker stopped
		// before asking the window.
		"idle": {Found: true, Collecting: true, Rev: 4, InFlight: 1, Idle: true},
		// Idle at the holding's revision: a grant may be being used.
		"granted": {Found: true, Collecting: true, Rev: 6, Idle: true, Want: 2},
		// Not idle: its own Share may be under way.
		"busy": {Found: true, Collecting: true, Rev: 10, InFlight: 0, Want: 2},
		// Read wanting nothing, but collecting: it stays in line (it may
		// have asked since the read).
		"full":   {Found: true, Collecting: true, Rev: 2},
		"waiter": {Found: true, Collecting: true, Rev: 2, Want: 2},
	}
	g := m.Tidy(s, seen, t0)
	want := operation.Slots{Held: held{"idle": {1, 4}, "granted": {2, 6}, "busy": {1, 9}}, Waiting: []operation.Waiter{
		{ID: "full", Want: 1, Since: t0, Woken: t0}, {ID: "waiter", Want: 2, Since: t0, Woken: t0.Add(-time.Minute)}}}
	if !reflect.DeepEqual(g.Next, want) || !g.Changed {
		t.Errorf("next\n %+v\nwant\n %+v", g.Next, want)
	}
	if !reflect.DeepEqual(g.Wake, []string{"full"}) {
		t.Errorf("wake %v: want the first in line, whose notice may be lost", g.Wake)
	}
	if g := m.Tidy(want, map[string]operation.SlotHolder{}, t0); g.Changed || g.Wake != nil {
		t.Errorf("nothing learnt, yet %+v", g)
	}
}

func TestCollectionAsksTheGlobalWindow(t *testing.T) {
	t.Parallel()
	m := slotsMachine(10)

	// Demand: in flight, and how many more within the collection's window.
	st := collecting(6, 3)
	st.Collection.Ended = []byte{0b010}
	st.Collection.Completed = 1
	if in, want := m.Demand(st, 0); in != 2 || want != 2 {
		t.Errorf("demand %d in flight, %d more; want 2, 2", in, want)
	}
	if in, want := m.Demand(st, 5); in != 4 || want != 0 {
		t.Errorf("demand with children up to 5 published: %d, %d; want 4, 0", in, want)
	}
	done := st
	done.Phase = operation.PhaseCompleted
	if in, want := m.Demand(done, 0); in != 0 || want != 0 {
		t.Errorf("an ended collection demands %d, %d", in, want)
	}

	// A child's end is counted, then the window is asked.
	step := m.ChildEnded(st, 0, false, t0)
	if step.Action != operation.Share || step.Next == nil || !step.Next.Collection.HasEnded(0) {
		t.Fatalf("child ended: %v %+v", step.Action, step.Next)
	}
	// Told again: ask again (a grant cut short by a crash is repaired).
	if step := m.ChildEnded(*step.Next, 0, false, t0); step.Action != operation.Share || step.Next != nil {
		t.Errorf("told twice: %v", step.Action)
	}
	// A slot notice, whatever the state.
	for _, s := range []operation.State{st, done, {}} {
		if step := m.Resume(s, operation.Delivery{Slot: true}, t0); step.Action != operation.Share {
			t.Errorf("slot notice in phase %q: %v", s.Phase, step.Action)
		}
	}

	// Granted: the next children, skipping those that ended.
	step = m.Granted(st, 0, 2, t0)
	if step.Action != operation.Spawn || *step.Spawn != (operation.Range{From: 3, To: 5}) || step.Next.Collection.Spawned != 5 || st.Collection.Spawned != 3 {
		t.Errorf("granted 2: %v %+v", step.Action, step.Spawn)
	}
	// Published up to 4 before the state changed: those are recorded too.
	step = m.Granted(st, 4, 1, t0)
	if step.Action != operation.Spawn || *step.Spawn != (operation.Range{From: 3, To: 5}) {
		t.Errorf("granted 1 above 4: %v %+v", step.Action, step.Spawn)
	}
	if step := m.Granted(st, 0, 0, t0); step.Action != operation.Ack || step.Next != nil {
		t.Errorf("granted none: %v", step.Action)
	}
	all := collecting(2, 2)
	all.Collection.Ended, all.Collection.Completed = []byte{0b11}, 2
	if step := m.Granted(all, 0, 0, t0); step.Action != operation.Finish {
		t.Errorf("every child ended: %v, want finish", step.Action)
	}
	if step := m.Granted(done, 0, 3, t0); step.Action != operation.Ack {
		t.Errorf("an ended collection granted: %v", step.Action)
	}
}
