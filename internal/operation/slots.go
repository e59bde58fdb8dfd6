package operation

import (
	"slices"
	"time"
)

// The global window: with Machine.Slots set, the children in flight of
// every collection together never exceed it. The slots are one stored
// entry (Slots), shared by every worker and written with a compare-and-set;
// these are its decisions, pure like the rest of the machine.
//
// A collection asks for slots (Action Share) whenever its children in
// flight change: after a child's end is counted, after its listing, when a
// slot notice (Delivery.Slot) or a redelivery brings it back. It says how
// many children it has in flight and how many more it would request
// (Demand); Share sets its holding to the first, hands out the free slots
// fewest-held first among the waiting collections and itself, and tells it
// how many it may take. A collection left wanting waits in the entry, with
// no message or goroutine of its own; a collection that ends holds nothing.
// Since a holding is set (never added to) from the collection's own stored
// count, asking again after a crash or a redelivery repairs it, and Tidy
// drops the holdings of collections that ended or are gone.

// Share: store Next (if any), then ask the global window for the slots the
// collection's Demand names, and pass the answer to Machine.Granted.
const Share Action = 120

// SlotsKey is the key of the global window's entry in the collections'
// bucket (a listed page's key, ChunkKey, always has a dot; this one has
// none).
const SlotsKey = "window"

// SlotWakeAgain is how long a waiting collection that was sent a slot
// notice is left to come before it is sent another (the first may be
// lost).
const SlotWakeAgain = 10 * time.Second

// Slots is the stored entry of the global window.
type Slots struct {
	// Held is each collection's slots: its children in flight and those it
	// was given, as it last said.
	Held map[string]Holding `json:"held,omitempty"`
	// Waiting lists the collections that want more children than they
	// were given, in the order they began waiting.
	Waiting []Waiter `json:"waiting,omitempty"`
}

// Holding is one collection's slots, and the revision of its state they
// were decided from: a collection's deliveries that decide from the same
// revision request the same children (the next ones in its list), so
// their grants overlap rather than add up; one deciding from an older
// revision than the holding's is refused (Grant.Stale).
type Holding struct {
	N   int    `json:"n"`
	Rev uint64 `json:"rev"`
}

// Waiter is a collection waiting for slots.
type Waiter struct {
	ID string `json:"id"`
	// Want is how many more children it would request.
	Want  int       `json:"want"`
	Since time.Time `json:"since"`
	// Woken is when it was last sent a slot notice.
	Woken time.Time `json:"woken,omitzero"`
}

// InUse counts the slots held.
func (s Slots) InUse() int {
	n := 0
	for _, h := range s.Held {
		n += h.N
	}
	return n
}

// Grant is the window's answer to one collection.
type Grant struct {
	// Take is how many more children the collection may request now.
	Take int
	// Next is the entry to store; Changed is false when it is the same.
	Next    Slots
	Changed bool
	// Stale: the collection decided from an older state than the one its
	// holding is from; nothing changed, it is to decide again.
	Stale bool
	// Wake lists the waiting collections to send a slot notice: slots are
	// free for them.
	Wake []string
}

func (s Slots) clone() Slots {
	c := Slots{Held: make(map[string]Holding, len(s.Held)+1), Waiting: slices.Clone(s.Waiting)}
	for k, v := range s.Held {
		c.Held[k] = v
	}
	return c
}

// Demand is what collection st asks of the global window: its children in
// flight, and how many more it would request within its own window. A
// state that is not a collection collecting asks nothing (which releases
// whatever it held). Children below floor count as requested even if st
// does not say so yet: the delivery asking published them, then found
// the state changed under it.
func (m Machine) Demand(st State, floor int) (inFlight, want int) {
	c := st.Collection
	if st.Phase != PhaseCollecting || c == nil {
		return 0, 0
	}
	spawned := min(max(c.Spawned, floor), c.Total)
	for i := range spawned {
		if !c.ended(i) {
			inFlight++
		}
	}
	room := max(m.Window, 1) - inFlight
	for i := spawned; i < c.Total && want < room; i++ {
		if !c.ended(i) {
			want++
		}
	}
	return inFlight, want
}

// Share answers collection id, which has inFlight children in flight and
// would request want more, by its state at revision rev: its holding
// becomes inFlight (and what it was given from the same revision before),
// the free slots
// go one at a time to whoever of the waiting collections and id holds
// fewest (the earliest waiting first among equals; id, if it was not
// waiting, last), and id may take what fell to it. If it wanted more it
// waits (keeping its place); the waiting collections that slots fell to
// are to be woken, unless one was woken less than SlotWakeAgain ago.
func (m Machine) Share(s Slots, id string, rev uint64, inFlight, want int, now time.Time) Grant {
	old, held := s.Held[id]
	if held && rev < old.Rev {
		return Grant{Next: s, Stale: true}
	}
	next := s.clone()
	// Given before from this same revision: the same children, which a
	// delivery may be requesting right now.
	given := 0
	if held && rev == old.Rev {
		given = min(max(old.N-inFlight, 0), want)
	}
	if inFlight+given > 0 {
		next.Held[id] = Holding{N: inFlight + given, Rev: rev}
	} else {
		delete(next.Held, id)
	}
	want -= given
	self := slices.IndexFunc(next.Waiting, func(w Waiter) bool { return w.ID == id })
	if self < 0 && want > 0 {
		next.Waiting = append(next.Waiting, Waiter{ID: id, Since: now})
		self = len(next.Waiting) - 1
	}
	if self >= 0 {
		next.Waiting[self].Want = want
	}
	alloc := m.allot(next)
	g := Grant{Take: given}
	if self >= 0 {
		if a := alloc[self]; a > 0 {
			g.Take += a
			next.Held[id] = Holding{N: inFlight + g.Take, Rev: rev}
		}
		if left := want - alloc[self]; left > 0 {
			next.Waiting[self].Want = left
			next.Waiting[self].Woken = time.Time{}
		} else {
			next.Waiting = slices.Delete(next.Waiting, self, self+1)
			alloc = slices.Delete(alloc, self, self+1)
		}
	}
	for i := range next.Waiting {
		w := &next.Waiting[i]
		if w.ID != id && alloc[i] > 0 && (w.Woken.IsZero() || !now.Before(w.Woken.Add(SlotWakeAgain))) {
			w.Woken = now
			g.Wake = append(g.Wake, w.ID)
		}
	}
	if len(next.Waiting) == 0 {
		next.Waiting = nil
	}
	g.Next, g.Changed = next, !equalSlots(s, next)
	return g
}

