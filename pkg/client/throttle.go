package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// throttleEntryVersion is the version of the throttle bucket's entries
// this client reads.
const throttleEntryVersion = 1

// ThrottleScope is one scope of the worker's shared throttle (a credential
// profile and a class of Azure calls, "default.billing.writes"), as read
// from the throttle bucket: its pause, its budget and its counters over
// every replica.
type ThrottleScope struct {
	Scope string `json:"scope"`
	// Rate and Burst are the limit the last writer was configured with
	// ("10/1s"): the ceiling of what the throttle learns.
	Rate  string `json:"rate"`
	Burst int    `json:"burst"`
	// Learned is the budget the throttle learned Azure grants (nil before
	// the scope's first answer).
	Learned *ThrottleLearned `json:"learned,omitempty"`
	// InFlightAtPause counts the throttled answers to calls already on
	// their way when the scope's pause began.
	InFlightAtPause int64 `json:"inFlightAtPause,omitempty"`
	// ProbeAt is when the scope's first call (the probe of Azure's budget)
	// went; PauseSource "probe" marks the pause that holds the other calls
	// until its answer has come.
	ProbeAt time.Time `json:"probeAt,omitzero"`
	// PausedUntil is when the scope's pause ends (zero or past: none), and
	// PauseSource the header that set it ("retry-after").
	PausedUntil time.Time `json:"pausedUntil,omitzero"`
	PauseSource string    `json:"pauseSource,omitempty"`
	// Remaining is the budget Azure last reported for the scope.
	Remaining *ThrottleRemaining `json:"remaining,omitempty"`
	// Calls counts the calls let through, Deferred those given a slot in
	// the future, Throttled the 429 and 503 answers, Pauses the pauses set
	// or extended, PausedSeconds the time paused.
	Calls         int64     `json:"calls"`
	Deferred      int64     `json:"deferred"`
	Throttled     int64     `json:"throttled"`
	Pauses        int64     `json:"pauses"`
	PausedSeconds float64   `json:"pausedSeconds"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// Tokens is how many calls the scope's budget allowed at once when it
	// was read.
	Tokens float64 `json:"tokens"`
}

// ThrottleRemaining is a remaining-budget header Azure sent: its name, the
// smallest count it gave, and when it was read.
type ThrottleRemaining struct {
	Header string    `json:"header"`
	Value  int64     `json:"value"`
	At     time.Time `json:"at"`
}

// ThrottleLearned is the budget the shared throttle learned Azure grants a
// scope: its refill in calls per second and its size, each at most the
// configured one; Source says what it was learned from ("remaining": the
// remaining-budget headers; "throttled": no header seen, learned from the
// spacing of throttled answers; empty: nothing yet), At when it last
// changed.
type ThrottleLearned struct {
	Rate   float64   `json:"rate"`
	Burst  int       `json:"burst"`
	Source string    `json:"source"`
	At     time.Time `json:"at"`
}

// Enforced returns the limit the scope is paced to: the learned one, at
// most the configured one, in calls per second and at once. Before the
// scope's first answer: the configured rate, one at once.
func (s ThrottleScope) Enforced() (perSecond float64, burst int) {
	iv, ok := rateInterval(s.Rate)
	if !ok {
		return 0, 0
	}
	perSecond, burst = float64(time.Second)/float64(iv), 1
	if l := s.Learned; l != nil {
		burst = s.Burst
		if l.Rate > 0 && l.Rate < perSecond {
			perSecond = l.Rate
		}
		if l.Burst > 0 && l.Burst < burst {
			burst = l.Burst
		}
	}
	return perSecond, burst
}

// Paused reports whether the scope is paused at now.
func (s ThrottleScope) Paused(now time.Time) bool { return now.Before(s.PausedUntil) }

// throttleEntry is a scope's value in the throttle bucket.
type throttleEntry struct {
	Version int `json:"version"`
	ThrottleScope
	// TAT is the budget's theoretical arrival time: full when it is not
	// after now; each call moves it on by one interval of the rate.
	TAT time.Time `json:"tat"`
}

// tokens returns the calls the entry's budget allows at once at now (0
// when its rate does not read).
func (e *throttleEntry) tokens(now time.Time) float64 {
	rate, burst := e.Enforced()
	if rate <= 0 {
		return 0
	}
	iv := time.Duration(float64(time.Second) / rate)
	if !e.TAT.After(now) {
		return float64(burst)
	}
	free := time.Duration(burst)*iv - e.TAT.Sub(now)
	return math.Max(0, math.Min(float64(burst), float64(free)/float64(iv)))
}

// rateInterval reads a rate "<calls>/<period>" ("10/1s", "600/1h",
// "10/s") and returns the time one call takes of it.
func rateInterval(rate string) (time.Duration, bool) {
	n, per, ok := strings.Cut(strings.TrimSpace(rate), "/")
	if !ok {
		return 0, false
	}
	calls, err := strconv.ParseFloat(n, 64)
	if err != nil || !(calls > 0) {
		return 0, false
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d <= 0 {
		return 0, false
	}
	iv := time.Duration(float64(d) / calls)
	return iv, iv > 0
}

// Throttle lists the shared throttle's scopes, sorted by scope. None when
// no worker has set the throttle up. An entry of a version this client
// does not read is left out.
func (c *Client) Throttle(ctx context.Context) ([]ThrottleScope, error) {
	kv, err := c.js.KeyValue(ctx, c.l.ThrottleBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("throttle bucket %s: %w", c.l.ThrottleBucket(), err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read the throttle: %w", err)
	}
	defer func() { _ = w.Stop() }()
	now := time.Now()
	var out []ThrottleScope
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("read the throttle: the watcher stopped")
			}
			if e == nil { // every current value seen
				sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
				return out, nil
			}
			var ent throttleEntry
			if err := json.Unmarshal(e.Value(), &ent); err != nil || ent.Version != throttleEntryVersion {
				continue
			}
			s := ent.ThrottleScope
			s.Tokens = ent.tokens(now)
			out = append(out, s)
		}
	}
}
