package worker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// The defaults of Options: the one place they are written. The command's
// settings (internal/config) take theirs from here.
const (
	DefaultReplicas           = 1
	DefaultAckWait            = 60 * time.Second
	DefaultMaxAckPending      = 1000
	DefaultMaxDeliver         = 10
	DefaultDuplicateWindow    = 2 * time.Minute
	DefaultEventsMaxAge       = 7 * 24 * time.Hour
	DefaultStateTTL           = 7 * 24 * time.Hour
	DefaultDeadLetterMaxBytes = 1 << 30
	DefaultConcurrency        = 64
	DefaultMaxRequestBytes    = messages.MaxRequestBytes
	DefaultOperationDeadline  = time.Hour
	DefaultMaxDeadline        = 24 * time.Hour
	DefaultHTTPTimeout        = 30 * time.Second
	DefaultMaxBadAnswers      = 3
	DefaultMaxUnanswered      = 3
	DefaultDrainTimeout       = 45 * time.Second
	DefaultMaxDocuments       = 10000
	DefaultCollectionWindow   = 16
	DefaultCoverageGrace      = 5 * 24 * time.Hour
	DefaultEstateWindow       = 4
	// DefaultCollectionsInFlight is the global window: 64, the default
	// concurrency, four collections' windows. A single request is queued
	// behind at most that many children, and that many downloads keep
	// Azure's budget for the billing writes (see docs/throttle.md) busy
	// however many collections run.
	DefaultCollectionsInFlight = 64
	DefaultWakeOverdue         = 30 * time.Second
	DefaultScheduleCatchUp     = 13
	DefaultPollLead            = 300 * time.Millisecond
	DefaultPollHoldMax         = time.Second
)

// maxPollHold bounds poll-hold-max: a held wake-up is an unacknowledged
// message, and a hold is meant to cover the server's timer, not a wait.
const maxPollHold = 10 * time.Second

