package poll

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidPolicy is wrapped by every problem [Policy.Validate] reports.
var ErrInvalidPolicy = errors.New("poll: invalid policy")

// Policy holds the knobs of [Policy.Next]. The zero value is not usable: start
// from [DefaultPolicy] and override fields, then call [Policy.Validate].
type Policy struct {
	// MinWait is the floor for every wait, server hints included: a
	// "Retry-After: 0" waits MinWait. Zero disables the floor. Default 1s.
	MinWait time.Duration
	// MaxWait is the ceiling for a server hint; a longer hint is lowered to
	// it. Default 15m.
	MaxWait time.Duration
	// DefaultPollWait is the wait after a 202 that carries no hint.
	// Default 15s.
	DefaultPollWait time.Duration
	// InitialBackoff is the backoff after the first throttled or transient
	// failure without a hint. Default 1s.
	InitialBackoff time.Duration
	// MaxBackoff caps the backoff interval before jitter (as MaxInterval does
	// in backoff.ExponentialBackOff), so a jittered wait may reach
	// MaxBackoff*(1+Jitter). Default 2m.
	MaxBackoff time.Duration
	// Multiplier grows the backoff interval after each failure. Default 2.
	Multiplier float64
	// Jitter is the randomization factor: a backoff interval d becomes a
	// wait in [d*(1-Jitter), d*(1+Jitter)). Default 0.5.
	Jitter float64
}

// DefaultPolicy returns the defaults documented on [Policy].
func DefaultPolicy() Policy {
	return Policy{
		MinWait:         time.Second,
		MaxWait:         15 * time.Minute,
		DefaultPollWait: 15 * time.Second,
		InitialBackoff:  time.Second,
		MaxBackoff:      2 * time.Minute,
		Multiplier:      2,
		Jitter:          0.5,
	}
}

// Validate reports every problem with p, joined with [errors.Join]; each one
// wraps [ErrInvalidPolicy]. It returns nil for a usable policy.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...))
	}
	if p.MinWait < 0 {
		bad("MinWait %v is negative", p.MinWait)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"MaxWait", p.MaxWait},
		{"DefaultPollWait", p.DefaultPollWait},
		{"InitialBackoff", p.InitialBackoff},
		{"MaxBackoff", p.MaxBackoff},
	} {
		if f.d <= 0 {
			bad("%s %v is not positive", f.name, f.d)
		}
	}
	if p.MinWait > p.MaxWait {
		bad("MinWait %v exceeds MaxWait %v", p.MinWait, p.MaxWait)
	}
	if p.InitialBackoff > p.MaxBackoff {
		bad("InitialBackoff %v exceeds MaxBackoff %v", p.InitialBackoff, p.MaxBackoff)
	}
	// Written as negations so that NaN fails too.
	if !(p.Multiplier >= 1) || math.IsInf(p.Multiplier, 1) {
		bad("Multiplier %v is not a finite number >= 1", p.Multiplier)
	}
	if !(p.Jitter >= 0 && p.Jitter < 1) {
		bad("Jitter %v is outside [0, 1)", p.Jitter)
	}
	return errors.Join(errs...)
}
