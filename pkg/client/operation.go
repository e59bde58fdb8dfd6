package client

import (
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// Phase is where an operation stands.
type Phase string

// The phases of an operation. Starting, polling and archiving are claims:
// one worker holds the operation (an Azure call, or the download into the
// archive, is under way) until ClaimedUntil.
const (
	PhaseStarting   Phase = "starting"   // the first Azure call is in flight
	PhaseWaiting    Phase = "waiting"    // the next call is due at NextAt
	PhasePolling    Phase = "polling"    // a poll of Azure's operation is in flight
	PhaseArchiving  Phase = "archiving"  // the document is being downloaded into the archive
	PhaseCollecting Phase = "collecting" // a collection listed its documents and waits for its children
	PhaseCompleted  Phase = "completed"  // Completed holds the event
	PhaseFailed     Phase = "failed"     // Failed holds the event
	// PhaseInvalid is a collection Child's phase when no request could be
	// made for its document; no operation is ever in it.
	PhaseInvalid Phase = "invalid"
)

// Terminal reports whether the operation has ended.
func (p Phase) Terminal() bool { return p == PhaseCompleted || p == PhaseFailed }

// Claimed reports whether a worker holds the operation.
func (p Phase) Claimed() bool { return p == PhaseStarting || p == PhasePolling || p == PhaseArchiving }

// Operation is what the worker stores about one request's operation, as
// the client reads it. Its JSON names are those of the stored record;
// what only the worker's own bookkeeping needs (the polling URL, which
// may carry a session token, wake-up numbers, a listing's pages so far, a
// collection's child bitmap) is left out.
type Operation struct {
	// Request is the request as accepted: id, kind, profile, params,
	// labels.
	Request messages.Request `json:"request"`
	Phase   Phase            `json:"phase"`
	// AcceptedAt is when a worker first took the request; Deadline when
	// the operation gives up; UpdatedAt when its state last changed.
	AcceptedAt time.Time `json:"acceptedAt"`
	Deadline   time.Time `json:"deadline"`
	// Started is true once Azure accepted the operation.
	Started bool `json:"started,omitempty"`
	// AzureCalls counts every HTTP call sent to Azure; Polls the polls
	// among them.
	AzureCalls int `json:"azureCalls"`
	Polls      int `json:"polls"`
	// Unanswered counts the first calls whose answer never arrived (each
	// may have started an operation in Azure).
	Unanswered int `json:"unansweredCalls,omitempty"`
	// Failures counts consecutive failed calls; BadAnswers malformed
	// success answers in a row.
	Failures   int `json:"failures,omitempty"`
	BadAnswers int `json:"badAnswers,omitempty"`
	// LastStatus is the HTTP status of the last answer (0: none);
	// LastError describes the last failure, already redacted by the
	// worker, and LastErrorClass names its kind (auth, azure, malformed,
	// location, transport).
	LastStatus     int    `json:"lastStatus,omitempty"`
	LastError      string `json:"lastError,omitempty"`
	LastErrorClass string `json:"lastErrorClass,omitempty"`
	// LastWait is the wait chosen after the last answer, and
	// LastWaitSource what set it (retry-after, backoff, throttle, ...).
	LastWait       time.Duration `json:"lastWait,omitempty"`
	LastWaitSource string        `json:"lastWaitSource,omitempty"`
	// NextAt is when the next call is due (phase waiting).
	NextAt time.Time `json:"nextAt,omitzero"`
	// ClaimedBy and ClaimedUntil name the worker holding a claimed phase.
	ClaimedBy    string    `json:"claimedBy,omitempty"`
	ClaimedUntil time.Time `json:"claimedUntil,omitzero"`
	// Collection is a collection's running count (kind collection, until
	// it ends).
	Collection *CollectionState `json:"collection,omitempty"`
	// Throttled is the shared throttle's hold on the next call while the
	// operation waits for it.
	Throttled *Hold `json:"throttled,omitempty"`
	// TraceParent and TraceState are the request's W3C trace context.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// Completed or Failed is the outcome, once the operation has ended.
	Completed *messages.Completed `json:"completed,omitempty"`
	Failed    *messages.Failed    `json:"failed,omitempty"`
	UpdatedAt time.Time           `json:"updatedAt"`
	// Archiving is the download of the document into the archive, from
	// Azure's final answer until the completion event.
	Archiving *Archiving `json:"archiving,omitempty"`
	// Calls is the operation's recent Azure calls, oldest first;
	// CallsDropped counts the older ones no longer kept.
	Calls        []Call `json:"calls,omitempty"`
	CallsDropped int    `json:"callsDropped,omitempty"`
}

// Hold is a wait the shared throttle put on an operation's next call.
type Hold struct {
	// Scope is the throttle scope of the call ("default.billing.writes").
	Scope string `json:"scope"`
	// Until is when the call may go.
	Until time.Time `json:"until"`
	// Slot is true when Until is a slot of the scope's budget taken for
	// this call.
	Slot bool `json:"slot,omitempty"`
	// PausedUntil is the end of the scope's pause (Azure answered 429 or
	// 503) when the call fell due; zero when the scope was not paused.
	PausedUntil time.Time `json:"pausedUntil,omitzero"`
}

// Archiving is the pending archive of an operation's document.
type Archiving struct {
	// NeedLink is true while a new link is asked of Azure (the last one
	// expired or was refused by storage).
	NeedLink bool `json:"needLink,omitempty"`
	// Attempts counts the downloads that ended; Relinks the new links
	// asked of Azure.
	Attempts int `json:"attempts"`
	Relinks  int `json:"relinks,omitempty"`
	// LastError describes the last failed attempt, redacted.
	LastError string `json:"lastError,omitempty"`
}

// Call is one answer taken for an operation: an Azure call, or an
// attempt that sent none (no token could be had, or the deadline came).
type Call struct {
	At time.Time `json:"at"`
	// Poll is true for a poll, false for the first call.
	Poll bool `json:"poll,omitempty"`
	// Status is the HTTP status (0: no answer, or no call sent).
	Status int `json:"status,omitempty"`
	// Outcome names what the answer meant ("accepted", "throttled", ...).
	Outcome string `json:"outcome"`
	// Wait is the wait chosen after the answer and WaitSource what set it;
	// zero when the operation ended.
	Wait       time.Duration `json:"wait,omitempty"`
	WaitSource string        `json:"waitSource,omitempty"`
	// Error describes a failed call, redacted.
	Error string `json:"error,omitempty"`
}

// CollectionState is a running collection's count of its children.
type CollectionState struct {
	// Invoices counts the invoices listed; Total the documents (children)
	// listed so far.
	Invoices int `json:"invoices"`
	Total    int `json:"total"`
	// Spawned children were requested; Completed and Failed of them have
	// ended, InFlight have not.
	Spawned   int `json:"spawned"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	InFlight  int `json:"inFlight"`
}

// Progress counts a collection's children from its stored state alone:
// the running count, or its completion event's summary once it has ended
// (Waiting and Throttled need the children's states: see
// Client.Collection). Zero for an operation that is not a collection.
func (o Operation) Progress() Progress {
	switch {
	case o.Collection != nil:
		c := o.Collection
		return Progress{Documents: c.Total, Completed: c.Completed, Failed: c.Failed, InFlight: c.InFlight}
	case o.Completed != nil && o.Completed.Collected != nil:
		c := o.Completed.Collected
		return Progress{Documents: c.Documents, Completed: c.Completed, Failed: c.Failed}
	}
	return Progress{}
}

// operationOf is the client's view of a stored state.
func operationOf(st operation.State) Operation {
	o := Operation{
		Request: st.Request, Phase: Phase(st.Phase), AcceptedAt: st.AcceptedAt, Deadline: st.Deadline, Started: st.Started,
		AzureCalls: st.AzureCalls, Polls: st.Polls, Unanswered: st.Unanswered, Failures: st.Failures, BadAnswers: st.BadAnswers,
		LastStatus: st.LastStatus, LastError: st.LastError, LastErrorClass: st.LastErrorClass,
		LastWait: st.LastWait, LastWaitSource: st.LastWaitSource, NextAt: st.NextAt,
		ClaimedBy: st.ClaimedBy, ClaimedUntil: st.ClaimedUntil,
		TraceParent: st.TraceParent, TraceState: st.TraceState,
		Completed: st.Completed, Failed: st.Failed, UpdatedAt: st.UpdatedAt, CallsDropped: st.CallsDropped,
	}
	if c := st.Collection; c != nil {
		o.Collection = &CollectionState{Invoices: c.Invoices, Total: c.Total, Spawned: c.Spawned,
			Completed: c.Completed, Failed: c.Failed, InFlight: c.InFlight()}
	}
	if h := st.Throttled; h != nil {
		o.Throttled = &Hold{Scope: h.Scope, Until: h.Until, Slot: h.Slot, PausedUntil: h.PausedUntil}
	}
	if a := st.Archiving; a != nil {
		o.Archiving = &Archiving{NeedLink: a.NeedLink, Attempts: a.Attempts, Relinks: a.Relinks, LastError: a.LastError}
	}
	if len(st.Calls) > 0 {
		o.Calls = make([]Call, len(st.Calls))
		for i, c := range st.Calls {
			o.Calls[i] = Call{At: c.At, Poll: c.Poll, Status: c.Status, Outcome: c.Outcome, Wait: c.Wait, WaitSource: c.WaitSource, Error: c.Error}
		}
	}
	return o
}

// DefaultOverdueAfter is the worker's default wake-overdue-after: a waiting
// operation whose wake-up is this much past its time has one the NATS
// server did not fire, and the worker's watchdog schedules it again.
const DefaultOverdueAfter = 30 * time.Second

// Overdue reports whether o waits for a wake-up that fell due more than
// after before now (DefaultOverdueAfter when after is 0): the server has
// not fired it, or the workers are far behind.
func (o Operation) Overdue(now time.Time, after time.Duration) bool {
	if after == 0 {
		after = DefaultOverdueAfter
	}
	return o.Phase == PhaseWaiting && now.Sub(o.NextAt) > after
}
