package throttle

import (
	"math"
	"time"
)

// The estimate without remaining-budget headers: from the spacing of
// throttled answers, put to the test before it is kept.
//
// Azure throttles a scope when its bucket is empty, so each throttled
// answer that pauses the scope marks an empty bucket; between two of them
// every call Azure answered came from its refill. The answers counted at
// each such moment, over every replica, therefore grow at Azure's refill
// rate while calls keep coming, and the least-squares slope of those
// counts (the fit of learn.go) is the rate.
//
// A throttled answer can also be about one operation alone (a poll Azure
// asks to slow down while the scope has budget to spare). Those come at
// a share of the calls, whatever their rate, and the slope of the answers
// between them is only the pace the calls went at, each pause included:
// taken as the budget it would fall with every round. So a lower estimate
// (a little below the fit) is a trial: for trialSpan the calls go at it,
// and unless the throttled answers all but stop (at most trialRefused,
// and a share below trialKeep of what it was), they were not the
// budget's: the estimate goes back to what it was, and for notBudgetFor
// they teach nothing. Below Azure's budget a budget's throttled answers
// stop.
//
// With no throttled answer for quietRaise while calls wait, the estimate
// rises by quietRaiseFactor, up to the ceiling: a budget Azure raised is
// found again. A throttled answer before the next rise takes it back: the
// cost is one throttled answer each quietRaise or so, under a budget that
// did not change.

// spacings fits the throttled answers: a pause lasts a second or more,
// so they come a second or two apart at most.
var spacings = fitting{window: 20 * time.Second, span: 4 * time.Second, samples: 4}

