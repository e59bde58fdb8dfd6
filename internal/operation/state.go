package operation

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// Phase is where an operation stands.
type Phase string

// The phases. Starting and Polling are claims: one worker is making an
// Azure call for the operation until ClaimedUntil.
const (
	PhaseStarting  Phase = "starting"  // the first call (POST, or GET of an invoice) is in flight
	PhaseWaiting   Phase = "waiting"   // the next call is due at NextAt
	PhasePolling   Phase = "polling"   // a GET of the Location is in flight
	PhaseCompleted Phase = "completed" // Completed holds the event
	PhaseFailed    Phase = "failed"    // Failed holds the event
)

// Terminal reports whether the operation has ended.
func (p Phase) Terminal() bool { return p == PhaseCompleted || p == PhaseFailed }

// Claimed reports whether a worker holds the operation.
func (p Phase) Claimed() bool { return p == PhaseStarting || p == PhasePolling || p == PhaseArchiving }

// Classes of the last failure (State.LastErrorClass).
const (
	ClassAuth      = "auth"      // no token could be had
	ClassAzure     = "azure"     // Azure answered with an error status
	ClassMalformed = "malformed" // a success answer that could not be used
	ClassLocation  = "location"  // a polling URL that was refused
	ClassTransport = "transport" // no answer: connection error or timeout
)

// StateVersion is the schema version of State.
const StateVersion = 1

// ErrUnknownVersion is wrapped by Decode's error for a record written in a
// version this code does not read (a newer worker's, say): it is never
// misread silently.
var ErrUnknownVersion = errors.New("operation: stored state of an unknown version")

// Decode reads a stored state.
func Decode(data []byte) (State, error) {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, fmt.Errorf("operation: stored state does not decode: %w", err)
	}
	if st.Version != StateVersion {
		return State{}, fmt.Errorf("%w: version %d; this code reads version %d", ErrUnknownVersion, st.Version, StateVersion)
	}
	return st, nil
}

// Encode writes st for storing.
func Encode(st *State) []byte {
	b, err := json.Marshal(st)
	if err != nil {
		panic(fmt.Sprintf("operation: encode state: %v", err)) // plain data: cannot happen
	}
	return b
}

// State is the persisted state of one operation, stored in the worker's
// key-value bucket under the request id. Writers compare-and-set on the
// entry's revision, so two workers never act on one operation at once.
type State struct {
	Version int              `json:"version"`
	Request messages.Request `json:"request"`
	Phase   Phase            `json:"phase"`
	// AcceptedAt is when a worker first took the request.
	AcceptedAt time.Time `json:"acceptedAt"`
	// Deadline is when the operation gives up.
	Deadline time.Time `json:"deadline"`
	// Location is the polling URL; empty until Azure accepted the operation
	// (so the next call is the first one again, after a throttled start).
	Location string `json:"location,omitempty"`
	// Started is true once Azure accepted the operation (a 200 or 202 to
	// the first call).
	Started bool `json:"started,omitempty"`
	// AzureCalls counts every HTTP call sent to Azure; Polls the GETs of
	// the Location among them.
	AzureCalls int `json:"azureCalls"`
	Polls      int `json:"polls"`
	// Unanswered counts the first calls sent whose answer never arrived (a
	// timeout, a broken connection, or the worker stopping mid-call): each
	// may have started an operation in Azure. A first call is counted when
	// it is claimed and uncounted when its answer is stored; the worker
	// sends no more once it reaches its max-unanswered-calls setting.
	Unanswered int `json:"unansweredCalls,omitempty"`
	// Failures counts consecutive failed calls (throttled, transient,
	// malformed); a good answer resets it. BadAnswers counts malformed
	// success answers in a row.
	Failures   int `json:"failures,omitempty"`
	BadAnswers int `json:"badAnswers,omitempty"`
	// LastStatus is the HTTP status of the last answer (0: none, or no
	// answer); LastError describes the last failure, redacted.
	LastStatus     int    `json:"lastStatus,omitempty"`
	LastError      string `json:"lastError,omitempty"`
	LastErrorClass string `json:"lastErrorClass,omitempty"`
	// LastWait is the wait chosen after the last answer and what set it.
	LastWait       time.Duration `json:"lastWait,omitempty"`
	LastWaitSource string        `json:"lastWaitSource,omitempty"`
	// NextAt is when the next call is due (phase waiting).
	NextAt time.Time `json:"nextAt,omitzero"`
	// Wake numbers the pending wake-up; a wake-up message carrying another
	// number is stale.
	Wake uint64 `json:"wake"`
	// ClaimedBy and ClaimedUntil identify the claim of phases starting and
	// polling; past ClaimedUntil the claim is void (its worker died).
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
	// Listed holds the invoices of the pages a listing fetched so far;
	// Location is then the next page's URL. Emptied when it completes.
	Listed []messages.Invoice `json:"listed,omitempty"`
	// Found holds the items of the pages a discovery kind fetched so far.
	Found []messages.Discovered `json:"found,omitempty"`
	// Collection is a collection's progress (kind collection).
	Collection *Collection `json:"collection,omitempty"`
	// Throttled is the shared throttle's hold on the next call, while the
	// operation waits for it (phase waiting); nil otherwise.
	Throttled *Hold `json:"throttled,omitempty"`
	// TraceParent and TraceState carry the request's trace across polls,
	// replicas and restarts.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// Completed or Failed is the final event, kept so that a duplicate
	// request or a restart publishes the same event again.
	Completed *messages.Completed `json:"completed,omitempty"`
	Failed    *messages.Failed    `json:"failed,omitempty"`
	UpdatedAt time.Time           `json:"updatedAt"`
	// Archiving is the pending archive of the document, from Azure's
	// final answer until the completion event (which keeps the archive's
	// outcome in Completed.Archive).
	Archiving *Archiving `json:"archiving,omitempty"`
	// Calls is the operation's recent Azure calls, oldest first: the last
	// MaxCalls answers taken (CallsDropped counts the older ones left
	// out). Records written before it existed have none.
	Calls        []CallRecord `json:"calls,omitempty"`
	CallsDropped int          `json:"callsDropped,omitempty"`
}

