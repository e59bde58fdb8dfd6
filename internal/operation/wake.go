package operation

import "time"

// The timing of a wake-up around the NATS server's scheduler. The server
// fires a scheduled message up to one run of its timer late (it runs at
// most every 250 ms, and a burst goes out at the stream's ingest rate), so
// a wake-up scheduled for the due time itself reaches the worker a few
// hundred milliseconds after Azure's Retry-After ended. Instead, the
// wake-up is scheduled Lead before the poll is due (FireAt), and a wake-up
// that arrives before its due time by at most HoldMax is held in the
// worker's memory until the due time (Arrived, and Resume's early rule):
// the only part of a wait that costs the worker anything is that last
// fraction of a second. One that arrives earlier than that goes back to
// waiting, as before.

// WakePolicy times the wake-ups. Its zero value schedules every wake-up
// for its due time and holds none.
type WakePolicy struct {
	// Lead: a wake-up is scheduled this long before the poll is due.
	Lead time.Duration
	// HoldMax bounds a hold: a wake-up that arrives at most this long
	// before its due time is held until then; an earlier one is not.
	HoldMax time.Duration
}

// HoldWake: keep the message (unsettled) in the worker until Step.Delay has
// passed, then handle it again; the delay is never more than
// WakePolicy.HoldMax.
const HoldWake Action = iota + 300

// FireAt is when the server is to fire the wake-up of a poll due at due:
// Lead before it.
func (m Machine) FireAt(due time.Time) time.Time { return due.Add(-m.Wake.Lead) }

// Arrived decides about a wake-up that arrives at now for a poll due at
// due (the time its body carries), before anything is loaded: one early by
// at most HoldMax is held until due (a HoldWake step, and true); any other
// (due, or too early to hold) is handled now, and the stored state decides
// (false).
func (m Machine) Arrived(due, now time.Time) (Step, bool) {
	return m.hold(due, now)
}

// hold is the HoldWake step for a wake-up due at due that arrives at now, when
// it is early by at most HoldMax.
func (m Machine) hold(due, now time.Time) (Step, bool) {
	early := due.Sub(now)
	if early <= 0 || early > m.Wake.HoldMax {
		return Step{}, false
	}
	return Step{Action: HoldWake, Delay: early}, true
}
