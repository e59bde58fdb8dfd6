package schedule

import (
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// Record is what the schedules bucket keeps per schedule: the definition,
// whether it is paused, and how far it got. The tools write the first two,
// the worker the rest, each with a compare-and-set.
type Record struct {
	Schedule messages.Schedule `json:"schedule"`
	Paused   bool              `json:"paused,omitempty"`
	// Created and Updated are when the definition was written first and
	// last; a schedule covers the fires after Created.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// LastFire is the latest fire covered (its time as the cron says; for
	// @every, when it arrived).
	LastFire time.Time `json:"lastFire,omitzero"`
	// Covered lists the latest periods started, newest last (at most
	// KeepCovered).
	Covered []Covered `json:"covered,omitempty"`
}

// Covered is one period a schedule started.
type Covered struct {
	Period
	RequestID string    `json:"requestId"`
	Started   time.Time `json:"started"`
	// How says what started it: fire, catch-up, run or backfill.
	How string `json:"how"`
}

// How a period was started.
const (
	ByFire     = "fire"
	ByCatchUp  = "catch-up"
	ByRun      = "run"
	ByBackfill = "backfill"
)

// KeepCovered bounds Record.Covered.
const KeepCovered = 36

// Has reports whether period key is among the periods covered.
func (r *Record) Has(key string) bool {
	for _, c := range r.Covered {
		if c.Key == key {
			return true
		}
	}
	return false
}

// Cover records period p as started at now, by how.
func (r *Record) Cover(c Compiled, p Period, how string, now time.Time) {
	if r.Has(p.Key) {
		return
	}
	r.Covered = append(r.Covered, Covered{Period: p, RequestID: RequestID(c.ID, p), Started: now, How: how})
	if n := len(r.Covered); n > KeepCovered {
		r.Covered = r.Covered[n-KeepCovered:]
	}
}

// Start is one request a fire starts.
type Start struct {
	Period  Period
	Request messages.Request
	How     string
}

// Plan is what a fire does: the requests to start (oldest period first),
// the record to store once they are published, and the missed fires left
// out beyond the catch-up limit.
type Plan struct {
	Starts  []Start
	Next    Record
	Skipped int
}

// Fire decides what a fire that the server stored at at starts: the
// periods of every fire the cron made since the last one covered (the
// server fires once after downtime and skips the rest), at most
// 1+maxCatchUp of them, the latest, each once (a period already covered is
// not started again). A paused schedule starts nothing. c is the
// compiled r.Schedule.
func Fire(c Compiled, r Record, at time.Time, maxCatchUp int) Plan {
	next := r
	next.Covered = append([]Covered(nil), r.Covered...)
	if r.Paused {
		return Plan{Next: next}
	}
	from := r.LastFire
	if from.IsZero() || from.Before(r.Created) {
		from = r.Created
	}
	var fires []time.Time
	var skipped int
	if every := c.Cron.Every(); every > 0 {
		// The server counts @every from the time it stored the last fire,
		// so fires drift: count the intervals that passed, rounded.
		n := int((at.Sub(from) + every/2) / every)
		if r.LastFire.IsZero() {
			n = max(n, 1)
		}
		if n <= 0 {
			return Plan{Next: next}
		}
		skipped = max(n-1-maxCatchUp, 0)
		for k := n - skipped - 1; k >= 0; k-- {
			fires = append(fires, at.Add(-time.Duration(k)*every))
		}
		next.LastFire = at
	} else {
		fires, skipped = c.Cron.Fires(from, at, c.Location, 1+maxCatchUp)
		if len(fires) == 0 {
			return Plan{Next: next}
		}
		next.LastFire = fires[len(fires)-1]
	}
	plan := Plan{Skipped: skipped}
	latest := c.Relative.Resolve(fires[len(fires)-1], c.Location).Key
	for _, f := range fires {
		p := c.Relative.Resolve(f, c.Location)
		if next.Has(p.Key) {
			continue
		}
		how := ByCatchUp
		if p.Key == latest {
			how = ByFire
		}
		next.Cover(c, p, how, at)
		plan.Starts = append(plan.Starts, Start{Period: p, Request: c.Request(p), How: how})
	}
	plan.Next = next
	return plan
}
