package operation

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// Machine holds what every decision about an operation is made with. Its
// methods are the operation's transitions: a stored state and an event in
// (a request accepted or seen again, a wake-up, Azure's answer, a handler
// giving up), the next state to store and one action out. They perform no
// I/O and read no clock: the caller passes the time.
type Machine struct {
	// Worker names the worker that claims operations (stored in the claim).
	Worker string
	// ClaimFor is how long a claim holds for one Azure call.
	ClaimFor time.Duration
	// DefaultDeadline and MaxDeadline bound an operation's life from its
	// acceptance: the request's deadline, or DefaultDeadline, capped at
	// MaxDeadline.
	DefaultDeadline, MaxDeadline time.Duration
	// MaxBadAnswers malformed success answers in a row end the operation
	// with bad_response.
	MaxBadAnswers int
	// MaxUnanswered first calls without an answer end the operation with
	// interrupted.
	MaxUnanswered int
	// MaxDocuments bounds a collection's documents; Window bounds its
	// children in flight at once.
	MaxDocuments, Window int
	// EstateWindow bounds an estate's collections in flight at once
	// (Window when zero).
	EstateWindow int
	// Slots, when not zero, bounds the children in flight of every
	// collection together (the global window, slots.go).
	Slots int
	// Policy decides the waits; Rand is its jitter source (nil:
	// math/rand/v2).
	Policy poll.Policy
	Rand   func() float64
	// HoldSpread spreads the calls a throttle hold without a slot of its
	// own (the end of a pause) releases: each waits up to this much longer,
	// at random, capped at the hold's own length.
	HoldSpread time.Duration
	// Archive says which documents are archived, and how hard to try.
	Archive ArchivePolicy
	// Runner bounds the runner's calls and its own retries (runner.go).
	Runner RunnerPolicy
	// Wake times the wake-ups around the server's scheduler (wake.go).
	Wake WakePolicy
}

// Action is what the caller does after storing Step.Next.
type Action int

// The actions. Each ends with the message settled, after the work it
// names: acknowledged, handed back after Step.Delay (Retry, Redeliver) or
// terminated (Drop); Call, Archive and Finish lead to another step first,
// Conflict, Reject and GiveUp to the step of their outcome (runner.go).
const (
	// Call: make the operation's next Azure call (Next is claimed), then
	// pass the answer to Answer.
	Call Action = iota + 1
	// Schedule the wake-up at Next.NextAt (replacing any pending one), then
	// acknowledge.
	Schedule
	// Publish the outcome event the state holds, then acknowledge.
	Publish
	// Republish the outcome of an operation that had ended before this
	// delivery (its event may be stored already), then acknowledge.
	Republish
	// Ack: nothing more to do.
	Ack
	// Retry: hand the message back, to come again after Delay (another
	// worker holds a live claim).
	Retry
	// Conflict: the request reuses the id of another operation; reject it
	// with id_conflict (Step.Failed). Nothing is stored.
	Conflict
	// Archive: download the document of State.Archiving into the archive
	// store (Next is claimed for it, the claim renewed while it lasts),
	// then pass the outcome to Archived.
	Archive
)

