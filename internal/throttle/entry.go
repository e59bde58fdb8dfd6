package throttle

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// EntryVersion is the schema version of Entry.
const EntryVersion = 1

// Entry is the value of a scope's key in the throttle bucket, as JSON
// (docs/throttle.md documents it for operators). Replicas change it
// only by compare-and-set on the entry's revision.
type Entry struct {
	Version int   `json:"version"`
	Scope   Scope `json:"scope"`
	// Rate and Burst are the limit the last writer was configured with
	// ("10/1s"): the ceiling of the estimate, Learned.
	Rate  string `json:"rate"`
	Burst int    `json:"burst"`
	// TAT is the bucket's theoretical arrival time: the bucket is full when
	// it is not after now, and each call reserved moves it on by one
	// interval (Per/Calls). The next free slot is TAT - (Burst-1) intervals.
	TAT time.Time `json:"tat"`
	// PausedUntil is when the scope's pause ends (zero or past: none).
	// PauseSource is the header that set it, e.g. "retry-after".
	PausedUntil time.Time `json:"pausedUntil,omitzero"`
	PauseSource string    `json:"pauseSource,omitempty"`
	// Remaining is the budget Azure last reported for the scope.
	Remaining *Remaining `json:"remaining,omitempty"`
	// Counters, over every replica since the entry was created.
	Calls     int64 `json:"calls"`     // slots reserved (calls let through)
	Deferred  int64 `json:"deferred"`  // calls given a slot in the future
	Throttled int64 `json:"throttled"` // 429 and 503 answers received
	Pauses    int64 `json:"pauses"`    // pauses set or extended
	// PausedSeconds adds up the time the scope was paused for.
	PausedSeconds float64   `json:"pausedSeconds"`
	UpdatedAt     time.Time `json:"updatedAt"`
	// Learned is the estimate of the budget Azure grants (learn.go); nil
	// until the scope's first answer, or in an entry of older code.
	Learned *Learned `json:"learned,omitempty"`
	// InFlightAtPause counts the throttled answers to calls that were
	// already on their way when the scope's pause began.
	InFlightAtPause int64 `json:"inFlightAtPause,omitempty"`
	// ProbeAt is when the scope's first call (the probe) went, before any
	// answer.
	ProbeAt time.Time `json:"probeAt,omitzero"`
	// Lowered is when the estimate last went down without headers
	// (relimit): the slots taken before it, at the old rate, are given
	// back when they come, and their calls take slots at the new one.
	Lowered time.Time `json:"lowered,omitzero"`
}

// PauseProbe is the PauseSource of the pause that holds a scope's calls
// while its first call's answer is awaited.
const PauseProbe = "probe"

const (
	// probeWake: the calls asked for during the probe are woken this
	// long after, to ask again.
	probeWake = 500 * time.Millisecond
	// probePause: the probe's pause lasts this long after the last call
	// held by it (its wake-up, and the lateness of scheduled wake-ups).
	probePause = 2 * time.Second
	// probeTimeout: a probe without an answer after this long is given
	// up; the next call probes again.
	probeTimeout = 10 * time.Second
)

// Effective is the limit the entry enforces under the configured limit l:
// the estimate, at most l; before the scope's first answer, l's rate (at
// most 10 a second) with a burst of one: one call probes Azure's budget,
// the next ones follow slowly until its answer tells the budget.
func (e *Entry) Effective(l Limit) Limit {
	if e.Learned == nil {
		r := l.Rate
		if perSecond(r) > probeRate {
			r = Rate{Calls: probeRate, Per: time.Second}
		}
		return Limit{Rate: r, Burst: 1}
	}
	return e.Learned.Limit(l)
}

// learned returns the entry's estimate, started at the ceiling l. The
// first answer that starts it ends the probe (endProbe).
func (e *Entry) learned(l Limit, now time.Time) *Learned {
	if e.Learned == nil {
		e.Learned = NewLearned(l, now)
		e.endProbe(now)
	}
	return e.Learned
}