// Options configure a Worker. The zero value of every field means its
// default.
type Options struct {
	// Prefix is the first token of every subject and of the stream and
	// bucket names; defaults to messages.DefaultPrefix ("billing").
	Prefix string
	// Replicas of every stream and the bucket; defaults to
	// DefaultReplicas (3 on a NATS cluster).
	Replicas int
	// AckWait is the redelivery delay of an unacknowledged message; it
	// must exceed ClaimDuration. Defaults to DefaultAckWait.
	AckWait time.Duration
	// MaxAckPending bounds, per consumer, the messages handed out and not
	// acknowledged; defaults to DefaultMaxAckPending.
	MaxAckPending int
	// MaxDeliver deliveries of a message that keeps failing dead-letter
	// it; defaults to DefaultMaxDeliver.
	MaxDeliver int
	// DuplicateWindow is the Nats-Msg-Id de-duplication window of the work
	// and events streams; defaults to DefaultDuplicateWindow.
	DuplicateWindow time.Duration
	// EventsMaxAge is how long events are kept; defaults to
	// DefaultEventsMaxAge.
	EventsMaxAge time.Duration
	// StateTTL is how long an operation's state is kept after its last
	// change; defaults to DefaultStateTTL.
	StateTTL time.Duration
	// DeadLetterMaxBytes bounds the dead-letter stream (the oldest make
	// room); defaults to DefaultDeadLetterMaxBytes.
	DeadLetterMaxBytes int64
	// Concurrency is how many messages one worker handles at once;
	// defaults to DefaultConcurrency.
	Concurrency int
	// MaxRequestBytes is the largest request message, headers included;
	// the work stream refuses larger ones. Defaults to
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// DefaultDeadline is the deadline of an operation whose request sets
	// none; defaults to DefaultOperationDeadline. MaxDeadline caps a request's
	// deadline from its acceptance; defaults to DefaultMaxDeadline.
	DefaultDeadline, MaxDeadline time.Duration
	// HTTPTimeout bounds one Azure call, the token included (the clients
	// are built with it; the worker sizes its claims by it). Defaults to
	// DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	// MaxBadAnswers malformed success answers in a row end an operation
	// with bad_response; defaults to DefaultMaxBadAnswers.
	MaxBadAnswers int
	// MaxUnanswered first calls sent without an answer end an operation
	// with interrupted; defaults to DefaultMaxUnanswered.
	MaxUnanswered int
	// MaxDocuments bounds the documents of one collection: one that lists
	// more fails with too_many before any download; defaults to
	// DefaultMaxDocuments. CollectionWindow bounds a collection's children
	// in flight at once (the next one is requested when one ends); defaults
	// to DefaultCollectionWindow.
	MaxDocuments, CollectionWindow int
	// CoverageGrace is how long after a month ends every known scope's
	// coverage record of it should be complete (the coverage metric counts
	// the scopes whose is not); defaults to DefaultCoverageGrace.
	CoverageGrace time.Duration
	// EstateWindow bounds an estate's collections in flight at once;
	// defaults to DefaultEstateWindow.
	EstateWindow int
	// CollectionsInFlight bounds the children in flight of every
	// collection together, across replicas (the global window, handed out
	// fewest-held first); defaults to DefaultCollectionsInFlight.
	CollectionsInFlight int
	// DrainTimeout is how long in-flight work may take on shutdown;
	// defaults to DefaultDrainTimeout.
	DrainTimeout time.Duration
	// WakeOverdue bounds every wait: a wake-up the NATS server has not
	// fired this long after it fell due is scheduled again by the
	// watchdog, so an operation is woken (or times out at its deadline) at
	// most about this much late; defaults to DefaultWakeOverdue.
	WakeOverdue time.Duration
	// PollLead: every wake-up is scheduled this long before its poll is
	// due, to absorb the NATS server's scheduler (it fires up to one run of
	// its timer late); defaults to DefaultPollLead. PollHoldMax: a wake-up
	// that arrives at most this long before its poll is due is held in the
	// worker until due; an earlier one goes back to waiting. At least
	// PollLead, at most 10s; defaults to DefaultPollHoldMax.
	PollLead, PollHoldMax time.Duration
	// ScheduleCatchUp bounds the missed fires of a recurring schedule
	// that one fire also starts (the server fires once after downtime);
	// defaults to DefaultScheduleCatchUp (13: a year of months and the
	// current one, Azure's history for several document kinds).
	ScheduleCatchUp int
	// Policy decides the waits between calls; each zero field defaults to
	// poll.DefaultPolicy's.
	Policy poll.Policy
	// Throttle configures the shared throttle; the zero value is off
	// (cmd/worker turns it on by default).
	Throttle ThrottleOptions
	// Archive configures the archive of documents; the zero value
	// archives nothing.
	Archive ArchiveOptions
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	num := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Prefix == "" {
		o.Prefix = messages.DefaultPrefix
	}
	num(&o.Replicas, DefaultReplicas)
	def(&o.AckWait, DefaultAckWait)
	num(&o.MaxAckPending, DefaultMaxAckPending)
	num(&o.MaxDeliver, DefaultMaxDeliver)
	def(&o.DuplicateWindow, DefaultDuplicateWindow)
	def(&o.EventsMaxAge, DefaultEventsMaxAge)
	def(&o.StateTTL, DefaultStateTTL)
	if o.DeadLetterMaxBytes == 0 {
		o.DeadLetterMaxBytes = DefaultDeadLetterMaxBytes
	}
	num(&o.Concurrency, DefaultConcurrency)
	num(&o.MaxRequestBytes, DefaultMaxRequestBytes)
	def(&o.DefaultDeadline, DefaultOperationDeadline)
	def(&o.MaxDeadline, DefaultMaxDeadline)
	def(&o.HTTPTimeout, DefaultHTTPTimeout)
	num(&o.MaxBadAnswers, DefaultMaxBadAnswers)
	num(&o.MaxUnanswered, DefaultMaxUnanswered)
	num(&o.MaxDocuments, DefaultMaxDocuments)
	num(&o.CollectionWindow, DefaultCollectionWindow)
	def(&o.CoverageGrace, DefaultCoverageGrace)
	num(&o.EstateWindow, DefaultEstateWindow)
	num(&o.CollectionsInFlight, DefaultCollectionsInFlight)
	def(&o.DrainTimeout, DefaultDrainTimeout)
	def(&o.WakeOverdue, DefaultWakeOverdue)
	num(&o.ScheduleCatchUp, DefaultScheduleCatchUp)
	def(&o.PollLead, DefaultPollLead)
	def(&o.PollHoldMax, DefaultPollHoldMax)
	p := poll.DefaultPolicy()
	def(&o.Policy.MinWait, p.MinWait)
	def(&o.Policy.MaxWait, p.MaxWait)
	def(&o.Policy.DefaultPollWait, p.DefaultPollWait)
	def(&o.Policy.InitialBackoff, p.InitialBackoff)
	def(&o.Policy.MaxBackoff, p.MaxBackoff)
	if o.Policy.Multiplier == 0 {
		o.Policy.Multiplier = p.Multiplier
	}
	if o.Policy.Jitter == 0 {
		o.Policy.Jitter = p.Jitter
	}
	o.Archive = o.Archive.withDefaults(o.HTTPTimeout)
	return o
}

