package worker

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
)

// Holding a wake-up until its poll is due. The server fires a wake-up
// poll-lead before the due time (publish.go); when it arrives early by at
// most poll-hold-max, the machine says to hold it (operation.HoldWake),
// and the worker keeps the message, unsettled, on a timer: no handler
// slot, no goroutine until the timer fires, then the message goes to the
// handler pool and is handled as a wake-up that is due. A shutdown ends
// every hold at once: the message is handed back for another worker.

// holder keeps wake-ups until they are due. Run makes it; handlers reach
// it through the worker.
type holder struct {
	w *Worker
	// stop ends every hold (Run's context: the shutdown).
	stop context.Context
	// submit hands a message whose hold ended to the handler pool (its
	// place among the work in flight already counted); add counts a new
	// hold among the work in flight, done ends that count.
	submit    func(jetstream.Msg, func(context.Context, jetstream.Msg))
	add, done func()
	// poll is the wake-ups' handler, for a hold a handler decided.
	poll func(context.Context, jetstream.Msg)
	// held measures the holds.
	held metric.Float64Histogram
}

// arrived decides, from its body alone, whether a wake-up is to be held
// before it takes a handler slot, and for how long.
func (h *holder) arrived(msg jetstream.Msg) (time.Duration, bool) {
	var wk wake
	if json.Unmarshal(msg.Data(), &wk) != nil || wk.Due == nil {
		return 0, false // the handler makes sense of it
	}
	step, ok := h.w.machine.Arrived(*wk.Due, h.w.now())
	return step.Delay, ok
}

// hold keeps msg for d (at most the bound, as the machine decided), then
// hands it to handle through the pool; the caller counted it among the
// work in flight. When the shutdown comes first, the message is handed
// back at once for another worker.
func (h *holder) hold(msg jetstream.Msg, d time.Duration, handle func(context.Context, jetstream.Msg)) {
	start := time.Now()
	var (
		taken      atomic.Bool // by the timer or by the shutdown, once
		mu         sync.Mutex  // until unregister is set
		unregister func() bool
	)
	mu.Lock()
	defer mu.Unlock()
	t := time.AfterFunc(d, func() {
		if !taken.CompareAndSwap(false, true) {
			return // the shutdown took it
		}
		mu.Lock()
		unregister()
		mu.Unlock()
		h.held.Record(context.Background(), time.Since(start).Seconds())
		h.submit(msg, handle)
	})
	unregister = context.AfterFunc(h.stop, func() {
		if !taken.CompareAndSwap(false, true) {
			return // the timer took it
		}
		t.Stop()
		_ = h.w.settle(msg, h.w.machine.Elsewhere())
		h.done()
	})
}

// holdWake is the HoldWake step of a handler: msg (a wake-up) is kept for
// step.Delay, then handled again from the start; the handler's own place
// in the pool is freed at once.
func (h *holder) holdWake(msg jetstream.Msg, step operation.Step) {
	h.add()
	h.hold(msg, step.Delay, h.poll)
}