// Trial is a lowered estimate under test (Learned.Trial).
type Trial struct {
	// At is when it begins (the end of the pause that started it);
	// Answered and Refused the estimate's counts then.
	At       time.Time `json:"at"`
	Answered int64     `json:"answered"`
	Refused  int64     `json:"refused"`
	// Share is the throttled answers that paused the scope, per answer,
	// over the fit that lowered the estimate (those that came while it
	// was paused already, calls in flight, are left out: a burst of them
	// at a pause would make any later share look low).
	Share float64 `json:"share"`
	// Rate and Burst are the estimate before, restored when the trial
	// fails.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

const (
	// trialSpan is how long a lowered estimate is tried at least, and
	// trialAnswers the answers it needs (trialMax: or that long).
	trialSpan    = 5 * time.Second
	trialAnswers = 10
	trialMax     = 30 * time.Second
	// trialMargin: the estimate tried is this share of the fit, so that
	// under a real budget the throttled answers stop rather than go on at
	// its edge.
	trialMargin = 0.9
	// trialKeep: the share of throttled answers during the trial, against
	// the share before, under which the lower estimate is kept, if no
	// more than trialRefused of them paused the scope meanwhile (at nine
	// tenths of a real budget none does).
	trialKeep    = 0.5
	trialRefused = 1
	// fitAnswers: a fit over fewer answers is no evidence (a scope's
	// first seconds, a lull of work).
	fitAnswers = 10
	// notBudgetFor: after a failed trial, throttled answers teach nothing
	// for this long.
	notBudgetFor = time.Minute
	// quietRaise and quietRaiseFactor: the rise of an estimate below the
	// ceiling after that long without a throttled answer, calls waiting.
	quietRaise       = 20 * time.Second
	quietRaiseFactor = 1.25
	// spacingFloor is the lowest estimate from the spacing, as a share of
	// the ceiling's rate.
	spacingFloor = 0.05
)

// Throttle takes in a throttled answer at now that paused the scope for
// pause (0: it was paused already, the call was in flight when the pause
// began, which says nothing new). With the headers the reports teach the
// budget, and a throttled answer changes nothing but its report. Without
// them (source LearnedFromThrottled) its moment and the answers counted by
// then are a sample of the fit; a fit below the estimate starts a trial
// of it. It reports whether the estimate changed.
func (l *Learned) Throttle(ceiling Limit, pause time.Duration, now time.Time) bool {
	if pause <= 0 {
		return false
	}
	changed := false
	if l.Source == "" {
		l.Source, l.At, changed = LearnedFromThrottled, now, true
	}
	l.Throttled = now
	if l.Source != LearnedFromThrottled {
		return changed
	}
	l.Refused++
	if l.Trial != nil || now.Before(l.NotBudgetUntil) {
		return changed
	}
	if l.RaisedFrom > 0 {
		// Throttled after a rise: the budget was not larger; back to the
		// estimate before it (and up again after quietRaise).
		l.Rate, l.RaisedFrom, l.At = l.RaisedFrom, 0, now
		l.Burst = min(l.Burst, spacingBurst(l.Rate))
		l.Samples = nil
		return true
	}
	l.add(Sample{At: now, Granted: l.Answered, Refused: l.Refused}, spacings)
	r, ok := fitRate(l.Samples, spacings)
	if !ok {
		return changed
	}
	first, last := l.Samples[0], l.Samples[len(l.Samples)-1]
	answered, refused := last.Granted-first.Granted, last.Refused-first.Refused
	r = math.Max(r*trialMargin, spacingFloor*perSecond(ceiling.Rate))
	if answered < fitAnswers || r >= 0.95*l.Rate {
		return changed
	}
	l.Trial = &Trial{At: now.Add(pause), Answered: l.Answered, Refused: l.Refused,
		Share: float64(refused) / float64(answered+refused), Rate: l.Rate, Burst: l.Burst}
	l.Rate = r
	l.Burst = min(l.Burst, spacingBurst(r))
	l.Samples, l.At = nil, now
	return true
}

// Answer takes in an answer without a remaining-budget header (throttled
// or not) at now, in a scope whose estimate comes from throttled answers:
// it counts, ends a trial whose time is up, and raises an estimate that
// had no throttled answer for quietRaise while calls waited (demand). It
// reports whether the estimate's rate or burst changed.
func (l *Learned) Answer(ceiling Limit, throttled, demand bool, now time.Time) bool {
	if l.Source != LearnedFromThrottled {
		return false
	}
	if !throttled {
		l.Answered++
	}
	if t := l.Trial; t != nil {
		if now.Before(t.At) {
			// Before the pause ends: the answers of calls sent before
			// the trial (this 429 among them) do not count for it.
			t.Answered, t.Refused = l.Answered, l.Refused
			return false
		}
		answered, refused := l.Answered-t.Answered, l.Refused-t.Refused
		if now.Sub(t.At) < trialSpan || answered+refused < trialAnswers && now.Sub(t.At) < trialMax {
			return false
		}
		l.Trial, l.Raised = nil, now
		share := 1.0 // no answer at all: nothing shows the lower rate helped
		if answered+refused > 0 {
			share = float64(refused) / float64(answered+refused)
		}
		if refused <= trialRefused && share < trialKeep*t.Share {
			return false // the budget's: kept
		}
		l.Rate, l.Burst = t.Rate, t.Burst
		l.NotBudgetUntil, l.At = now.Add(notBudgetFor), now
		return true
	}
	ceil := perSecond(ceiling.Rate)
	if !demand || l.Rate >= ceil || now.Sub(maxTime(l.Throttled, l.Raised)) < quietRaise {
		return false
	}
	l.RaisedFrom = l.Rate
	l.Rate = math.Min(ceil, l.Rate*quietRaiseFactor)
	l.Burst = min(ceiling.Burst, max(l.Burst, spacingBurst(l.Rate)))
	l.Raised, l.At = now, now
	return true
}

// spacingBurst is the bucket size taken for a rate learned from the
// spacing: the rate's calls over guessRefill (the spacing says nothing of
// the bucket; a smaller one than Azure's costs only bursts).
func spacingBurst(rate float64) int {
	return max(1, int(math.Ceil(rate*guessRefill.Seconds())))
}
