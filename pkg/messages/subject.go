package messages

import (
	"strconv"
	"strings"
	"time"
)

// Subjects, relative to a prefix (DefaultPrefix unless the worker is
// configured otherwise).
const (
	// DefaultPrefix is the first token of every subject.
	DefaultPrefix = "billing"
	// Headers; docs/asyncapi.json documents every one (a test checks it).
	HeaderMsgID       = "Nats-Msg-Id"
	HeaderRequestID   = "Billing-Request-Id"
	HeaderKind        = "Billing-Kind"
	HeaderOutcome     = "Billing-Outcome"
	HeaderErrorCode   = "Billing-Error-Code"
	HeaderError       = "Billing-Error"
	HeaderOrigSubject = "Billing-Original-Subject"
	HeaderOrigSeq     = "Billing-Original-Sequence"
	HeaderOrigMsgID   = "Billing-Original-Msg-Id"
	// HeaderExpectedStream marks a stored event sent again to live
	// subscribers only (see docs/contract.md, Resubmitting a request).
	HeaderExpectedStream = "Nats-Expected-Stream"
	// W3C trace context, on requests and events (written in lower case,
	// read in either case).
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
	// CloudEvents 1.0 attributes of an event, in binary content mode (the
	// NATS protocol binding: each attribute a header, the body the data).
	HeaderCESpecVersion = "ce-specversion"
	HeaderCEID          = "ce-id"
	HeaderCEType        = "ce-type"
	HeaderCESource      = "ce-source"
	HeaderCETime        = "ce-time"
	HeaderCEDataSchema  = "ce-dataschema"
	HeaderContentType   = "content-type"
	// Outcomes, the third token of an event subject.
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
)

// CloudEvents attribute values of the events.
const (
	// CloudEventsSpecVersion is the ce-specversion of every event.
	CloudEventsSpecVersion = "1.0"
	// CloudEventTypeCompleted and CloudEventTypeFailed are the ce-type of
	// a completion and of a failure event.
	CloudEventTypeCompleted = "com.azbilling.worker.download.completed"
	CloudEventTypeFailed    = "com.azbilling.worker.download.failed"
	// ContentTypeJSON is the content-type of every event.
	ContentTypeJSON = "application/json"
	// SchemaIDRequest, SchemaIDCompleted and SchemaIDFailed are the $id of
	// the JSON Schemas in the schema folder; an event's ce-dataschema is its
	// schema's.
	SchemaIDRequest   = "urn:billing-worker:schema:request:v1"
	SchemaIDCompleted = "urn:billing-worker:schema:completed:v1"
	SchemaIDFailed    = "urn:billing-worker:schema:failed:v1"
)

// CloudEventType returns the ce-type of an event with outcome
// (OutcomeCompleted or OutcomeFailed).
func CloudEventType(outcome string) string {
	if outcome == OutcomeCompleted {
		return CloudEventTypeCompleted
	}
	return CloudEventTypeFailed
}

// DataSchema returns the ce-dataschema of an event with outcome: the $id
// of its JSON Schema.
func DataSchema(outcome string) string {
	if outcome == OutcomeCompleted {
		return SchemaIDCompleted
	}
	return SchemaIDFailed
}

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

// ArchiveBucket is the Object Store bucket of archived documents:
// <prefix>_archive.
func (s Layout) ArchiveBucket() string { return s.Prefix + "_archive" }

func (s Layout) upper() string { return strings.ToUpper(strings.ReplaceAll(s.Prefix, "-", "_")) }

// Request is the subject to publish a request of kind k on:
// <prefix>.requests.<kind>. The worker takes every <prefix>.requests.>
// subject; the kind in the body is what counts.
func (s Layout) Request(k Kind) string { return s.Prefix + ".requests." + KindToken(k) }

// Requests is the filter of every request subject.
func (s Layout) Requests() string { return s.Prefix + ".requests.>" }

// Event is the subject of a request's outcome event:
// <prefix>.events.<outcome>.<kind>.<id>. Consumers filter on any token, such
// as <prefix>.events.completed.> or <prefix>.events.*.*.<id>. A kind or id
// that breaks its rule is replaced by Invalid (see IDToken).
func (s Layout) Event(outcome string, k Kind, id string) string {
	return s.Prefix + ".events." + outcome + "." + KindToken(k) + "." + IDToken(id)
}

// Events is the filter of every event subject.
func (s Layout) Events() string { return s.Prefix + ".events.>" }

