package poll

import (
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Reason says why the operation is waiting.
type Reason string

// The reasons an operation waits. Any other value is treated as
// [ReasonTransient].
const (
	ReasonInProgress Reason = "in_progress" // 202: the operation is running
	ReasonThrottled  Reason = "throttled"   // 429, or 503 with a throttle/Retry-After hint
	ReasonTransient  Reason = "transient"   // 5xx, network error, timeout, malformed answer: retry with backoff
)

// Values of [Decision.Source] when no server hint was honoured.
const (
	SourceBackoff = "backoff" // exponential backoff after a failure
	SourceDefault = "default" // Policy.DefaultPollWait after a 202
)

// maxExponent bounds the number of backoff steps, so a huge Failures count
// costs bounded work. Any sane Multiplier reaches MaxBackoff long before.
const maxExponent = 1024

// Input is what a decision is made from.
type Input struct {
	Now      time.Time
	Deadline time.Time // the operation's deadline; zero means none
	Reason   Reason
	Header   http.Header // the response headers; nil after a network error
	// Failures counts consecutive failed attempts (throttled or transient),
	// this one included. Values below 1 count as 1. Ignored for
	// ReasonInProgress.
	Failures int
	// Rand returns numbers in [0, 1) for jitter; nil means math/rand/v2.
	Rand func() float64
}

// Decision is what to do next.
type Decision struct {
	// GiveUp is true when the deadline is reached or cannot be met: end the
	// operation with a timeout.
	GiveUp bool
	At     time.Time     // when to act next; zero when GiveUp
	Wait   time.Duration // At - Now; zero when GiveUp
	// Source is the header of the hint honoured (also set when GiveUp is
	// caused by a hint past the deadline), SourceBackoff or SourceDefault.
	Source string
	// Clamped is true when the hint was raised to MinWait or lowered to
	// MaxWait.
	Clamped bool
}

// Next decides when to act again on an operation.
//
// A valid server hint (see [HintFrom]) wins for every reason, clamped into
// [MinWait, MaxWait]. Without one, a running operation waits DefaultPollWait
// and a failed attempt backs off exponentially with jitter, floored at
// MinWait. A wait that overshoots the deadline is cut to end at the deadline
// for one last attempt, except when it is a server hint that was not lowered:
// the server said "not before" a time past the deadline, so Next gives up.
func (p Policy) Next(in Input) Decision {
	hasDeadline := !in.Deadline.IsZero()
	if hasDeadline && !in.Now.Before(in.Deadline) {
		return Decision{GiveUp: true}
	}

	var (
		wait    time.Duration
		source  string
		hinted  bool // the wait is a server hint
		lowered bool // the hint was lowered to MaxWait
		clamped bool
	)
	if hint, ok := HintFrom(in.Header, in.Now); ok {
		wait, source, hinted = hint.Wait, hint.Source, true
		switch {
		case wait > p.MaxWait:
			wait, lowered, clamped = p.MaxWait, true, true
		case wait < p.MinWait:
			wait, clamped = p.MinWait, true
		}
	} else {
		if in.Reason == ReasonInProgress {
			wait, source = p.DefaultPollWait, SourceDefault
		} else {
			wait, source = p.backoff(in.Failures, in.Rand), SourceBackoff
		}
		wait = max(wait, p.MinWait)
	}

	if hasDeadline {
		// Sub saturates, so this comparison cannot overflow.
		if left := in.Deadline.Sub(in.Now); wait > left {
			if hinted && !lowered {
				return Decision{GiveUp: true, Source: source}
			}
			wait = left
		}
	}
	return Decision{At: in.Now.Add(wait), Wait: wait, Source: source, Clamped: clamped}
}

// backoff returns the jittered backoff for the failures-th consecutive
// failure: InitialBackoff * Multiplier^(failures-1), capped at MaxBackoff, then
// spread by Jitter.
//
// The interval comes from a fresh backoff.ExponentialBackOff with a zero
// RandomizationFactor, so the library itself is deterministic; the jitter is
// applied here with the caller's random source, which keeps tests exact.
func (p Policy) backoff(failures int, rnd func() float64) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.InitialBackoff,
		RandomizationFactor: 0,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.MaxBackoff,
		MaxElapsedTime:      0, // never return Stop
		Stop:                backoff.Stop,
		Clock:               zeroClock{}, // keep the library off the wall clock
	}
	b.Reset()
	var d time.Duration
	for range min(max(failures, 1), maxExponent) {
		next := b.NextBackOff()
		if next == d {
			break // a fixed point (the cap, or Multiplier 1): later steps repeat it
		}
		d = next
	}
	return jitter(d, p.Jitter, rnd)
}

// jitter spreads d uniformly over [d*(1-factor), d*(1+factor)) using rnd.
func jitter(d time.Duration, factor float64, rnd func() float64) time.Duration {
	if factor <= 0 || d <= 0 {
		return d
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	r := rnd()
	switch {
	case !(r >= 0): // negative or NaN from a faulty source
		r = 0
	case r > 1:
		r = 1
	}
	return fromFloat(float64(d) * (1 + factor*(2*r-1)))
}

// fromFloat converts nanoseconds to a Duration, saturating instead of
// overflowing.
func fromFloat(ns float64) time.Duration {
	switch {
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case !(ns > 0):
		return 0
	}
	return time.Duration(ns)
}

// zeroClock is a backoff.Clock that always returns the zero time. With
// MaxElapsedTime 0 the library only reads the clock to no effect.
type zeroClock struct{}

func (zeroClock) Now() time.Time { return time.Time{} }
