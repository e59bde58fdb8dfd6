package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/poll"
)

// This file connects the runner to the shared throttle (package
// throttle): a slot before each call, the answer's pause and remaining
// budget after it. The waits themselves are the machine's (Defer).

// ThrottleOptions configure the shared throttle. Its zero value turns it
// off: each operation then backs off alone on its own throttled answers.
type ThrottleOptions struct {
	// Shared turns the shared throttle on: one pause and one token bucket
	// per scope for every replica, kept in the throttle bucket.
	Shared bool
	// Limits are the token buckets per class; a class missing takes
	// throttle.DefaultLimits's (Azure's documented limits).
	Limits map[throttle.Class]throttle.Limit
}

// DefaultHoldSpread spreads the calls a pause released without a slot of
// their own (operation.Machine.HoldSpread).
const DefaultHoldSpread = 2 * time.Second

// slotTolerance: a slot this close is taken as now
// (operation.RunnerPolicy.SlotTolerance).
const slotTolerance = 10 * time.Millisecond

// attrScope is the metric attribute of a throttle scope.
const attrScope = attribute.Key("billing.throttle.scope")

// throttleInstruments are the shared throttle's metrics, per scope.
type throttleInstruments struct {
	pauses, deferred, throttled, inFlight metric.Int64Counter
	paused                                metric.Float64Counter
	remaining                             sync.Map // throttle.Scope -> int64, the last report
	learned                               sync.Map // throttle.Scope -> throttle.Limit, the estimate last written
}

func newThrottleInstruments(m metric.Meter) (*throttleInstruments, error) {
	in := &throttleInstruments{}
	var err, e error
	in.pauses, e = m.Int64Counter("billing.throttle.pauses", metric.WithDescription("Pauses of a throttle scope set or extended by this replica (Azure answered 429 or 503 with a wait)."), metric.WithUnit("{pause}"))
	err = errors.Join(err, e)
	in.paused, e = m.Float64Counter("billing.throttle.paused", metric.WithDescription("Time a throttle scope was paused for, by the pauses this replica set or extended."), metric.WithUnit("s"))
	err = errors.Join(err, e)
	in.deferred, e = m.Int64Counter("billing.throttle.deferred", metric.WithDescription("Calls rescheduled to wait for their throttle scope (a pause, or the scope's token bucket)."), metric.WithUnit("{call}"))
	err = errors.Join(err, e)
	in.throttled, e = m.Int64Counter("billing.throttle.throttled", metric.WithDescription("Throttled answers (429, 503) received, by throttle scope."), metric.WithUnit("{call}"))
	err = errors.Join(err, e)
	_, e = m.Int64ObservableGauge("billing.throttle.remaining",
		metric.WithDescription("The remaining budget Azure last reported to this replica, by throttle scope (the smallest count of its remaining-budget headers)."),
		metric.WithUnit("{call}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			in.remaining.Range(func(k, v any) bool {
				o.Observe(v.(int64), metric.WithAttributes(attrScope.String(string(k.(throttle.Scope)))))
				return true
			})
			return nil
		}))
	err = errors.Join(err, e)
	in.inFlight, e = m.Int64Counter("billing.throttle.inflight_at_pause", metric.WithDescription("Throttled answers to calls already on their way when their scope's pause began (the scope was paused when the answer came)."), metric.WithUnit("{call}"))
	err = errors.Join(err, e)
	_, e = m.Float64ObservableGauge("billing.throttle.learned.rate",
		metric.WithDescription("The refill rate of Azure's budget the shared throttle learned, by throttle scope (at most the configured rate), as this replica last wrote it."),
		metric.WithUnit("{call}/s"),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			in.learned.Range(func(k, v any) bool {
				r := v.(throttle.Limit).Rate
				o.Observe(r.Calls/r.Per.Seconds(), metric.WithAttributes(attrScope.String(string(k.(throttle.Scope)))))
				return true
			})
			return nil
		}))
	err = errors.Join(err, e)
	_, e = m.Int64ObservableGauge("billing.throttle.learned.burst",
		metric.WithDescription("The size of Azure's budget (calls at once) the shared throttle learned, by throttle scope (at most the configured burst), as this replica last wrote it."),
		metric.WithUnit("{call}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			in.learned.Range(func(k, v any) bool {
				o.Observe(int64(v.(throttle.Limit).Burst), metric.WithAttributes(attrScope.String(string(k.(throttle.Scope)))))
				return true
			})
			return nil
		}))
	err = errors.Join(err, e)
	return in, err
}

// noteLearned keeps scope's estimate, from an entry just written, for the
// learned gauges.
func (in *throttleInstruments) noteLearned(scope throttle.Scope, e throttle.Entry, configured throttle.Limit) {
	if e.Learned != nil {
		in.learned.Store(scope, e.Effective(configured))
	}
}

// scopeOf is the throttle scope of the call st is claimed for.
func (w *Worker) scopeOf(st *operation.State) throttle.Scope {
	profile := st.Request.Profile
	if profile == "" {
		profile = w.profiles.Default
	}
	// A collection's calls are its listing's.
	return throttle.ScopeOf(profile, st.CallKind(), st.Location != "")
}

