package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/telemetry"
)

// This file carries out the global window of collections' children (see
// package operation, slots.go): its one entry, key SlotsKey of the
// collections' bucket, read and written with a compare-and-set; the slot
// notices that wake a waiting collection (on the ended subject, so the
// consumer ended brings it back); and the tidying every replica does now
// and then, which gives back the slots of collections that ended or are
// gone.

// SlotsKey is the key of the global window's entry in the collections'
// bucket.
const SlotsKey = operation.SlotsKey

// maxShareConflicts bounds the compare-and-set attempts of one Share.
const maxShareConflicts = 50

// Tidying timings.
const (
	// slotTidyEvery is how often each replica tidies the entry.
	slotTidyEvery = 30 * time.Second
	// slotIdleAfter: a collection whose state has not changed for this
	// long holds what its state says.
	slotIdleAfter = time.Minute
)

// readSlots reads the entry (revision 0: there is none).
func (w *Worker) readSlots(ctx context.Context) (operation.Slots, uint64, error) {
	var s operation.Slots
	entry, err := w.chunks.Get(ctx, SlotsKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return s, 0, nil
	case err != nil:
		return s, 0, fmt.Errorf("read the collections' window: %w", err)
	}
	if err := json.Unmarshal(entry.Value(), &s); err != nil {
		// Unusable: start again from nothing (every collection asks again
		// as its children end, and tidying repairs the rest).
		w.log.Error("the collections' window entry does not decode; starting it afresh", "error", err)
	}
	return s, entry.Revision(), nil
}

// writeSlots stores s over revision rev (0: create it); errConflict when
// it changed meanwhile.
func (w *Worker) writeSlots(ctx context.Context, s operation.Slots, rev uint64) error {
	data, _ := json.Marshal(s)
	var err error
	if rev == 0 {
		_, err = w.chunks.Create(ctx, SlotsKey, data)
	} else {
		_, err = w.chunks.Update(ctx, SlotsKey, data, rev)
	}
	var api *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return errConflict
	}
	if err != nil {
		return fmt.Errorf("store the collections' window: %w", w.m.refusedWrite(ctx, writeCollection, err))
	}
	return nil
}

// share asks the global window for collection id's slots (its state at
// revision rev has inFlight children in flight and would request want
// more), stores the answer and wakes the collections it names.
func (w *Worker) share(ctx context.Context, id string, rev uint64, inFlight, want int) (operation.Grant, error) {
	return w.updateSlots(ctx, func(s operation.Slots) operation.Grant {
		return w.machine.Share(s, id, rev, inFlight, want, w.now())
	})
}

func (w *Worker) updateSlots(ctx context.Context, decide func(operation.Slots) operation.Grant) (operation.Grant, error) {
	for range maxShareConflicts {
		s, rev, err := w.readSlots(ctx)
		if err != nil {
			return operation.Grant{}, err
		}
		g := decide(s)
		if g.Stale || !g.Changed {
			return g, w.wakeCollections(ctx, g)
		}
		switch err := w.writeSlots(ctx, g.Next, rev); {
		case errors.Is(err, errConflict):
			continue
		case err != nil:
			return operation.Grant{}, err
		}
		return g, w.wakeCollections(ctx, g)
	}
	return operation.Grant{}, fmt.Errorf("the collections' window: %w", errConflict)
}

// wakeCollections sends the slot notices of g. Each has a message id of
// its wake-up, so replicas sending the same one send it once.
func (w *Worker) wakeCollections(ctx context.Context, g operation.Grant) error {
	for _, id := range g.Wake {
		at := time.Time{}
		for _, wt := range g.Next.Waiting {
			if wt.ID == id {
				at = wt.Woken
			}
		}
		body, _ := json.Marshal(endedNotice{Collection: id, Index: -1, Slot: true})
		m := nats.NewMsg(w.subj.ChildrenEnded())
		m.Data = body
		telemetry.Inject(ctx, m.Header)
		if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID("slot."+id+"."+strconv.FormatInt(at.UnixNano(), 10))); err != nil {
			// Not lost for good: tidying, or the next Share, sends it
			// again after operation.SlotWakeAgain.
			return fmt.Errorf("wake collection %s: %w", id, w.m.refusedWrite(ctx, writeEnded, err))
		}
	}
	return nil
}

