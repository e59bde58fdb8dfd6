package throttle

import (
	"math"
	"sort"
	"time"
)

// This file is the estimator: from what Azure answers, the budget it
// actually grants a scope (refill rate and bucket size), never above the
// configured limit (the ceiling). It is pure: reports and the clock in, the
// estimate out. docs/throttle.md, "How it learns", explains it for
// operators.
//
// Azure's remaining-budget header after a call says how many calls its
// bucket still holds. Adding to it the calls Azure let through so far gives
// the tokens Azure has granted since the scope's first call: its burst plus
// its refill. While its bucket is not full, that sum grows at Azure's
// refill rate exactly, so the rate is the slope of the sum over time, read
// by least squares over the last few seconds of reports (several replicas'
// reports, in any order and with the noise of calls still in flight, fit
// one line). A report of a full bucket (the refill was lost meanwhile)
// starts the fit again; the bucket size is the largest remaining budget
// reported plus the call that read it. Without the header the estimate
// comes from the spacing of throttled answers (spacing.go).

// Source values of Learned.
const (
	// LearnedFromRemaining: the estimate comes from remaining-budget
	// headers.
	LearnedFromRemaining = "remaining"
	// LearnedFromThrottled: no header seen; the estimate comes from the
	// spacing of throttled answers (spacing.go).
	LearnedFromThrottled = "throttled"
)

// fitting says which samples a fit takes: those of the last window, at
// least samples of them over span (fewer: the estimate keeps its value).
type fitting struct {
	window, span time.Duration
	samples      int
}

// reports fits the remaining-budget reports: a window long enough to
// average the noise of calls in flight, short enough to follow a change
// of Azure's budget within seconds.
var reports = fitting{window: 6 * time.Second, span: 2 * time.Second, samples: 5}

const (
	// maxSamples bounds the entry's size; sampleEvery spaces the samples
	// kept (a closer report replaces the last one).
	maxSamples  = 32
	sampleEvery = 100 * time.Millisecond
	// raiseEvery and raiseFactor: while Azure reports a full bucket and
	// calls wait for the estimate's (and go at its rate), the estimate
	// rises by half each second (up to the ceiling): Azure has budget the
	// estimate does not use, and a full bucket hides how much.
	raiseEvery  = time.Second
	raiseFactor = 1.5
	// raiseUse: the share of the estimate's rate the calls must have
	// used while Azure reported a full bucket for the estimate to rise.
	raiseUse = 0.8
	// minRate is the lowest rate the estimate goes down to.
	minRate = 0.01
	// guessRefill: until the reports allow a fit, the bucket is taken to
	// refill in this time (faster than any of Azure's documented budgets,
	// which refill in 10 to 20 s: the ceiling then decides).
	guessRefill = 2 * time.Second
	// probeRate bounds the rate before a scope's first answer.
	probeRate = 10.0
)

// Learned is a scope's estimate of the budget Azure grants, kept in its
// entry (field "learned").
type Learned struct {
	// Rate is the refill in calls per second, Burst the bucket's size,
	// both at most the ceiling's.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// Source says what the estimate comes from (LearnedFromRemaining,
	// LearnedFromThrottled).
	Source string `json:"source"`
	// At is the estimate's last change.
	At time.Time `json:"at"`
	// Answered counts the answers reported that Azure charged (not
	// throttled), over every replica.
	Answered int64 `json:"answered"`
	// Samples are the recent reports fitted: when, and the tokens Azure
	// had granted by then (remaining + answered).
	Samples []Sample `json:"samples,omitempty"`
	// Raised is when the estimate was last raised for a bucket Azure
	// reported full while calls waited (or when that began); without
	// headers, when its quiet time last began (a rise, a trial's end).
	// RaisedAnswered is Answered then.
	Raised         time.Time `json:"raised,omitzero"`
	RaisedAnswered int64     `json:"raisedAnswered,omitempty"`
	// Fitted: the rate came from a fit of the reports at least once;
	// Guessed: it was guessed from the first report's bucket size.
	Fitted  bool `json:"fitted,omitempty"`
	Guessed bool `json:"guessed,omitempty"`
	// Throttled is when the last throttled answer came.
	Throttled time.Time `json:"throttled,omitzero"`
	// Without headers (spacing.go): Refused counts the throttled answers
	// that paused the scope, Trial is a lowered estimate on trial, until
	// NotBudgetUntil the throttled answers are taken as not the budget's,
	// and RaisedFrom is the estimate before its last rise after quiet
	// seconds, until a throttled answer takes it back or the next rise.
	Refused        int64     `json:"refused,omitempty"`
	Trial          *Trial    `json:"trial,omitempty"`
	NotBudgetUntil time.Time `json:"notBudgetUntil,omitzero"`
	RaisedFrom     float64   `json:"raisedFrom,omitempty"`
}

// Sample is one report fitted: at At, Azure had granted Granted tokens
// (without headers: answered Granted calls and refused Refused).
type Sample struct {
	At      time.Time `json:"t"`
	Granted int64     `json:"g"`
	Refused int64     `json:"r,omitempty"`
}

// perSecond is the rate of l in calls per second.
func perSecond(r Rate) float64 {
	if r.Per <= 0 {
		return 0
	}
	return r.Calls / r.Per.Seconds()
}

// NewLearned is the estimate before any answer: the ceiling.
func NewLearned(ceiling Limit, now time.Time) *Learned {
	return &Learned{Rate: perSecond(ceiling.Rate), Burst: ceiling.Burst, At: now}
}

