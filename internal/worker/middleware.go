package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
)

// The pieces around the handlers: recovery from a panic, and the limit on
// redeliveries of a message that keeps failing (ending its operation and
// keeping a dead-letter copy).

// handler handles one message. It settles the message itself, or returns
// an error: the message could not be settled (NATS unavailable, the state
// store failing) and is to come back later, when the stored state decides.
type handler func(ctx context.Context, msg jetstream.Msg) error

// recovered turns a panic in h into an error (a *panicError, which keeps
// the panic's stack for the log), so that one bad message does not crash
// the worker.
func recovered(h handler) handler {
	return func(ctx context.Context, msg jetstream.Msg) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = &panicError{value: redact.String(fmt.Sprint(r)), stack: debug.Stack()}
			}
		}()
		return h(ctx, msg)
	}
}

// panicError is a handler's panic: its value (credentials masked) and the
// stack of the goroutine where it happened.
type panicError struct {
	value string
	stack []byte
}

func (e *panicError) Error() string { return "handler panic: " + e.value }

// limited runs h and hands a message it failed on back for a later
// delivery, with a growing delay; once the message has been delivered
// max-deliver times it ends it instead (retryLater), so nothing is
// redelivered for ever.
func (w *Worker) limited(h handler) func(context.Context, jetstream.Msg) {
	return func(ctx context.Context, msg jetstream.Msg) {
		if err := h(ctx, msg); err != nil {
			if pe, ok := errors.AsType[*panicError](err); ok {
				w.log.ErrorContext(ctx, "handler panic", "subject", msg.Subject(), "panic", pe.value, "stack", string(pe.stack))
			}
			w.log.WarnContext(ctx, "handling failed; the message comes back later", "subject", msg.Subject(), "error", err)
			w.retryLater(ctx, msg, err)
		}
	}
}

// retryLater settles a message whose handling failed (NATS unavailable, a
// panic) as the machine's Redelivery says: back after a backoff, or, once
// it has been delivered MaxDeliver times, given up or rejected.
func (w *Worker) retryLater(ctx context.Context, msg jetstream.Msg, cause error) {
	f := operation.Failure{Delivered: 1, Wake: msg.Subject() == w.subj.Polls(), Fire: w.subj.IsScheduleFire(msg.Subject())}
	if meta, err := msg.Metadata(); err == nil {
		f.Delivered = meta.NumDelivered
	}
	var req messages.Request
	if !f.Wake && !f.Fire { // a fire's body is its schedule, not a request
		var derr error
		req, derr = messages.DecodeRequest(msg.Data(), w.cfg.MaxRequestBytes)
		f.Invalid = derr != nil
	}
	step := w.machine.Redelivery(f, cause.Error())
	switch {
	case step.Action == operation.Reject:
		step = w.reject(ctx, msg, req, *step.Failed)
	case step.Action == operation.GiveUp && f.Fire:
		step = w.machine.GaveUp(step, w.keepFire(ctx, msg, *step.Failed))
	case step.Action == operation.GiveUp && f.Wake:
		step = w.machine.GaveUp(step, w.abandon(ctx, msg, step.Failed.Message))
	case step.Action == operation.GiveUp:
		step = w.machine.GaveUp(step, w.endWithCopy(ctx, msg, req, *step.Failed))
	}
	if err := w.settle(msg, step); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Warn("settle", "action", step.Action.String(), "error", err)
	}
}

// endWithCopy ends the operation of a valid request that keeps failing:
// the message is kept in the dead-letter stream for inspection, and the
// operation ends through its stored state with an internal_error event
// under the request's own event id, so that no other delivery can publish
// a second outcome. It reports false when the state cannot be written.
func (w *Worker) endWithCopy(ctx context.Context, msg jetstream.Msg, req messages.Request, failed messages.Failed) bool {
	if _, _, err := w.keep(ctx, msg, req, failed); err != nil {
		return false
	}
	st, again, err := w.endOperation(ctx, req.ID, &req, failed.Message)
	if err != nil || w.publishOutcome(ctx, st, again) != nil {
		return false
	}
	w.log.ErrorContext(ctx, "operation abandoned", "request_id", req.ID, "kind", string(req.Kind), "error", failed.Message)
	return true
}

// abandon ends the operation of a wake-up that keeps failing with an
// internal_error event, so that it does not stay waiting forever. It
// reports false when that failed (the wake-up is to come back); true when
// the operation ended, or has no usable state to end.
func (w *Worker) abandon(ctx context.Context, msg jetstream.Msg, reason string) bool {
	var wk wake
	_ = json.Unmarshal(msg.Data(), &wk)
	log := w.log.With("request_id", messages.IDToken(wk.ID))
	st, again, err := w.endOperation(ctx, wk.ID, nil, reason)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, errBadState) {
		log.ErrorContext(ctx, "abandon: no usable state; dropping the wake-up", "error", err)
		return true
	}
	if err == nil {
		err = w.publishOutcome(ctx, st, again)
	}
	if err != nil {
		log.ErrorContext(ctx, "abandon", "error", err)
		return false
	}
	log.ErrorContext(ctx, "operation abandoned", "error", reason)
	return true
}

// endOperation ends the operation of request id through the machine's
// Abandon, and returns its final state, and whether it had ended before.
// With req, an operation that was never stored is stored failed.
func (w *Worker) endOperation(ctx context.Context, id string, req *messages.Request, reason string) (*operation.State, bool, error) {
	entry, err := w.kv.Get(ctx, id)
	for range maxRedecide { // another worker may change it meanwhile
		var (
			cur *operation.State
			rev uint64
		)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) && req != nil:
		case err != nil:
			return nil, false, err
		default:
			st, derr := decode(entry)
			if derr != nil {
				return nil, false, derr
			}
			cur, rev = &st, entry.Revision()
		}
		step := w.machine.Abandon(cur, req, reason, traceOf(ctx), w.now())
		if step.Next == nil {
			return cur, true, nil // it had ended
		}
		_, found, perr := w.put(ctx, step.Next, rev)
		switch {
		case errors.Is(perr, errConflict) && found != nil:
			entry, err = found, nil
			continue
		case errors.Is(perr, errConflict):
			entry, err = nil, jetstream.ErrKeyNotFound // the entry is gone
			continue
		case perr != nil:
			return nil, false, perr
		}
		w.m.ended(ctx, step.Next)
		return step.Next, false, nil
	}
	return nil, false, fmt.Errorf("the state of %s kept changing", id)
}
