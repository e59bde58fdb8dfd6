package worker

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
)

// This file carries out the machine's steps for one delivery: each step
// is prepared (a listed page's chunk, children's requests), passed through
// the shared throttle when it is a call, stored, then acted on (a call, an
// archive, a schedule, a publish) until a step settles the message.

// maxRedecide bounds how often one delivery decides again after finding
// the state changed under it; past that the message comes back later.
const maxRedecide = 3

// carry carries out step, decided from state cur (stored at revision rev;
// 0 when step creates the operation), and the steps that follow it: after
// a call, the answer's. When a store finds the state changed, it decides
// again from what is stored now; it never takes that as proof that
// another worker owns the operation. An error means the message could not
// be settled: it is to come back later, and the stored state decides then.
func (w *Worker) carry(ctx context.Context, msg jetstream.Msg, cur operation.State, step operation.Step, rev uint64, d operation.Delivery, log *slog.Logger) error {
	r := &delivery{w: w, msg: msg, log: log, ctx: ctx, calls: ctx, cur: cur, rev: rev, d: d}
	defer r.release()
	for {
		next, more, err := r.next(step)
		if err != nil || !more {
			return err
		}
		step = next
	}
}

// delivery is one message carried through the machine's steps.
type delivery struct {
	w   *Worker
	msg jetstream.Msg
	log *slog.Logger
	// ctx is the stores' and publishes'; calls the Azure calls', which end
	// with the shutdown (ctx outlives it once an answer is to be stored).
	ctx, calls context.Context
	// cur is the operation's state as stored at rev (0: not stored yet).
	cur operation.State
	rev uint64
	d   operation.Delivery
	// held: this delivery counts among the operation's callers (w.calls),
	// from storing a claim until it ends.
	held bool
	// regate: a call decided after an archive, not yet past the throttle.
	regate bool
	// answered: the step to store holds an answer of Azure's (or an
	// archive's outcome), which only a new call could get again.
	answered  bool
	redecided int
	// floor: the children below it are requested (by this delivery), even
	// if the stored state does not say so yet.
	floor int
}

// release ends the delivery's count among the operation's callers.
func (r *delivery) release() {
	if r.held {
		r.w.calls.done(r.cur.Request.ID)
	}
}

// next carries out one step and returns the step that follows it; more is
// false once the message is settled.
func (r *delivery) next(step operation.Step) (_ operation.Step, more bool, _ error) {
	if err := r.w.prepare(r.ctx, step); err != nil {
		return step, false, err // the redelivery decides again
	}
	if step.Spawn != nil {
		r.floor = max(r.floor, step.Spawn.To)
	}
	step = r.gate(step)
	if step.Next != nil {
		again, redecided, err := r.store(step)
		if err != nil || again {
			return redecided, again, err
		}
	}
	return r.act(step)
}

// gate passes a call through the shared throttle: the first of this
// delivery, or one decided after an archive (a new link is the first call
// again). A call held back becomes the machine's wait.
func (r *delivery) gate(step operation.Step) operation.Step {
	if step.Action != operation.Call || r.held && !r.regate || r.w.thr == nil {
		return step
	}
	r.regate = false
	r.calls, step = r.w.gate(r.calls, &r.cur, step, r.log)
	return step
}

