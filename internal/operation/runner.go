package operation

import (
	"fmt"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// The decisions below are about the runner's own work rather than Azure's
// answers: when a call is late or was cut by the deadline, whether an
// archive attempt is worth making, what the shared throttle's answer
// means, how a message that keeps failing is handed back or given up, and
// how a rejection ends. They are the machine's like every other, so that
// the runner only carries them out.

// RunnerPolicy bounds the runner's own retries and the calls it makes.
// Its zero value retries a failed message at once, for ever, and takes
// every call's timeout as unbounded.
type RunnerPolicy struct {
	// CallTimeout bounds one Azure call (the token included); a deadline
	// closer than that bounds the call instead.
	CallTimeout time.Duration
	// AuthMargin is how long before its deadline a token request gives up
	// (it leaves the call some time).
	AuthMargin time.Duration
	// SlotTolerance: a throttle slot this close is taken as now.
	SlotTolerance time.Duration
	// MaxDeliver deliveries of a message whose handling keeps failing give
	// it up; before that it comes back after RedeliverFirst, doubled with
	// each delivery up to RedeliverMax.
	MaxDeliver                   int
	RedeliverFirst, RedeliverMax time.Duration
	// RejectRetry is how soon a message comes back when rejecting it, or
	// giving it up, failed halfway (the dead-letter path itself failed).
	RejectRetry time.Duration
}

// The actions of the runner's own decisions. Each one but GiveUp and
// Reject settles the message as it says.
const (
	// Redeliver: hand the message back, to come again after Step.Delay
	// (at once when zero): the runner could not finish with it (the store
	// or NATS failing, a panic, the shutdown cutting a call off); the
	// stored state decides again then.
	Redeliver Action = iota + 200
	// Drop: terminate the message (with Step.Reason, when not empty); it
	// is never delivered again.
	Drop
	// KeepAlive: the message is still being worked on; its ack deadline
	// starts again.
	KeepAlive
	// Reject: dead-letter the request with the failure event Step.Failed,
	// then settle as Machine.Rejected says.
	Reject
	// GiveUp: the message failed too often: end its operation through
	// Abandon (keeping a dead-letter copy first when Step.Keep), then
	// settle as Machine.GaveUp says.
	GiveUp
)

// Late reports whether the call st is claimed for is late at now: its
// deadline has come, and none is sent (the answer is Late).
func (m Machine) Late(st State, now time.Time) bool { return !now.Before(st.Deadline) }

// CutAtDeadline reports whether the operation's deadline, not the call's
// own timeout, cut short a call (or its token request) that st was
// claimed for, sent at sent and ended at now without an answer: the
// failure then says only that time ran out.
func (m Machine) CutAtDeadline(st State, a Answer, sent, now time.Time) bool {
	if a.Outcome != NoAnswer && a.Outcome != AuthUnavailable {
		return false
	}
	bound := m.Runner.CallTimeout <= 0 || st.Deadline.Before(sent.Add(m.Runner.CallTimeout))
	return bound && !now.Before(st.Deadline.Add(-m.Runner.AuthMargin))
}

// Answered is Answer for a call sent at sent: it works out whether the
// deadline cut the call (CutAtDeadline) first.
func (m Machine) Answered(st State, a Answer, sent, now time.Time) Step {
	a.CutAtDeadline = a.CutAtDeadline || m.CutAtDeadline(st, a, sent, now)
	return m.Answer(st, a, now)
}

// SkipArchive decides, before a download of st's document (st stored
// claimed for it), whether it is to be made at all: not without an archive
// store (store false: archiving was turned off since Azure's answer came),
// nor at the deadline, nor past the link's expiry. It returns the step of
// the outcome and true when no download is made.
func (m Machine) SkipArchive(st State, store bool, now time.Time) (Step, bool) {
	switch {
	case !store:
		return m.Archived(st, ArchiveAnswer{Outcome: ArchiveFailed, Code: messages.ArchiveNotConfigured,
			Error: "this worker has no archive store (archive-store none)"}, now), true
	case !now.Before(st.Deadline):
		return m.Archived(st, ArchiveAnswer{Outcome: ArchiveLate}, now), true
	}
	if exp := st.Archiving.Event.ExpiryTime; exp != nil && !now.Before(*exp) {
		// Past the expiry Azure gave (after a long backoff, say): no use
		// downloading; ask for a new link.
		return m.Archived(st, ArchiveAnswer{Outcome: LinkExpired,
			Error: "the link expired at " + exp.UTC().Format(time.RFC3339) + " before it was downloaded"}, now), true
	}
	return Step{}, false
}

// Ask is what the shared throttle is asked about a call.
type Ask int

const (
	// AskPause: the call holds a slot of its scope that has come: is the
	// scope paused (since)? If not, the call goes on that slot.
	AskPause Ask = iota + 1
	// AskReserve: reserve the next slot of the scope's bucket.
	AskReserve
)

// ThrottleAsk is the first question to the shared throttle for the call
// a step claimed: cur is the state the step was decided from, scope the
// call's.
func (m Machine) ThrottleAsk(cur State, scope string, now time.Time) Ask {
	if cur.SlotDue(now) && cur.Throttled.Scope == scope {
		return AskPause
	}
	return AskReserve
}

// HeldSince is when the slot the call holds was taken (zero: none, or a
// hold of older code).
func (s *State) HeldSince() time.Time {
	if s.Throttled == nil || !s.Throttled.Slot {
		return time.Time{}
	}
	return s.Throttled.Reserved
}

// Gate is the shared throttle's answer to Ask.
type Gate struct {
	Scope string
	Ask   Ask
	// Unavailable: the throttle could not answer; the call goes without
	// it.
	Unavailable bool
	// At is the slot reserved (AskReserve); PausedUntil the end of the
	// scope's pause (zero: not paused).
	At, PausedUntil time.Time
	// NoSlot: At is no slot of the bucket but the time to ask again (the
	// scope's probe holds the call).
	NoSlot bool
	// Reserved is when the slot held was taken (AskPause: the hold of the
	// state the step was decided from), Lowered when the scope's
	// estimate last went down: a slot taken before at the old rate is
	// given back, and the call asks for one at the new rate.
	Reserved, Lowered time.Time
}

// Verdict is what a throttle's answer means for the call.
type Verdict int

const (
	// GoNow: the call goes now, on the slot it held, or without the
	// throttle (unavailable).
	GoNow Verdict = iota + 1
	// GoOnSlot: the call goes now, on the slot reserved.
	GoOnSlot
	// AskAgain: the held slot is no use (the scope is paused, or its
	// estimate went down since the slot was taken): ask with AskReserve,
	// and decide again.
	AskAgain
	// HoldBack: the operation waits for the throttle (Step, from Defer).
	HoldBack
)

func (v Verdict) String() string {
	switch v {
	case GoNow:
		return "go"
	case GoOnSlot:
		return "go-on-slot"
	case AskAgain:
		return "ask-again"
	case HoldBack:
		return "hold-back"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Throttle decides what the throttle's answer g means for the call next
// (the claimed state a step decided to store) at now, when the answer
// came. The step is next's call, or for HoldBack the wait (Defer). A slot
// that came while it was being reserved (within SlotTolerance of now) is
// no reason to wait.
func (m Machine) Throttle(next State, g Gate, now time.Time) (Verdict, Step) {
	call := Step{Next: &next, Action: Call}
	switch {
	case g.Unavailable:
		return GoNow, call
	case g.Ask == AskPause && g.PausedUntil.IsZero() && !g.Reserved.Before(g.Lowered):
		return GoNow, call
	case g.Ask == AskPause:
		return AskAgain, Step{}
	case !g.At.After(now.Add(m.Runner.SlotTolerance)):
		return GoOnSlot, call
	}
	h := Hold{Scope: g.Scope, Until: g.At.UTC(), Slot: !g.NoSlot, PausedUntil: g.PausedUntil.UTC()}
	if h.Slot {
		h.Reserved = now.UTC()
	}
	return HoldBack, m.Defer(next, h, now)
}

// Failure describes a delivery the runner could not settle.
type Failure struct {
	// Delivered counts the message's deliveries, this one included.
	Delivered uint64
	// Wake is true for a wake-up, false for a request.
	Wake bool
	// Fire is true for a fire of a recurring schedule (not a request).
	Fire bool
	// Invalid is true for a request that does not validate (this time).
	Invalid bool
}

// Redelivery decides what becomes of a message whose handling failed: it
// comes back after a backoff that doubles with each delivery, until it
// has been delivered MaxDeliver times; then it is given up (its operation
// ended, a request's copy kept), or, for a request that no longer
// validates, rejected with internal_error. A schedule's fire at the limit
// is given up with its copy kept (reason ReasonFire): it has no operation
// to end, and its periods are started by the schedule's next fire, which
// catches up every fire the schedule's record does not show covered.
func (m Machine) Redelivery(f Failure, cause string) Step {
	p := m.Runner
	delivered := max(f.Delivered, 1)
	if delivered < uint64(max(p.MaxDeliver, 1)) {
		delay := time.Duration(1<<min(delivered, 6)) * p.RedeliverFirst
		if p.RedeliverMax > 0 {
			delay = min(delay, p.RedeliverMax)
		}
		return Step{Action: Redeliver, Delay: delay}
	}
	reason := fmt.Sprintf("handling failed %d times; last: %s", delivered, cause)
	failed := &messages.Failed{Code: messages.CodeInternal, Message: reason, Retryable: true}
	switch {
	case f.Fire:
		failed.Message = fmt.Sprintf("schedule fire not handled after %d deliveries (nothing of it recorded; the schedule's next fire catches its periods up); last: %s", delivered, cause)
		return Step{Action: GiveUp, Failed: failed, Keep: true, Reason: ReasonFire}
	case f.Wake:
		return Step{Action: GiveUp, Failed: failed}
	case f.Invalid:
		// Not a request the worker can run: reject it.
		return Step{Action: Reject, Failed: failed}
	}
	return Step{Action: GiveUp, Failed: failed, Keep: true, Reason: string(messages.CodeInternal)}
}

// ReasonFire is the reason a schedule's fire given up is terminated with,
// and the failure it is dead-lettered with says it is a fire.
const ReasonFire = "schedule_fire_failed"

// GaveUp settles a message given up (step, from Redelivery): dropped once
// its operation has ended (or when it has no usable state to end), else
// back after RejectRetry: a give-up that could not go through the stored
// state would contradict the outcome a healthy worker publishes later.
func (m Machine) GaveUp(step Step, ended bool) Step {
	if !ended {
		return m.Unsettled()
	}
	return Step{Action: Drop, Reason: step.Reason}
}

// Unsettled is the step of a message whose rejection or give-up failed
// halfway: it comes back after RejectRetry, and is done again.
func (m Machine) Unsettled() Step { return Step{Action: Redeliver, Delay: m.Runner.RejectRetry} }

// Interrupted is the step of a message whose call or archive the shutdown
// cut off (or whose claim was lost): the claim is left to expire, and the
// message comes back once it has.
func (m Machine) Interrupted() Step { return Step{Action: Redeliver, Delay: m.ClaimFor} }

// Elsewhere is the step of a message this worker does not take (it is
// draining): another worker takes it at once.
func (m Machine) Elsewhere() Step { return Step{Action: Redeliver} }

// Stray is the step of a wake-up or notice that brings no operation back:
// unreadable, it is dropped; readable, its operation has no state (it
// expired), and it is acknowledged.
func (m Machine) Stray(readable bool) Step {
	if !readable {
		return Step{Action: Drop}
	}
	return Step{Action: Ack}
}

// Rejection is a rejected request whose dead letter is kept and whose
// failure event is out.
type Rejection struct {
	Code messages.Code
	// Child is true for a request a collection made.
	Child bool
	// Again is true when an earlier delivery had published the event
	// already (and counted the rejection).
	Again bool
}

// Rejected decides how a rejection ends: it is counted and logged once
// (Step.Count, unless counted before), the collection of a child is told
// that the child ended (Step.Notify), and the message is dropped with the
// failure's code as its reason ("rejected" for a child, or when done
// again).
func (m Machine) Rejected(r Rejection) Step {
	reason := string(r.Code)
	if r.Child || r.Again {
		reason = "rejected"
	}
	return Step{Action: Drop, Reason: reason, Count: !r.Again, Notify: r.Child}
}

// conflict is the failure of a request whose id another operation holds.
func conflict(st State, req messages.Request) *messages.Failed {
	return &messages.Failed{
		Code: messages.CodeIDConflict,
		Message: fmt.Sprintf("request id %q is taken by a %s request with other parameters (accepted %s); "+
			"only an identical resubmission (same kind, profile and params) gets its outcome: use a new id",
			req.ID, st.Request.Kind, st.AcceptedAt.Format(time.RFC3339)),
	}
}