// allot hands the free slots of s out among its waiting collections, one
// at a time to the one that would then hold fewest; alloc[i] is waiter i's
// share.
func (m Machine) allot(s Slots) []int {
	alloc := make([]int, len(s.Waiting))
	for free := m.Slots - s.InUse(); free > 0; free-- {
		best := -1
		for i, w := range s.Waiting {
			if alloc[i] >= w.Want {
				continue
			}
			if best < 0 || s.Held[w.ID].N+alloc[i] < s.Held[s.Waiting[best].ID].N+alloc[best] {
				best = i
			}
		}
		if best < 0 {
			break
		}
		alloc[best]++
	}
	return alloc
}

func equalSlots(a, b Slots) bool {
	if len(a.Held) != len(b.Held) || len(a.Waiting) != len(b.Waiting) {
		return false
	}
	for k, v := range a.Held {
		if w, ok := b.Held[k]; !ok || w != v {
			return false
		}
	}
	for i := range a.Waiting {
		x, y := a.Waiting[i], b.Waiting[i]
		if x.ID != y.ID || x.Want != y.Want || !x.Since.Equal(y.Since) || !x.Woken.Equal(y.Woken) {
			return false
		}
	}
	return true
}

// SlotHolder is what Tidy learns of one collection named in the entry:
// whether its state was found, whether it is still collecting, the
// revision it was read at and its Demand.
type SlotHolder struct {
	Found, Collecting bool
	Rev               uint64
	InFlight, Want    int
	// Idle: its state has not changed for a while (no child ended, no
	// slot taken).
	Idle bool
}

// Tidy repairs the entry from the collections' stored states: one that is
// gone or no longer collecting holds nothing and waits for nothing. One
// idle whose holding was decided from an older revision than its state's
// (its worker stopped between storing the state and asking the window)
// holds what its state says is in flight; a holding from the revision
// read may be a grant being used, and is left alone. Then, as in Share,
// the waiting collections that free slots fall to are woken (again, if
// their last notice was SlotWakeAgain ago: it may have been lost).
func (m Machine) Tidy(s Slots, seen map[string]SlotHolder, now time.Time) Grant {
	next := s.clone()
	for id, old := range next.Held {
		h, ok := seen[id]
		switch {
		case !ok:
		case !h.Found || !h.Collecting:
			delete(next.Held, id)
		case h.Idle && old.Rev < h.Rev && h.InFlight > 0:
			next.Held[id] = Holding{N: h.InFlight, Rev: h.Rev}
		case h.Idle && old.Rev < h.Rev:
			delete(next.Held, id)
		}
	}
	next.Waiting = slices.DeleteFunc(next.Waiting, func(w Waiter) bool {
		h, ok := seen[w.ID]
		return ok && (!h.Found || !h.Collecting)
	})
	alloc := m.allot(next)
	var g Grant
	for i := range next.Waiting {
		w := &next.Waiting[i]
		if alloc[i] > 0 && (w.Woken.IsZero() || !now.Before(w.Woken.Add(SlotWakeAgain))) {
			w.Woken = now
			g.Wake = append(g.Wake, w.ID)
		}
	}
	if len(next.Waiting) == 0 {
		next.Waiting = nil
	}
	g.Next, g.Changed = next, !equalSlots(s, next)
	return g
}

// Granted is the transition of collection st told that it may request
// take more children (Share's answer, beyond floor, as in Demand): it
// requests them, or finishes when every child has ended, or waits (for a
// slot notice, or its children's ends).
func (m Machine) Granted(st State, floor, take int, now time.Time) Step {
	c := st.Collection
	if st.Phase != PhaseCollecting || c == nil {
		return Step{Action: Ack}
	}
	if c.Done() {
		return Step{Action: Finish}
	}
	from, to := c.Spawned, min(max(c.Spawned, floor), c.Total)
	for room := take; to < c.Total && room > 0; to++ {
		if !c.ended(to) {
			room--
		}
	}
	if to == from {
		return Step{Action: Ack}
	}
	copied := *c
	copied.Ended = append([]byte(nil), c.Ended...)
	copied.Spawned = to
	st.Collection = &copied
	st.UpdatedAt = now
	return Step{Next: &st, Action: Spawn, Spawn: &Range{From: from, To: to}}
}