// store writes step.Next over the revision it was decided from. When the
// state changed meanwhile it returns again, with the machine's step
// decided from what is stored now.
func (r *delivery) store(step operation.Step) (again bool, redecided operation.Step, err error) {
	w, id := r.w, r.cur.Request.ID
	if (step.Action == operation.Call || step.Action == operation.Archive) && !r.held {
		// Acting from before the claim is stored until the answer is: no
		// other delivery in this process may take the claim for an orphan
		// meanwhile.
		w.calls.add(id)
		r.held = true
	}
	var keep func()
	if r.answered {
		keep = func() { _ = w.settle(r.msg, operation.Step{Action: operation.KeepAlive}) }
	}
	r.answered = false
	next, found, err := w.putKept(r.ctx, step.Next, r.rev, keep)
	if errors.Is(err, errConflict) && found != nil && r.redecided < maxRedecide {
		r.redecided++
		if r.cur, err = decode(found); err != nil {
			return false, step, err
		}
		r.log.DebugContext(r.ctx, "the state changed meanwhile; deciding again", "phase", string(r.cur.Phase))
		others := w.calls.count(id)
		if r.held {
			others-- // this delivery's own
		}
		r.d.Acting = others > 0
		r.rev = found.Revision()
		return true, w.machine.Resume(r.cur, r.d, w.now()), nil
	}
	if err != nil {
		return false, step, err // the redelivery decides from what is stored
	}
	r.cur, r.rev = *step.Next, next
	if r.cur.Phase.Terminal() {
		w.m.ended(r.ctx, &r.cur)
		w.am.ended(r.ctx, &r.cur)
	}
	return false, step, nil
}

// act does what step says once its state is stored, and returns the step
// that follows (more), or settles the message.
func (r *delivery) act(step operation.Step) (operation.Step, bool, error) {
	w := r.w
	switch step.Action {
	case operation.Call:
		if !w.now().Add(w.cfg.HTTPTimeout).Before(r.cur.ClaimedUntil) && r.redecided < maxRedecide {
			// Storing the claim took so long that it would run out during
			// the call, and another worker could take over: renew it first.
			r.redecided++
			return w.machine.Reclaim(r.cur, w.now()), true, nil
		}
		step = w.call(r.calls, r.cur, r.log)
		r.answered = true
		// Azure's answer is not thrown away lightly: store it even if the
		// shutdown cuts in.
		r.ctx = context.WithoutCancel(r.calls)
		return step, true, nil
	case operation.Archive:
		step, r.rev = w.archive(r.calls, r.msg, r.cur, r.rev, r.log)
		r.answered = true
		// A new link is the first call again: through the throttle.
		r.regate = step.Action == operation.Call
		// The outcome is stored even if the shutdown cuts in.
		r.ctx = context.WithoutCancel(r.calls)
		return step, true, nil
	case operation.Share:
		return r.shareStep()
	case operation.Finish:
		ends, skipped, err := w.gather(r.ctx, &r.cur)
		if err != nil {
			return step, false, err
		}
		return w.machine.Finish(r.cur, ends, skipped, w.now()), true, nil
	case operation.Schedule:
		if err := w.schedule(r.ctx, &r.cur); err != nil {
			return step, false, err // the redelivery finds it waiting and schedules again
		}
	case operation.Publish, operation.Republish:
		if err := w.finish(r.ctx, &r.cur, step.Action == operation.Republish, r.log); err != nil {
			return step, false, err // the redelivery publishes it again
		}
	case operation.Conflict:
		step = w.reject(r.ctx, r.msg, *r.d.Request, *step.Failed)
	case operation.HoldWake:
		// Not settled: kept until due, then handled again (hold.go).
		w.holds.holdWake(r.msg, step)
		return step, false, nil
	}
	_ = w.settle(r.msg, step)
	return step, false, nil
}

// finish publishes the stored outcome of a terminal operation. again is
// true when the operation had ended before this delivery: its event may be
// stored already.
//
// A collection's coverage records are stored before its event is
// published, so that whoever reads the grid on the event sees them.
func (w *Worker) finish(ctx context.Context, st *operation.State, again bool, log *slog.Logger) error {
	if err := w.recordCoverage(ctx, st); err != nil {
		return err // the redelivery records (the same records) again
	}
	if err := w.publishOutcome(ctx, st, again); err != nil {
		return err
	}
	if st.Failed != nil && !again {
		log.InfoContext(ctx, "operation failed", "code", string(st.Failed.Code), "azure_calls", st.AzureCalls, "error", st.Failed.Message)
	}
	return nil
}