// EventsFor is the filter of the events of one request.
func (s Layout) EventsFor(id string) string { return s.Prefix + ".events.*.*." + IDToken(id) }

// DeadLetter is the subject a rejected message is kept on:
// <prefix>.deadletter.<kind>.<seq>, seq being the message's sequence in the
// work stream. One subject per rejected message lets the worker keep each
// one exactly once, however late a redelivery comes.
func (s Layout) DeadLetter(k Kind, seq uint64) string {
	return s.Prefix + ".deadletter." + KindToken(k) + "." + strconv.FormatUint(seq, 10)
}

// DeadLetters is the filter of every dead-letter subject.
func (s Layout) DeadLetters() string { return s.Prefix + ".deadletter.>" }

// CollectionBucket is the key-value bucket of the documents collections
// listed, one entry per listed page: <prefix>_collections.
func (s Layout) CollectionBucket() string { return s.Prefix + "_collections" }

// ChildrenEnded is the worker's internal subject of notices that a
// collection's child ended.
func (s Layout) ChildrenEnded() string { return s.Prefix + ".internal.ended" }

// Polls is the worker's internal subject of due polls.
func (s Layout) Polls() string { return s.Prefix + ".internal.polls" }

// Schedule is the worker's internal subject holding the pending wake-up of
// request id that the server is to fire at at (the worker fires it a lead
// before the poll is due): <prefix>.internal.schedules.<unix second>.<id>. The second it falls due is a token of its own, so that the
// wake-ups of one second are found together (SchedulesDue).
func (s Layout) Schedule(id string, at time.Time) string {
	return s.Prefix + ".internal.schedules." + strconv.FormatInt(at.Unix(), 10) + "." + IDToken(id)
}

// SchedulesDue is the filter of the wake-ups that fall due within the
// second sec (Unix time).
func (s Layout) SchedulesDue(sec int64) string {
	return s.Prefix + ".internal.schedules." + strconv.FormatInt(sec, 10) + ".*"
}

// CloudEventSource is the ce-source of the events published under the
// layout's prefix: /billing-worker/<prefix>.
func (s Layout) CloudEventSource() string { return "/billing-worker/" + s.Prefix }

// OutcomeMsgID is the message id (Nats-Msg-Id, ce-id) of the outcome event
// of request id: one per id.
func OutcomeMsgID(id string) string { return "outcome." + id }

// EventHeaders returns the headers of an event (besides the trace
// context): the Billing-* headers, with Invalid for an id or kind that
// breaks its rule, and the CloudEvents 1.0 attributes of binary content
// mode (ce-id is msgID, the event's message id; ce-time is at, when not
// zero).
func (s Layout) EventHeaders(outcome string, k Kind, id, msgID string, at time.Time) map[string]string {
	h := map[string]string{
		HeaderRequestID:     IDToken(id),
		HeaderKind:          KindToken(k),
		HeaderOutcome:       outcome,
		HeaderCESpecVersion: CloudEventsSpecVersion,
		HeaderCEID:          msgID,
		HeaderCEType:        CloudEventType(outcome),
		HeaderCESource:      s.CloudEventSource(),
		HeaderContentType:   ContentTypeJSON,
		HeaderCEDataSchema:  DataSchema(outcome),
	}
	if !at.IsZero() {
		h[HeaderCETime] = at.UTC().Format(time.RFC3339Nano)
	}
	return h
}

// Internal is the filter of the worker's internal subjects.
func (s Layout) Internal() string { return s.Prefix + ".internal.>" }

// Invalid stands in a subject token or header for a request id or kind
// that breaks its rule (too long, empty, or with characters outside
// [A-Za-z0-9_-]): such a value never reaches a subject, a key or a header
// as it is. '~' is outside the id rule, so Invalid is never a valid id.
const Invalid = "~invalid"

// IDToken returns id when it follows the id rule, else Invalid.
func IDToken(id string) string {
	if !ValidID(id) {
		return Invalid
	}
	return id
}

// KindToken returns k when it is a known kind, else Invalid.
func KindToken(k Kind) string {
	if !k.Valid() {
		return Invalid
	}
	return string(k)
}

// ThrottleBucket is the key-value bucket of the shared throttle, one entry
// per scope (see package throttle): <prefix>_throttle.
func (s Layout) ThrottleBucket() string { return s.Prefix + "_throttle" }
