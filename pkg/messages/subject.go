package messages

import "strings"

// Subjects, relative to a prefix (DefaultPrefix unless the worker is
// configured otherwise).
const (
	// DefaultPrefix is the first token of every subject.
	DefaultPrefix = "billing"
	// Headers.
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderRequestID   = "Billing-Request-Id"
	HeaderKind        = "Billing-Kind"
	HeaderOutcome     = "Billing-Outcome"
	HeaderErrorCode   = "Billing-Error-Code"
	HeaderError       = "Billing-Error"
	HeaderOrigSubject = "Billing-Original-Subject"
	HeaderOrigSeq     = "Billing-Original-Sequence"
	HeaderOrigMsgID   = "Billing-Original-Msg-Id"
	// Outcomes, the third token of an event subject.
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
)

// Layout names the subjects, streams and bucket under one prefix.
type Layout struct{ Prefix string }

// NewLayout returns the names under prefix (DefaultPrefix if empty).
func NewLayout(prefix string) Layout {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Layout{Prefix: prefix}
}

// WorkStream holds requests, pending schedules and due polls, with work
// queue retention: <PREFIX>_WORK (the prefix in upper case).
func (s Layout) WorkStream() string { return s.upper() + "_WORK" }

// EventsStream holds completion and failure events: <PREFIX>_EVENTS.
func (s Layout) EventsStream() string { return s.upper() + "_EVENTS" }

// DeadLetterStream holds rejected requests: <PREFIX>_DEADLETTER.
func (s Layout) DeadLetterStream() string { return s.upper() + "_DEADLETTER" }

// StateBucket is the key-value bucket of operation states, keyed by
// request id: <prefix>_operations.
func (s Layout) StateBucket() string { return s.Prefix + "_operations" }

func (s Layout) upper() string { return strings.ToUpper(strings.ReplaceAll(s.Prefix, "-", "_")) }

// Request is the subject to publish a request of kind k on:
// <prefix>.requests.<kind>. The worker takes every <prefix>.requests.>
// subject; the kind in the body is what counts.
func (s Layout) Request(k Kind) string { return s.Prefix + ".requests." + token(string(k)) }

// Requests is the filter of every request subject.
func (s Layout) Requests() string { return s.Prefix + ".requests.>" }

// Event is the subject of a request's outcome event:
// <prefix>.events.<outcome>.<kind>.<id>. Consumers filter on any token, such
// as <prefix>.events.completed.> or <prefix>.events.*.*.<id>.
func (s Layout) Event(outcome string, k Kind, id string) string {
	return s.Prefix + ".events." + outcome + "." + token(string(k)) + "." + token(id)
}

// Events is the filter of every event subject.
func (s Layout) Events() string { return s.Prefix + ".events.>" }

// EventsFor is the filter of the events of one request.
func (s Layout) EventsFor(id string) string { return s.Prefix + ".events.*.*." + token(id) }

// DeadLetter is the subject a rejected request is kept on:
// <prefix>.deadletter.<kind>.
func (s Layout) DeadLetter(k Kind) string { return s.Prefix + ".deadletter." + token(string(k)) }

// DeadLetters is the filter of every dead-letter subject.
func (s Layout) DeadLetters() string { return s.Prefix + ".deadletter.>" }

// Polls is the worker's internal subject of due polls.
func (s Layout) Polls() string { return s.Prefix + ".internal.polls" }

// Schedule is the worker's internal subject holding the one pending
// schedule of a request.
func (s Layout) Schedule(id string) string { return s.Prefix + ".internal.schedules." + token(id) }

// Internal is the filter of the worker's internal subjects.
func (s Layout) Internal() string { return s.Prefix + ".internal.>" }

// token makes v usable as one subject token: "_" for an empty or unusable
// value (ids and kinds that pass validation are always usable).
func token(v string) string {
	if v == "" || strings.ContainsAny(v, ".*> \t\r\n") {
		return "_"
	}
	return v
}
