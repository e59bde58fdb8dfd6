package messages

import (
	"strconv"
	"strings"
)

// Recurring schedules: a schedule makes one ordinary request per period it
// covers (see docs/schedules.md). The schedule is held by the NATS server
// as a repeating scheduled message; the worker turns each fire into
// requests. Package internal/schedule has the cron and period arithmetic.

// Schedule is a recurring request: every time Cron fires (in TimeZone),
// the worker starts Request for the Period the fire covers, under the id
// "<ID>-<period key>".
type Schedule struct {
	// Version is the schema version; must be 1.
	Version int `json:"version"`
	// ID names the schedule: 1 to 64 letters, digits, '-' or '_'.
	ID string `json:"id"`
	// Cron says when it fires: six fields (seconds first), five fields
	// (a seconds field of 0 is added), @yearly, @monthly, @weekly, @daily,
	// @hourly, or @every <duration> (at least 1s).
	Cron string `json:"cron"`
	// TimeZone is the IANA zone the cron expression and the period are read
	// in; empty means UTC. Not allowed with @every.
	TimeZone string `json:"timeZone,omitempty"`
	// Period is the relative period each fire covers: previous-month,
	// month-to-date, previous-day or previous-n-days:N (1 to 366); empty
	// for a request without a period.
	Period string `json:"period,omitempty"`
	// Request is the template of the requests it makes.
	Request ScheduledRequest `json:"request"`
}

// ScheduledRequest is a schedule's request template: a Request without
// its id (derived from the schedule and the period) and, when the
// schedule has a period, without periodStartDate and periodEndDate (set
// from the period).
type ScheduledRequest struct {
	Kind    Kind              `json:"kind"`
	Params  Params            `json:"params"`
	Labels  map[string]string `json:"labels,omitempty"`
	Profile string            `json:"profile,omitempty"`
	Archive *bool             `json:"archive,omitempty"`
}

// Labels a schedule's requests carry, besides the template's own.
const (
	LabelSchedule = "schedule"
	LabelPeriod   = "period"
)

// SchemaIDSchedule is the $id of the schedule's JSON Schema
// (schema/schedule.schema.json).
const SchemaIDSchedule = "urn:billing-worker:schema:schedule:v1"

// Headers of a schedule's messages.
const (
	// HeaderSchedule is the NATS server's header of a scheduled message:
	// the cron expression (or "@at <time>" for a one-shot).
	HeaderSchedule = "Nats-Schedule"
	// HeaderScheduleTarget is the subject the server copies the message
	// to when it fires: <prefix>.internal.fires.<id>.
	HeaderScheduleTarget = "Nats-Schedule-Target"
	// HeaderScheduleTimeZone is the IANA zone the server reads the cron
	// expression in.
	HeaderScheduleTimeZone = "Nats-Schedule-Time-Zone"
	// HeaderScheduleAction marks the one-shot message that stops a
	// recurring schedule (value ScheduleActionStop); its fire is ignored.
	HeaderScheduleAction = "Billing-Schedule-Action"
	// ScheduleActionStop is the value of HeaderScheduleAction that stops
	// a schedule.
	ScheduleActionStop = "stop"
)

// ScheduleSubject is the subject holding schedule id's repeating
// scheduled message: <prefix>.internal.cron.<id>. It is outside
// <prefix>.internal.schedules.>, the one-shot wake-ups.
func (s Layout) ScheduleSubject(id string) string { return s.Prefix + ".internal.cron." + IDToken(id) }

// ScheduleSubjects is the filter of every schedule's subject.
func (s Layout) ScheduleSubjects() string { return s.Prefix + ".internal.cron.*" }

// ScheduleFire is the subject schedule id's fires are delivered to:
// <prefix>.internal.fires.<id>.
func (s Layout) ScheduleFire(id string) string { return s.Prefix + ".internal.fires." + IDToken(id) }

// ScheduleFires is the filter of every schedule's fires.
func (s Layout) ScheduleFires() string { return s.Prefix + ".internal.fires.*" }

// FireToken stands in a dead letter's subject for the kind of a
// recurring schedule's fire the worker failed to handle max-deliver
// times: <prefix>.deadletter.~fire.<seq>. '~' is outside the kinds.
const FireToken = "~fire"

// FireDeadLetter is the subject a fire that kept failing is kept on:
// <prefix>.deadletter.~fire.<seq>, seq being its sequence in the work
// stream.
func (s Layout) FireDeadLetter(seq uint64) string {
	return s.Prefix + ".deadletter." + FireToken + "." + strconv.FormatUint(seq, 10)
}

// IsScheduleFire reports whether subject is a schedule's fire
// (<prefix>.internal.fires.<id>).
func (s Layout) IsScheduleFire(subject string) bool {
	return strings.HasPrefix(subject, s.Prefix+".internal.fires.")
}

// ScheduleBucket is the key-value bucket of schedules (definition,
// paused, the periods covered), keyed by schedule id: <prefix>_schedules.
func (s Layout) ScheduleBucket() string { return s.Prefix + "_schedules" }
