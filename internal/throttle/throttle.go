package throttle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/messages"
)

// BucketTTL is how long a scope's entry is kept after its last change;
// a scope nobody called for that long starts again from a full bucket.
const BucketTTL = 24 * time.Hour

// BucketConfig is the throttle bucket's configuration under layout l, with
// replicas replicas (the worker's setting, as for its streams).
func BucketConfig(l messages.Layout, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      l.ThrottleBucket(),
		Description: "Shared throttle of the billing workers: one entry per scope (credential profile and class of Azure call)",
		History:     1,
		TTL:         BucketTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// maxAttempts bounds the compare-and-set attempts of one change; past
// that the change is given up (the caller goes on without it).
const maxAttempts = 64

// conflictWait bounds the random wait after a lost race, so that replicas
// racing for one entry fall out of step.
const conflictWait = 5 * time.Millisecond

// ErrContended is returned when a change lost maxAttempts races in a row.
var ErrContended = errors.New("throttle: the scope's entry kept changing under this worker")

// Throttle is one replica's handle on the shared throttle. Its methods are
// safe for concurrent use; within a process the changes of one scope are
// serialised, so replicas, not goroutines, race for an entry.
type Throttle struct {
	kv     jetstream.KeyValue
	limits map[Class]Limit
	now    func() time.Time

	mu    sync.Mutex
	locks map[Scope]*sync.Mutex
}

// New returns a throttle on bucket kv enforcing limits (a class missing
// from it takes DefaultLimits's).
func New(kv jetstream.KeyValue, limits map[Class]Limit) *Throttle {
	all := DefaultLimits()
	for c, l := range limits {
		all[c] = l
	}
	return &Throttle{kv: kv, limits: all, now: time.Now, locks: map[Scope]*sync.Mutex{}}
}

// Limit returns the limit of scope s.
func (t *Throttle) Limit(s Scope) Limit {
	if l, ok := t.limits[s.Class()]; ok {
		return l
	}
	return t.limits[BillingReads]
}

// Grant is the slot a call got.
type Grant struct {
	// At is the slot: now, or the time the call is to wait for.
	At time.Time
	// PausedUntil is the end of the scope's pause, when it is paused.
	PausedUntil time.Time
	// Seq numbers the slot among all the scope's calls (Entry.Calls once
	// taken); Observe takes it to count the calls let through after it.
	Seq int64
	// NoSlot: no slot of the bucket was taken (the scope's probe holds
	// the call until At); the call asks again then.
	NoSlot bool
}

// Reserve takes a slot for one call in scope s.
func (t *Throttle) Reserve(ctx context.Context, s Scope) (Grant, error) {
	var g Grant
	_, err := t.change(ctx, s, func(e *Entry, now time.Time) bool {
		calls := e.Calls
		g.At = e.Reserve(t.Limit(s), now)
		g.Seq, g.NoSlot = e.Calls, e.Calls == calls
		if e.Paused(now) {
			g.PausedUntil = e.PausedUntil
		}
		return true
	})
	return g, err
}

// Held is what a call whose slot has come must know of its scope.
type Held struct {
	// PausedUntil is the end of the scope's pause (zero: not paused).
	PausedUntil time.Time
	// Lowered is when the scope's estimate last went down (Entry.Lowered).
	Lowered time.Time
}

// Held reads scope s's pause and the last fall of its estimate.
func (t *Throttle) Held(ctx context.Context, s Scope) (Held, error) {
	e, _, err := t.get(ctx, s)
	if err != nil {
		return Held{}, err
	}
	h := Held{Lowered: e.Lowered}
	if e.Paused(t.now()) {
		h.PausedUntil = e.PausedUntil
	}
	return h, nil
}

// Pause records a throttled answer (429 or 503) in scope s and pauses the
// scope for every replica until until, unless it is paused longer already.
// It returns the time the pause was set or extended by (0: the scope was
// paused that long already).
func (t *Throttle) Pause(ctx context.Context, s Scope, until time.Time, source string) (time.Duration, error) {
	p, err := t.PauseScope(ctx, s, until, source)
	return p.Added, err
}

// Paused is what a throttled answer did to its scope (PauseScope).
type Paused struct {
	// Added is the time the pause was set or extended by.
	Added time.Duration
	// InFlight: the scope was paused already when the answer came; the
	// call was on its way when the pause began.
	InFlight bool
	// Entry is the scope's entry as written.
	Entry Entry
}

// PauseScope is Pause, telling also whether the call was in flight when
// the pause began, and the entry written.
func (t *Throttle) PauseScope(ctx context.Context, s Scope, until time.Time, source string) (Paused, error) {
	var p Paused
	e, err := t.change(ctx, s, func(e *Entry, now time.Time) bool {
		p.InFlight = e.Paused(now)
		p.Added = e.Pause(t.Limit(s), until, source, now)
		return true
	})
	p.Entry = e
	return p, err
}

// Observe reads the remaining-budget headers of the answer to a call in
// scope s and records them, slowing the scope's bucket when Azure has less
// left than it allows. seq is the call's Grant.Seq (0: unknown); the calls
// let through after it are taken off what Azure reported. It returns what
// it read (ok false: no such header).
func (t *Throttle) Observe(ctx context.Context, s Scope, h http.Header, seq int64) (Remaining, bool, error) {
	o, err := t.ObserveAnswer(ctx, s, h, seq, false)
	return o.Remaining, o.Reported, err
}

// Unanswered records that a call in scope s got no answer from Azure
// (Entry.Unanswered): a probe that failed so lets the next call probe.
func (t *Throttle) Unanswered(ctx context.Context, s Scope) error {
	_, err := t.change(ctx, s, func(e *Entry, now time.Time) bool { return e.Unanswered(now) })
	return err
}

// Observed is what ObserveAnswer read and wrote.
type Observed struct {
	// Remaining is the report read; Reported is false when the answer
	// had no remaining-budget header.
	Remaining Remaining
	Reported  bool
	// Entry is the scope's entry after the answer (zero when nothing was
	// written).
	Entry Entry
}

// ObserveAnswer is Observe for an answer that was throttled (429, 503) or
// not. Every report is written: it feeds the scope's estimate of Azure's
// budget (Entry.Learned). The first answer of a scope is written even
// without a header, to end the probe of its budget (Entry.Effective), and
// so is every answer without one in a scope whose estimate comes from
// throttled answers (Entry.Unreported).
func (t *Throttle) ObserveAnswer(ctx context.Context, s Scope, h http.Header, seq int64, throttled bool) (Observed, error) {
	var o Observed
	o.Remaining, o.Reported = RemainingOf(s.Class(), h, t.now())
	l := t.Limit(s)
	e, err := t.change(ctx, s, func(e *Entry, now time.Time) bool {
		if !o.Reported {
			return e.Unreported(l, throttled, now)
		}
		o.Remaining.At = now
		var after int64
		if seq > 0 {
			after = e.Calls - seq
		}
		e.Report(l, o.Remaining, after, throttled, now)
		return true
	})
	o.Entry = e
	return o, err
}

// change applies f to scope s's entry with compare-and-set, retrying when
// another replica changed it meanwhile. f returns false to write nothing.
func (t *Throttle) change(ctx context.Context, s Scope, f func(e *Entry, now time.Time) bool) (Entry, error) {
	lock := t.lock(s)
	lock.Lock()
	defer lock.Unlock()
	for attempt := range maxAttempts {
		if attempt > 0 {
			tm := time.NewTimer(time.Duration(rand.Int64N(int64(conflictWait))))
			select {
			case <-ctx.Done():
				tm.Stop()
				return Entry{}, ctx.Err()
			case <-tm.C:
			}
		}
		e, rev, err := t.get(ctx, s)
		if err != nil {
			return e, err
		}
		now := t.now()
		if e.Scope == "" {
			e.Scope = s
		}
		if !f(&e, now) {
			return e, nil
		}
		if rev == 0 {
			_, err = t.kv.Create(ctx, string(s), e.encode())
		} else {
			_, err = t.kv.Update(ctx, string(s), e.encode(), rev)
		}
		switch {
		case err == nil:
			return e, nil
		case errors.Is(err, jetstream.ErrKeyExists), isWrongSequence(err):
			continue // another replica was first: start again from its entry
		default:
			return e, fmt.Errorf("throttle: store %s: %w", s, err)
		}
	}
	return Entry{}, fmt.Errorf("%w: %s", ErrContended, s)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// get reads scope s's entry and its revision (0: none yet, or one that
// does not decode, which is then written over).
func (t *Throttle) get(ctx context.Context, s Scope) (Entry, uint64, error) {
	kve, err := t.kv.Get(ctx, string(s))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Entry{}, 0, nil
	case err != nil:
		return Entry{}, 0, fmt.Errorf("throttle: read %s: %w", s, err)
	}
	e, derr := DecodeEntry(kve.Value())
	if derr != nil {
		return Entry{Scope: s}, kve.Revision(), nil
	}
	return e, kve.Revision(), nil
}

func (t *Throttle) lock(s Scope) *sync.Mutex {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.locks[s]
	if l == nil {
		l = &sync.Mutex{}
		t.locks[s] = l
	}
	return l
}

// Status is a scope as operators see it: its entry, and the calls its
// bucket allows at once when read (under the limit the entry names).
type Status struct {
	Entry
	Tokens float64 `json:"tokens"`
}

// List reads every scope of the throttle bucket under layout l, sorted by
// scope. A missing bucket (no worker ran the shared throttle yet) lists
// none.
func List(ctx context.Context, js jetstream.JetStream, l messages.Layout) ([]Status, error) {
	kv, err := js.KeyValue(ctx, l.ThrottleBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("throttle: bucket %s: %w", l.ThrottleBucket(), err)
	}
	return ListBucket(ctx, kv)
}

// ListBucket reads every scope of kv, sorted by scope.
func ListBucket(ctx context.Context, kv jetstream.KeyValue) ([]Status, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("throttle: list: %w", err)
	}
	defer func() { _ = w.Stop() }()
	now := time.Now()
	var out []Status
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case kve, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if kve == nil { // the current values are all in
				sort.Slice(out, func(i, j int) bool { return out[i].Scope < out[j].Scope })
				return out, nil
			}
			e, err := DecodeEntry(kve.Value())
			if err != nil {
				continue
			}
			st := Status{Entry: e}
			if r, err := ParseRate(e.Rate); err == nil {
				st.Tokens = e.Tokens(Limit{Rate: r, Burst: e.Burst}, now)
			}
			out = append(out, st)
		}
	}
}