func (a Action) String() string {
	switch a {
	case Call:
		return "call"
	case Schedule:
		return "schedule"
	case Publish:
		return "publish"
	case Republish:
		return "republish"
	case Ack:
		return "ack"
	case Retry:
		return "retry"
	case Conflict:
		return "conflict"
	case Spawn:
		return "spawn"
	case Finish:
		return "finish"
	case Share:
		return "share"
	case Archive:
		return "archive"
	case Redeliver:
		return "redeliver"
	case Drop:
		return "drop"
	case KeepAlive:
		return "keep-alive"
	case Reject:
		return "reject"
	case GiveUp:
		return "give-up"
	case HoldWake:
		return "hold-wake"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Step is one decision: store Next (when not nil) with a compare-and-set
// over the revision the decision was made from, then do Action. If the
// store finds the state changed, the caller decides again from what is
// stored now.
type Step struct {
	Next   *State
	Action Action
	Delay  time.Duration // for Retry and Redeliver
	// Failed is the failure event of a request rejected (Conflict,
	// Reject), or of an operation given up (GiveUp).
	Failed *messages.Failed
	// Reason is a dropped message's termination reason (Drop; GiveUp:
	// the one its Drop is to have).
	Reason string
	// Keep: a give-up keeps a copy of the message in the dead-letter
	// stream first (GiveUp).
	Keep bool
	// Count: a rejection is counted (and logged); Notify: the collection
	// of a rejected child is told that it ended, before the Drop.
	Count, Notify bool
	// Chunk, for a collection's listed page, is to be stored before Next.
	Chunk *Chunk
	// Spawn, for Action Spawn, names the children to request.
	Spawn *Range
}

// staleReadRetry is how soon a wake-up that found a stale state comes
// back.
const staleReadRetry = time.Second

// Trace is the trace context an operation carries across calls.
type Trace struct{ Parent, State string }

// Accept is the transition of a request that has no operation yet: a new
// operation, claimed for its first call, or failed with timeout if its
// deadline had passed.
func (m Machine) Accept(req messages.Request, tr Trace, now time.Time) Step {
	st := NewState(req, now, m.DefaultDeadline, m.MaxDeadline)
	st.TraceParent, st.TraceState = tr.Parent, tr.State
	if !st.Deadline.After(now) {
		m.fail(&st, messages.CodeTimeout, "the request's deadline had passed when it was accepted", nil, true, now)
		return Step{Next: &st, Action: Publish}
	}
	m.claim(&st, now)
	return Step{Next: &st, Action: Call}
}

// Delivery describes the message that brought an operation back.
type Delivery struct {
	// Request is the request seen again (a redelivery, a resubmission);
	// nil for a wake-up.
	Request *messages.Request
	// Wake is the wake-up's number, for a wake-up.
	Wake uint64
	// Acting is true when this worker's process is making a call for the
	// operation right now.
	Acting bool
	// Child, for a collection, is the notice that one of its children
	// ended.
	Child *ChildNotice
	// Slot, for a collection, is a slot notice: the global window has
	// room for it.
	Slot bool
}

// ChildNotice tells a collection that its child Index ended.
type ChildNotice struct {
	Index  int
	Failed bool
	// ID is the id of the request that ended; Listed, when the collection
	// has listed document Index, is that document (from its chunk). A
	// notice from a request that is not the child made for it is ignored.
	ID     string
	Listed *Child
}

// Resume is the transition of a stored operation that a message brought
// back: a wake-up that fell due (or not), a request seen again, a
// redelivery after a crash.
func (m Machine) Resume(st State, d Delivery, now time.Time) Step {
	if d.Slot {
		// Whatever the state, ask: an operation that is no collection
		// collecting releases what it held.
		return Step{Action: Share}
	}
	if d.Child != nil {
		if c := d.Child; c.Listed != nil && ChildRequest(st.Request, c.Index, *c.Listed).ID != c.ID {
			return Step{Action: Ack} // not this collection's child
		}
		return m.ChildEnded(st, d.Child.Index, d.Child.Failed, now)
	}
	if d.Request != nil && !messages.SameOperation(st.Request, *d.Request) {
		return Step{Action: Conflict, Failed: conflict(st, *d.Request)}
	}
	current := d.Request == nil && d.Wake == st.Wake
	// Wake numbers only grow: a wake-up ahead of the stored state means
	// this read of it is stale (a replica lagging behind the leader).
	if d.Request == nil && d.Wake > st.Wake && !st.Phase.Terminal() {
		return Step{Action: Retry, Delay: staleReadRetry}
	}
	// A claim this worker holds without acting on it is left over from one
	// of its own writes that timed out and landed later: void.
	orphan := st.Phase.Claimed() && st.ClaimedBy == m.Worker && !d.Acting
	switch {
	case st.Phase.Terminal():
		return Step{Action: Republish}

	case st.Phase == PhaseCollecting:
		// Its children are requested and counted as they end; a finish cut
		// short is done again.
		if m.shares(&st) {
			return Step{Action: Share}
		}
		if st.Collection.Done() {
			return Step{Action: Finish}
		}
		return Step{Action: Ack}

	case st.Phase == PhaseWaiting && current && !now.Before(st.NextAt),
		st.ClaimExpired(now) || orphan:
		if st.Location == "" && !st.archiveDue() && st.Unanswered >= m.MaxUnanswered {
			// Each of these first calls may have started an operation in
			// Azure; send no more.
			m.fail(&st, messages.CodeInterrupted, fmt.Sprintf("the first call to Azure went unanswered %d times (timeouts, "+
				"connection resets or a worker stopping mid-call); it is not sent again", st.Unanswered), nil, true, now)
			return Step{Next: &st, Action: Publish}
		}
		m.claim(&st, now)
		return Step{Next: &st, Action: st.action()}

	case st.Phase == PhaseWaiting && current:
		// Early: by the lead it was scheduled with (held in the worker
		// until due, when that is at most HoldMax), or by the worker's
		// clock (the server's runs ahead): come back when it is due,
		// rather than scheduling a time the server already sees as past.
		if step, ok := m.hold(st.NextAt, now); ok {
			return step
		}
		return Step{Action: Retry, Delay: st.NextAt.Sub(now)}

	case st.Phase == PhaseWaiting:
		// A request seen again, a stale wake-up: make sure the pending
		// wake-up exists, and drop this message.
		return Step{Action: Schedule}

	case d.Request == nil && !current:
		return Step{Action: Ack} // a stale wake-up; the claim's holder has its own message

	default: // a live claim: come back when it expires
		return Step{Action: Retry, Delay: st.ClaimedUntil.Sub(now) + time.Second}
	}
}

// Abandon is the transition of an operation whose messages keep failing
// (a bug, a store that is down): it ends failed with internal_error,
// unless it had ended already. st is nil when no operation is stored, and
// then req (if not nil) is the request to store a failed operation for.
func (m Machine) Abandon(st *State, req *messages.Request, reason string, tr Trace, now time.Time) Step {
	if st != nil && st.Phase.Terminal() {
		return Step{Action: Republish}
	}
	if st != nil && st.Archiving != nil {
		// Azure's answer is in: complete with its link and the archive's
		// failure rather than lose it.
		next := *st
		m.archiveEnd(&next, nil, messages.ArchiveInternal, reason, now)
		return Step{Next: &next, Action: Publish}
	}
	var next State
	switch {
	case st != nil:
		next = *st
	case req != nil:
		next = NewState(*req, now, m.DefaultDeadline, m.MaxDeadline)
		next.TraceParent, next.TraceState = tr.Parent, tr.State
	default:
		return Step{Action: Ack} // nothing to end
	}
	m.fail(&next, messages.CodeInternal, reason, nil, true, now)
	return Step{Next: &next, Action: Publish}
}

// Reclaim renews this worker's claim on st (stored claimed), when storing
// it took so long that it would run out during the call. The call is not
// counted again.
func (m Machine) Reclaim(st State, now time.Time) Step {
	st.Claim(m.Worker, now, now.Add(m.ClaimFor))
	return Step{Next: &st, Action: st.action()}
}

// Defer is the transition of a call the shared throttle holds back: next
// is the state a step decided to store for the call (claimed, by Accept,
// Resume or Reclaim), and h the throttle's answer. The operation waits until
// h.Until instead (plus a random part of HoldSpread when h is no slot of
// its own, so that the calls a pause held are not released at once); the
// call is not made, so a first call is not counted. When the deadline comes
// first, it fails with timeout.
func (m Machine) Defer(next State, h Hold, now time.Time) Step {
	st := next
	if st.Location == "" {
		st.Unanswered = max(st.Unanswered-1, 0) // the claim counted a call that is not sent
	}
	at := h.Until
	if !h.Slot && m.HoldSpread > 0 {
		spread := min(m.HoldSpread, max(h.Until.Sub(now), 0))
		at = at.Add(time.Duration(m.random() * float64(spread)))
	}
	if !at.Before(st.Deadline) {
		reason := "its scope's budget"
		if !h.PausedUntil.IsZero() {
			reason = "its scope's pause"
		}
		m.fail(&st, messages.CodeTimeout, fmt.Sprintf("the shared throttle held the next call (scope %s, %s) until %s, past the deadline %s",
			h.Scope, reason, at.Format(time.RFC3339), st.Deadline.Format(time.RFC3339)), nil, true, now)
		return Step{Next: &st, Action: Publish}
	}
	st.Wait(poll.Decision{At: at, Wait: at.Sub(now), Source: SourceThrottle}, now)
	st.Throttled = &h
	return Step{Next: &st, Action: Schedule}
}

// SourceThrottle is State.LastWaitSource of a wait the shared throttle
// imposed.
const SourceThrottle = "throttle"

func (m Machine) random() float64 {
	if m.Rand != nil {
		return m.Rand()
	}
	return rand.Float64()
}

func (m Machine) claim(st *State, now time.Time) {
	st.Throttled = nil // the hold, if any, is over
	st.Claim(m.Worker, now, now.Add(m.ClaimFor))
	if st.Phase == PhaseStarting {
		// Counted until its answer is stored, so that a worker dying
		// mid-call leaves it counted.
		st.Unanswered++
	}
}

func (m Machine) fail(st *State, code messages.Code, msg string, azure *messages.AzureError, retryable bool, now time.Time) {
	accepted := st.AcceptedAt
	st.Fail(messages.Failed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
		Code: code, Message: redact.String(msg), Azure: azure, Retryable: retryable,
		AcceptedAt: &accepted, FailedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}, now)
}