// gate asks the shared throttle whether the call that step decided (its
// Next claimed, not stored yet) may go now, and returns the machine's
// verdict: the call, or the operation's wait for the throttle. cur is the
// state the step was decided from: a slot it holds that has come is used
// unless the scope is paused or its estimate went down since the slot was
// taken. Without an answer from the throttle
// (unreachable) the call goes.
//
// A call that goes on a slot reserved carries the slot's number in the
// returned context, for observe.
func (w *Worker) gate(ctx context.Context, cur *operation.State, step operation.Step, log *slog.Logger) (context.Context, operation.Step) {
	scope := w.scopeOf(step.Next)
	g := operation.Gate{Scope: string(scope), Ask: w.machine.ThrottleAsk(*cur, string(scope), w.now())}
	for {
		var seq int64
		switch g.Ask {
		case operation.AskPause:
			h, err := w.thr.Held(ctx, scope)
			g.PausedUntil, g.Lowered, g.Reserved, g.Unavailable = h.PausedUntil, h.Lowered, cur.HeldSince(), err != nil
		case operation.AskReserve:
			grant, err := w.thr.Reserve(ctx, scope)
			if err != nil {
				log.WarnContext(ctx, "shared throttle unavailable; calling without it", "scope", string(scope), "error", err)
			}
			g.Unavailable, g.At, g.PausedUntil, g.NoSlot, seq = err != nil, grant.At, grant.PausedUntil, grant.NoSlot, grant.Seq
		}
		// Decided at the time the answer came back, not the time asked:
		// the reservation (a lock per scope, a read and a write of the
		// bucket) can take a while on a loaded machine.
		verdict, next := w.machine.Throttle(*step.Next, g, w.now())
		switch verdict {
		case operation.AskAgain:
			g = operation.Gate{Scope: string(scope), Ask: operation.AskReserve}
			continue
		case operation.GoOnSlot:
			ctx = context.WithValue(ctx, slotKey{}, seq)
		case operation.HoldBack:
			w.tm.deferred.Add(ctx, 1, metric.WithAttributes(attrScope.String(string(scope))))
			log.DebugContext(ctx, "held by the shared throttle", "scope", g.Scope, "until", g.At.UTC(), "paused_until", g.PausedUntil.UTC())
		}
		return ctx, next
	}
}

// unanswered tells the throttle that a call in scope got no answer from
// Azure, so that a probe of the scope's budget that ended so does not
// hold the scope's other calls.
func (w *Worker) unanswered(ctx context.Context, scope throttle.Scope, log *slog.Logger) {
	if w.thr == nil {
		return
	}
	if err := w.thr.Unanswered(ctx, scope); err != nil {
		log.WarnContext(ctx, "could not record an unanswered call", "scope", string(scope), "error", err)
	}
}

// slotKey keys the slot number of the call a context carries.
type slotKey struct{}

// observe tells the throttle what an answer in st's scope said: a
// throttled answer's wait pauses the scope for every replica, and the
// remaining budget slows its bucket.
func (w *Worker) observe(ctx context.Context, st *operation.State, a *operation.Answer, log *slog.Logger) {
	scope := w.scopeOf(st)
	attrs := metric.WithAttributes(attrScope.String(string(scope)))
	if a.Status == 429 || a.Status == 503 {
		w.tm.throttled.Add(ctx, 1, attrs)
	}
	if w.thr == nil {
		return
	}
	if a.Header == nil {
		w.unanswered(ctx, scope, log)
		return
	}
	now := w.now()
	throttled := a.Outcome == operation.Throttled
	if throttled {
		if hint, ok := poll.LongestHint(a.Header, now); ok && hint.Wait > 0 {
			until := now.Add(hint.Wait)
			p, err := w.thr.PauseScope(ctx, scope, until, hint.Source)
			if err == nil {
				w.tm.noteLearned(scope, p.Entry, w.thr.Limit(scope))
				if p.InFlight {
					// On its way when another call's answer paused the
					// scope (docs/throttle.md, Calls in flight).
					w.tm.inFlight.Add(ctx, 1, attrs)
				}
			}
			switch {
			case err != nil:
				log.WarnContext(ctx, "could not pause the throttle scope", "scope", string(scope), "error", err)
			case p.Added > 0:
				w.tm.pauses.Add(ctx, 1, attrs)
				w.tm.paused.Add(ctx, p.Added.Seconds(), attrs)
				log.InfoContext(ctx, "throttle scope paused", "scope", string(scope), "until", until, "source", hint.Source)
			}
		}
	}
	seq, _ := ctx.Value(slotKey{}).(int64)
	o, err := w.thr.ObserveAnswer(ctx, scope, a.Header, seq, throttled)
	if o.Reported {
		w.tm.remaining.Store(scope, o.Remaining.Value)
	}
	if err != nil {
		log.WarnContext(ctx, "could not record the remaining budget", "scope", string(scope), "error", err)
	} else {
		w.tm.noteLearned(scope, o.Entry, w.thr.Limit(scope))
	}
}