// endProbe ends the probe of the scope's budget: its pause, which only
// held the calls asked for while the probe's answer was awaited, ends at
// now, so that they go when they ask again, not when the pause would
// have run out.
func (e *Entry) endProbe(now time.Time) {
	e.ProbeAt = time.Time{}
	if e.PauseSource == PauseProbe && e.PausedUntil.After(now) {
		e.PausedUntil, e.PauseSource = now, ""
	}
}

// Unanswered records that a call of the scope got no answer from Azure
// (its token was refused, the connection failed, its deadline came
// first). Before the scope's first answer that call was the probe: the
// probe ends, and the next call probes at once rather than after
// probeTimeout. It reports whether the entry changed.
func (e *Entry) Unanswered(now time.Time) bool {
	if e.Learned != nil || e.ProbeAt.IsZero() {
		return false
	}
	e.endProbe(now)
	return true
}

// Unreported takes in an answer without a remaining-budget header at now,
// throttled or not. The scope's first answer starts the estimate (at the
// ceiling) and ends the probe; in a scope whose estimate comes from
// throttled answers it counts for the estimate (Learned.Answer). It
// reports whether the entry changed.
func (e *Entry) Unreported(l Limit, throttled bool, now time.Time) bool {
	if e.Learned == nil {
		e.learned(l, now)
		e.stamp(l, now)
		return true
	}
	if e.Learned.Source != LearnedFromThrottled {
		return false
	}
	demand := e.TAT.After(now)
	e.learn(l, now, func(est *Learned) bool { return est.Answer(l, throttled, demand, now) })
	e.stamp(l, now)
	return true
}

// learn applies f to the entry's estimate (started at the ceiling l if
// none yet) and, when f changed it, carries the bucket over to the new
// limit (relimit).
func (e *Entry) learn(l Limit, now time.Time, f func(*Learned) bool) {
	before := e.Effective(l)
	if f(e.learned(l, now)) {
		e.relimit(before, e.Effective(l), now)
	}
}

// relimit carries the bucket over from limit from to limit to. A bucket
// with calls to spare keeps them (at most the new burst). One whose slots
// are given out ahead: at a lower rate those slots are given back when
// they come (Lowered), so the bucket is empty from now (or the pause's
// end) at the new rate; at a higher one the slots given stay, and the
// next ones follow them at the new rate. So a smaller burst does not put
// the next slot further off, nor do the slots given at the old rate go
// on at it, nor are they counted twice.
func (e *Entry) relimit(from, to Limit, now time.Time) {
	ivFrom, ivTo := from.Rate.Interval(), to.Rate.Interval()
	if from == to || ivFrom <= 0 || ivTo <= 0 {
		return
	}
	if ivTo > ivFrom {
		e.Lowered = now
	}
	if !e.TAT.After(now) {
		return
	}
	tokens := float64(from.Burst) - float64(e.TAT.Sub(now))/float64(ivFrom)
	switch {
	case tokens >= 1:
		tokens = min(tokens, float64(to.Burst))
		e.TAT = now.Add(time.Duration((float64(to.Burst) - tokens) * float64(ivTo)))
	case ivTo > ivFrom:
		e.TAT = maxTime(now, e.PausedUntil).Add(time.Duration(to.Burst-1) * ivTo)
	default:
		next := e.TAT.Add(-time.Duration(from.Burst-1) * ivFrom)
		e.TAT = next.Add(time.Duration(to.Burst-1) * ivTo)
	}
}

// Remaining is a remaining-budget header Azure sent: its name, its value
// (the smallest count of the windows it names) and when it was read.
type Remaining struct {
	Header string    `json:"header"`
	Value  int64     `json:"value"`
	At     time.Time `json:"at"`
}

// Paused reports whether the scope is paused at now.
func (e *Entry) Paused(now time.Time) bool { return now.Before(e.PausedUntil) }