// MaxCalls bounds State.Calls, so that a record stays small however long
// an operation polls.
const MaxCalls = 20

// CallRecord is one answer taken for an operation: an Azure call, or an attempt
// that sent none (no token could be had, or the deadline had come).
type CallRecord struct {
	// At is when the answer was taken.
	At time.Time `json:"at"`
	// Poll is true for a GET of the Location, false for the first call.
	Poll bool `json:"poll,omitempty"`
	// Status is the HTTP status (0: no answer, or no call sent).
	Status int `json:"status,omitempty"`
	// Outcome names what the answer meant (see Outcome.String).
	Outcome string `json:"outcome"`
	// Wait is the wait chosen after the answer and WaitSource what set it
	// (retry-after, backoff, ...); zero when the operation ended.
	Wait       time.Duration `json:"wait,omitempty"`
	WaitSource string        `json:"waitSource,omitempty"`
	// Error describes a failed call, redacted.
	Error string `json:"error,omitempty"`
}

// record appends c to the call history, dropping the oldest beyond
// MaxCalls.
func (s *State) record(c CallRecord) {
	if len(s.Calls) >= MaxCalls {
		n := len(s.Calls) - MaxCalls + 1
		s.Calls = append(s.Calls[:0:0], s.Calls[n:]...)
		s.CallsDropped += n
	}
	s.Calls = append(s.Calls, c)
}

// NewState returns the state of a request accepted at now; the deadline is
// the request's own, or now+defaultDeadline, capped at now+maxDeadline.
func NewState(req messages.Request, now time.Time, defaultDeadline, maxDeadline time.Duration) State {
	deadline := now.Add(defaultDeadline)
	if req.Deadline != nil {
		deadline = *req.Deadline
	}
	if maxDeadline > 0 && deadline.After(now.Add(maxDeadline)) {
		deadline = now.Add(maxDeadline)
	}
	return State{
		Version:    StateVersion,
		Request:    req,
		AcceptedAt: now,
		Deadline:   deadline.UTC(),
		UpdatedAt:  now,
	}
}

// Claim marks the state as held by worker until until, for the next call
// (or the archive, when that is due).
func (s *State) Claim(worker string, now, until time.Time) {
	switch {
	case s.archiveDue():
		s.Phase = PhaseArchiving
	case s.Location == "":
		s.Phase = PhaseStarting
	default:
		s.Phase = PhasePolling
	}
	s.ClaimedBy, s.ClaimedUntil, s.UpdatedAt = worker, until, now
}

// ClaimExpired reports whether a claim is void at now.
func (s *State) ClaimExpired(now time.Time) bool {
	return s.Phase.Claimed() && !now.Before(s.ClaimedUntil)
}

// Wait records a decision to call again at d.At.
func (s *State) Wait(d poll.Decision, now time.Time) {
	s.Phase = PhaseWaiting
	s.NextAt = d.At
	s.LastWait, s.LastWaitSource = d.Wait, d.Source
	s.Throttled = nil
	s.Wake++
	s.ClaimedBy, s.ClaimedUntil, s.UpdatedAt = "", time.Time{}, now
}

// Complete ends the operation with ev.
func (s *State) Complete(ev messages.Completed, now time.Time) {
	ev.Collection = s.Request.Collection
	s.Phase, s.Completed = PhaseCompleted, &ev
	s.ClaimedBy, s.ClaimedUntil, s.NextAt, s.UpdatedAt = "", time.Time{}, time.Time{}, now
}

// Fail ends the operation with ev.
func (s *State) Fail(ev messages.Failed, now time.Time) {
	ev.Collection = s.Request.Collection
	s.Phase, s.Failed = PhaseFailed, &ev
	s.ClaimedBy, s.ClaimedUntil, s.NextAt, s.UpdatedAt = "", time.Time{}, time.Time{}, now
}

// Hold is a wait the shared throttle put on an operation's next call.
type Hold struct {
	// Scope is the throttle scope of the call ("default.billing.writes").
	Scope string `json:"scope"`
	// Until is when the call may go.
	Until time.Time `json:"until"`
	// Slot is true when Until is a slot of the scope's token bucket taken
	// for this call: when it comes the call goes without taking another.
	Slot bool `json:"slot,omitempty"`
	// PausedUntil is the end of the scope's pause (Azure answered 429 or
	// 503) when the call fell due; zero when the scope was not paused.
	PausedUntil time.Time `json:"pausedUntil,omitzero"`
	// Reserved is when the slot was taken (Slot true).
	Reserved time.Time `json:"reserved,omitzero"`
}

// SlotDue reports whether the operation holds a slot of the throttle's
// bucket that has come at now: its call takes no other.
func (s *State) SlotDue(now time.Time) bool {
	return s.Throttled != nil && s.Throttled.Slot && !now.Before(s.Throttled.Until)
}