// Limit is the limit the estimate enforces under ceiling: the smaller
// of each.
func (l *Learned) Limit(ceiling Limit) Limit {
	out := ceiling
	if l == nil {
		return out
	}
	if l.Rate > 0 && l.Rate < perSecond(ceiling.Rate) {
		out.Rate = Rate{Calls: l.Rate, Per: time.Second}
	}
	if l.Burst > 0 && l.Burst < ceiling.Burst {
		out.Burst = l.Burst
	}
	return out
}

// Report takes in a remaining budget Azure reported at now: value calls
// left after a call that was throttled or not. demand says whether calls
// wait for the scope's bucket (it is not full). It reports whether the
// estimate's rate or burst changed.
func (l *Learned) Report(ceiling Limit, value int64, throttled, demand bool, now time.Time) bool {
	rate, burst := l.Rate, l.Burst
	if l.Source != LearnedFromRemaining {
		// The first report: the headers are there.
		l.Source, l.Burst = LearnedFromRemaining, 1
		l.Samples = nil
	}
	if !throttled {
		l.Answered++
	}
	value = max(value, 0)
	if b := int(min(value+1, int64(ceiling.Burst))); b > l.Burst {
		l.Burst = b
	}
	s := Sample{At: now, Granted: value + l.Answered}
	// Azure's bucket is full: the refill before now was lost, and the
	// fit starts again here. A drop of the tokens granted beyond the
	// noise of calls in flight is Azure lowering its budget: the fit
	// starts again too.
	full := value+1 >= int64(l.Burst)
	dropped := len(l.Samples) > 0 && s.Granted < l.Samples[len(l.Samples)-1].Granted-max(3, int64(l.Burst)/4)
	// plenty: Azure's bucket is full while calls wait for the estimate's:
	// the calls may be slower than Azure's budget, and the full bucket
	// hides by how much. A bucket that is only fuller than usual (Azure
	// refilled it during a lull) is not plenty: while calls go at the
	// estimate its level stays where it is, and the fit reads the rate.
	plenty := demand && full
	if full || dropped {
		l.Samples = []Sample{s}
	} else {
		l.add(s, reports)
	}
	next, kept := l.Rate, l.Rate
	if r, ok := fitRate(l.Samples, reports); ok {
		next, l.Fitted = r, true
	} else if !l.Fitted && !l.Guessed {
		// The first report, no fit yet: assume the bucket refills in
		// guessRefill (raised from there while Azure has plenty left).
		// The ceiling the estimate started at is no rate to keep.
		next, l.Guessed = float64(l.Burst)/guessRefill.Seconds(), true
		kept = next
	}
	switch {
	case !plenty:
		l.Raised, l.RaisedAnswered = time.Time{}, 0
	case l.Raised.IsZero():
		// Plenty since now: raised if it lasts (a burst's first answers
		// report plenty too).
		l.Raised, l.RaisedAnswered = now, l.Answered
		next = math.Max(next, kept)
	case now.Sub(l.Raised) >= raiseEvery:
		// Raised only if the calls went at the estimate's rate meanwhile:
		// a bucket Azure refilled during a gap of the calls (the bucket
		// slowed for calls in flight, a lull of work) says nothing of a
		// budget larger than the estimate.
		if sent := float64(l.Answered - l.RaisedAnswered); sent >= raiseUse*kept*now.Sub(l.Raised).Seconds() {
			next = math.Max(next, kept*raiseFactor)
		} else {
			next = math.Max(next, kept)
		}
		l.Raised, l.RaisedAnswered = now, l.Answered
	default:
		next = math.Max(next, kept)
	}
	l.Rate = math.Max(minRate, math.Min(perSecond(ceiling.Rate), next))
	if l.Rate != rate || l.Burst != burst {
		l.At = now
		return true
	}
	return false
}

// add puts s among the samples in time order (reports of several replicas
// come in any order), dropping those older than the window.
func (l *Learned) add(s Sample, f fitting) {
	i := sort.Search(len(l.Samples), func(i int) bool { return l.Samples[i].At.After(s.At) })
	if i > 0 && s.At.Sub(l.Samples[i-1].At) < sampleEvery && i == len(l.Samples) && len(l.Samples) > 1 {
		// Close to the last: replace it, keep the spacing.
		l.Samples[i-1] = s
	} else {
		l.Samples = append(l.Samples, Sample{})
		copy(l.Samples[i+1:], l.Samples[i:])
		l.Samples[i] = s
	}
	newest := l.Samples[len(l.Samples)-1].At
	drop := 0
	for drop < len(l.Samples)-1 && newest.Sub(l.Samples[drop].At) > f.window {
		drop++
	}
	if n := len(l.Samples) - drop; n > maxSamples {
		drop += n - maxSamples
	}
	l.Samples = append(l.Samples[:0], l.Samples[drop:]...)
}

// fitRate is the least-squares slope of granted over time, in tokens per
// second; ok is false with too few samples or too short a span.
func fitRate(ss []Sample, f fitting) (float64, bool) {
	if len(ss) < f.samples || ss[len(ss)-1].At.Sub(ss[0].At) < f.span {
		return 0, false
	}
	t0 := ss[0].At
	var n, st, sg, stt, stg float64
	for _, s := range ss {
		t, g := s.At.Sub(t0).Seconds(), float64(s.Granted)
		n++
		st += t
		sg += g
		stt += t * t
		stg += t * g
	}
	den := n*stt - st*st
	if den <= 0 {
		return 0, false
	}
	return (n*stg - st*sg) / den, true
}