// Tokens returns the calls the bucket allows at once at now under the
// configured limit l (the estimate's, Effective).
func (e *Entry) Tokens(l Limit, now time.Time) float64 {
	l = e.Effective(l)
	iv := l.Rate.Interval()
	if iv <= 0 {
		return float64(l.Burst)
	}
	if !e.TAT.After(now) {
		return float64(l.Burst)
	}
	window := time.Duration(l.Burst) * iv
	free := window - e.TAT.Sub(now)
	return math.Max(0, math.Min(float64(l.Burst), float64(free)/float64(iv)))
}

// Reserve takes the earliest slot of the bucket for one call, at now or
// later (never within a pause), and returns it.
//
// Before the scope's first answer (no estimate yet) the first call is a
// probe: it goes, and the calls asked for while its answer is awaited get
// no slot of the bucket. They are woken probeWake later, inside a pause of
// the scope (source "probe") that outlasts their wake-ups, so that each
// asks again, under the budget the probe's answer taught. A probe whose
// answer never comes (its replica died) is given up after probeTimeout.
func (e *Entry) Reserve(l Limit, now time.Time) time.Time {
	e.stamp(l, now)
	if e.Learned == nil {
		switch {
		case e.ProbeAt.IsZero() || now.Sub(e.ProbeAt) >= probeTimeout:
			// This call is the probe. It goes at once: a slot later would
			// have it ask again, and find its own probe holding it.
			e.ProbeAt = now
			e.TAT = now.Add(e.Effective(l).Rate.Interval())
			e.Calls++
			return now
		default:
			e.Deferred++
			if until := now.Add(probePause); until.After(e.PausedUntil) {
				e.PausedUntil, e.PauseSource = until, PauseProbe
			}
			return now.Add(probeWake)
		}
	}
	l = e.Effective(l)
	iv := l.Rate.Interval()
	slot := now
	if s := e.TAT.Add(-time.Duration(l.Burst-1) * iv); s.After(slot) {
		slot = s
	}
	if e.PausedUntil.After(slot) {
		slot = e.PausedUntil
	}
	e.TAT = maxTime(e.TAT, slot).Add(iv)
	e.Calls++
	if slot.After(now) {
		e.Deferred++
	}
	return slot
}

// Pause pauses the scope until until (Azure's wait, source its header)
// and counts the throttled answer. When the pause ends the bucket is taken
// as empty: calls resume at the rate, not in a burst. It returns the time
// the pause was set or extended by (0: it was paused that long already).
//
// A throttled answer that comes while the scope is paused already was to a
// call on its way when the pause began: it is counted in InFlightAtPause.
// Otherwise the estimate takes it in (Learned.Throttle).
func (e *Entry) Pause(l Limit, until time.Time, source string, now time.Time) time.Duration {
	e.stamp(l, now)
	e.Throttled++
	if e.Learned == nil {
		e.endProbe(now) // the probe's pause is not Azure's
	}
	if e.Paused(now) {
		e.InFlightAtPause++
	}
	if !until.After(now) || !until.After(e.PausedUntil) {
		return 0
	}
	wasPaused := e.Paused(now)
	added := until.Sub(maxTime(now, e.PausedUntil))
	if !wasPaused {
		e.learn(l, now, func(est *Learned) bool { return est.Throttle(l, added, now) })
	}
	l = e.Effective(l)
	e.PausedSeconds += added.Seconds()
	e.PausedUntil, e.PauseSource = until, source
	e.Pauses++
	iv := l.Rate.Interval()
	e.TAT = maxTime(e.TAT, until.Add(time.Duration(l.Burst-1)*iv))
	return added
}

// Report records the remaining budget Azure reported at now for a call,
// and slows the bucket down when Azure has less left than the bucket
// allows. after is the number of calls the bucket let through after that
// call (in flight, or waiting for their slots): Azure had not counted them
// yet, so the bucket then holds no more than value - after calls (fewer
// than none: it owes the difference). It never speeds the bucket up (a
// report can be older than calls already let through). It reports whether
// the bucket changed.
//
// The report also feeds the estimate (Learned.Report); throttled says
// whether the reported call was throttled. The bucket keeps a reserve
// below what Azure reports (one call and a tenth of the burst), for calls
// that reach Azure closer together than their slots and for the noise of
// the estimate.
func (e *Entry) Report(l Limit, r Remaining, after int64, throttled bool, now time.Time) bool {
	e.stamp(l, now)
	e.Remaining = &r
	est := e.learned(l, now)
	demand := e.TAT.After(now)
	learnt := est.Report(l, r.Value, throttled, demand, now)
	l = e.Effective(l)
	iv := l.Rate.Interval()
	left := r.Value - max(after, 0) - reserve(l.Burst)
	target := now.Add(time.Duration(l.Burst)*iv - time.Duration(left)*iv)
	if !target.After(maxTime(e.TAT, now)) {
		return learnt
	}
	e.TAT = target
	return true
}