// shareStep carries out Action Share for the delivery: the collection's
// demand to the window, then the machine's Granted. A Share from a state
// older than the window's holding decides again from the stored state.
func (r *delivery) shareStep() (operation.Step, bool, error) {
	w := r.w
	id := r.cur.Request.ID
	if r.rev == 0 {
		// No state (a slot notice for a collection that is gone): give
		// back what it held.
		if _, err := w.share(r.ctx, id, 0, 0, 0); err != nil {
			return operation.Step{}, false, err
		}
		return operation.Step{Action: operation.Ack}, true, nil
	}
	inFlight, want := w.machine.Demand(r.cur, r.floor)
	g, err := w.share(r.ctx, id, r.rev, inFlight, want)
	if err != nil {
		return operation.Step{}, false, err
	}
	if g.Stale {
		if r.redecided >= maxRedecide {
			return operation.Step{}, false, fmt.Errorf("collection %s: %w", id, errConflict)
		}
		r.redecided++
		entry, err := w.kv.Get(r.ctx, id)
		if err != nil {
			return operation.Step{}, false, fmt.Errorf("load state: %w", err)
		}
		if r.cur, err = decode(entry); err != nil {
			return operation.Step{}, false, err
		}
		r.rev = entry.Revision()
		return operation.Step{Action: operation.Share}, true, nil
	}
	return w.machine.Granted(r.cur, r.floor, g.Take, w.now()), true, nil
}

// tidySlots repairs the window from the stored states of the collections
// it names (see operation.Machine.Tidy) and sends the slot notices due.
func (w *Worker) tidySlots(ctx context.Context) error {
	s, _, err := w.readSlots(ctx)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for id := range s.Held {
		ids[id] = true
	}
	for _, wt := range s.Waiting {
		ids[wt.ID] = true
	}
	seen := make(map[string]operation.SlotHolder, len(ids))
	now := w.now()
	for id := range ids {
		entry, err := w.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			seen[id] = operation.SlotHolder{}
			continue
		} else if err != nil {
			return fmt.Errorf("tidy the collections' window: %w", err)
		}
		st, err := decode(entry)
		if err != nil {
			continue
		}
		inFlight, want := w.machine.Demand(st, 0)
		seen[id] = operation.SlotHolder{Found: true, Collecting: st.Phase == operation.PhaseCollecting, Rev: entry.Revision(),
			InFlight: inFlight, Want: want, Idle: now.Sub(st.UpdatedAt) > slotIdleAfter}
	}
	_, err = w.updateSlots(ctx, func(s operation.Slots) operation.Grant { return w.machine.Tidy(s, seen, w.now()) })
	return err
}

// tidyLoop tidies the window every slotTidyEvery until ctx is done.
func (w *Worker) tidyLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := w.tidySlots(ctx); err != nil && ctx.Err() == nil {
				w.log.Warn("tidy the collections' window", "error", err)
			}
		}
	}
}

// observeSlots registers billing.collections.slots.in_use and
// billing.collections.waiting, read from the window's entry, so every
// replica reports the same numbers; and billing.collections.slots.limit.
func (in *instruments) observeSlots(w *Worker) error {
	inUse, err := in.meter.Int64ObservableGauge("billing.collections.slots.in_use",
		metric.WithDescription("Slots of the global window of collections' children taken (children in flight, all collections)."),
		metric.WithUnit("{child}"))
	if err != nil {
		return err
	}
	waiting, err := in.meter.Int64ObservableGauge("billing.collections.waiting",
		metric.WithDescription("Collections waiting for a slot of the global window."),
		metric.WithUnit("{collection}"))
	if err != nil {
		return err
	}
	limit, err := in.meter.Int64ObservableGauge("billing.collections.slots.limit",
		metric.WithDescription("The global window: collections' children in flight at once, all collections (collections-in-flight)."),
		metric.WithUnit("{child}"))
	if err != nil {
		return err
	}
	_, err = in.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(limit, int64(w.machine.Slots))
		s, _, err := w.readSlots(ctx)
		if err == nil {
			o.ObserveInt64(inUse, int64(s.InUse()))
			o.ObserveInt64(waiting, int64(len(s.Waiting)))
		}
		return nil
	}, inUse, waiting, limit)
	return err
}

func (w *Worker) tidyEvery() time.Duration {
	if w.tidyAfter > 0 {
		return w.tidyAfter
	}
	return slotTidyEvery
}

// WithSlotTidying makes the worker tidy the collections' window every d
// rather than every 30s; for tests.
func WithSlotTidying(d time.Duration) Option { return func(w *Worker) { w.tidyAfter = d } }