// Validate returns every problem of the options (after defaults).
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(!strings.ContainsAny(o.Prefix, ".*> \t"), "prefix %q must be one subject token", o.Prefix)
	check(o.Replicas >= 1 && o.Replicas <= 5, "replicas must be 1 to 5, not %d", o.Replicas)
	check(o.Concurrency >= 1, "concurrency must be at least 1")
	check(o.MaxAckPending >= o.Concurrency, "max-ack-pending (%d) must be at least concurrency (%d)", o.MaxAckPending, o.Concurrency)
	check(o.MaxDeliver >= 2, "max-deliver must be at least 2")
	check(o.MaxRequestBytes >= 1024 && o.MaxRequestBytes <= 1<<20, "max-request-bytes must be 1024 to 1048576 (NATS's own limit)")
	check(o.DeadLetterMaxBytes >= 1<<20, "deadletter-max-bytes must be at least 1048576")
	check(o.HTTPTimeout > 0, "http-timeout must be positive")
	check(o.AckWait > o.ClaimDuration(), "ack-wait (%s) must exceed a claim's duration (%s: http-timeout plus up to 10s)", o.AckWait, o.ClaimDuration())
	check(o.DefaultDeadline > 0 && o.MaxDeadline >= o.DefaultDeadline, "default-deadline must be positive and at most max-deadline")
	check(o.StateTTL > o.MaxDeadline, "state-ttl (%s) must exceed max-deadline (%s)", o.StateTTL, o.MaxDeadline)
	check(o.DuplicateWindow > 0 && o.EventsMaxAge >= o.DuplicateWindow, "duplicate-window must be positive and at most events-max-age")
	check(o.MaxBadAnswers >= 1, "max-bad-answers must be at least 1")
	check(o.MaxUnanswered >= 1, "max-unanswered-calls must be at least 1")
	check(o.MaxDocuments >= 1 && o.MaxDocuments <= 100000, "max-documents must be 1 to 100000")
	check(o.CollectionWindow >= 1, "collection-window must be at least 1")
	check(o.CoverageGrace > 0 && o.CoverageGrace <= 28*24*time.Hour, "coverage-grace must be positive and at most 28 days (672h)")
	check(o.EstateWindow >= 1, "estate-window must be at least 1")
	check(o.CollectionsInFlight >= 1 && o.CollectionsInFlight <= 100000, "collections-in-flight must be 1 to 100000")
	check(o.DrainTimeout > 0, "drain-timeout must be positive")
	check(o.WakeOverdue >= time.Second, "wake-overdue-after must be at least 1s")
	check(o.PollLead > 0 && o.PollLead <= o.PollHoldMax, "poll-lead (%s) must be positive and at most poll-hold-max (%s)", o.PollLead, o.PollHoldMax)
	check(o.PollHoldMax <= maxPollHold && o.PollHoldMax < o.AckWait, "poll-hold-max (%s) must be at most %s and less than ack-wait", o.PollHoldMax, maxPollHold)
	check(o.ScheduleCatchUp >= 1 && o.ScheduleCatchUp <= 1000, "schedule-catch-up must be 1 to 1000")
	for c, l := range o.Throttle.Limits {
		check(l.Rate.Calls > 0 && l.Rate.Per > 0 && l.Burst >= 1, "throttle limit of %s: rate and burst must be positive", c)
	}
	if err := o.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Archive.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// maxClaimMargin bounds the margin a claim adds to http-timeout.
const maxClaimMargin = 10 * time.Second

// ClaimDuration is how long a worker holds an operation for one Azure call:
// http-timeout plus a margin of as much again, at most maxClaimMargin. It
// must be shorter than ack-wait, so that a message redelivered because its
// worker died always finds that worker's claim expired.
func (o Options) ClaimDuration() time.Duration {
	t := o.HTTPTimeout
	if t == 0 {
		t = DefaultHTTPTimeout
	}
	return t + min(t, maxClaimMargin)
}