// reserve is the calls the bucket keeps below Azure's report under a
// burst of burst.
func reserve(burst int) int64 { return 1 + int64(burst)/10 }

func (e *Entry) stamp(l Limit, now time.Time) {
	e.Version, e.Rate, e.Burst, e.UpdatedAt = EntryVersion, l.Rate.String(), l.Burst, now
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// DecodeEntry reads an entry of the bucket.
func DecodeEntry(data []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return Entry{}, fmt.Errorf("throttle: entry does not decode: %w", err)
	}
	if e.Version != EntryVersion {
		return Entry{}, fmt.Errorf("throttle: entry of version %d; this code reads version %d", e.Version, EntryVersion)
	}
	return e, nil
}

func (e *Entry) encode() []byte {
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("throttle: encode entry: %v", err)) // plain data: cannot happen
	}
	return b
}

// Remaining-budget headers Azure sends (docs/azure.md, Throttling).
const (
	HeaderRemainingTenantWrites       = "x-ms-ratelimit-remaining-tenant-writes"
	HeaderRemainingTenantReads        = "x-ms-ratelimit-remaining-tenant-reads"
	HeaderRemainingSubscriptionWrites = "x-ms-ratelimit-remaining-subscription-writes"
	HeaderRemainingSubscriptionReads  = "x-ms-ratelimit-remaining-subscription-reads"
	HeaderCostManagementQPURemaining  = "x-ms-ratelimit-microsoft.costmanagement-qpu-remaining"
	HeaderCostManagementTenantRemain  = "x-ms-ratelimit-remaining-microsoft.costmanagement-tenant-requests"
	HeaderCostManagementEntityRemain  = "x-ms-ratelimit-remaining-microsoft.costmanagement-entity-requests"
)

// remainingHeaders are the headers that count a class's budget.
var remainingHeaders = map[Class][]string{
	BillingWrites:  {HeaderRemainingTenantWrites, HeaderRemainingSubscriptionWrites},
	BillingReads:   {HeaderRemainingTenantReads, HeaderRemainingSubscriptionReads},
	CostManagement: {HeaderCostManagementQPURemaining, HeaderCostManagementTenantRemain, HeaderCostManagementEntityRemain},
}

// RemainingOf reads the smallest remaining budget of class c from an
// answer's headers: a plain count ("195") or Cost Management's windows
// ("QueriesPerHour:597,QueriesPerMin:57,QueriesPer10Sec:9", the smallest
// counts). ok is false when no header of the class is present and valid.
func RemainingOf(c Class, h http.Header, now time.Time) (Remaining, bool) {
	var best Remaining
	found := false
	for _, name := range remainingHeaders[c] {
		for k, vs := range h {
			if !strings.EqualFold(k, name) {
				continue
			}
			for _, v := range vs {
				if n, ok := parseRemaining(v); ok && (!found || n < best.Value) {
					best, found = Remaining{Header: name, Value: n, At: now}, true
				}
			}
		}
	}
	return best, found
}

// parseRemaining reads "195" or "Name:9,Name:57" (the smallest count).
func parseRemaining(v string) (int64, bool) {
	if len(v) > 256 {
		return 0, false
	}
	found := false
	var least int64
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if i := strings.LastIndexByte(part, ':'); i >= 0 {
			part = strings.TrimSpace(part[i+1:])
		}
		n, err := strconv.ParseInt(part, 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		if !found || n < least {
			least, found = n, true
		}
	}
	return least, found
}
