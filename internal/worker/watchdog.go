package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
)

// This file is the watchdog of wake-ups: the worker's one source of
// wake-ups is the NATS server's message scheduler, and that can drop one
// without a word (nats-server 2.15: a wake-up that falls due while the
// file store refuses writes is marked in flight, the store error is
// ignored, and the mark stays until the subject gets a new schedule or the
// server restarts; docs/architecture.md has the reproduction). So every
// replica looks, once a second, at the wake-ups that fell due more than
// WakeOverdue ago: a fired one-shot schedule is purged by the server, so
// any still stored is one the server never fired. Each such wake-up of an
// operation still waiting for it is scheduled again, now, on a new
// subject (with a message id, so that of the replicas doing the same only
// one lands), and the stuck one is deleted, which also clears the server's
// mark. The schedule subjects carry the second their wake-up falls due,
// so a look costs one stream read per second of time, however many
// operations wait.

// Watchdog timings.
const (
	// watchEvery is how often the watchdog looks.
	watchEvery = time.Second
	// watchLookback is how far back the first look of a process reaches
	// (the wake-ups of a worker fleet that was down for longer are not
	// looked at: the server fires those that it can store).
	watchLookback = time.Hour
	// watchLogEvery bounds the watchdog's failure lines while writes keep
	// failing (a full store).
	watchLogEvery = 30 * time.Second
)

// watchdog is the state of the wake-up watchdog of one worker.
type watchdog struct {
	// next is the first second (Unix time) not yet looked at in full.
	next int64
	// overdue counts the operations found overdue in the last look.
	overdue  atomic.Int64
	rearmed  metric.Int64Counter
	observer metric.Registration
}

func (w *Worker) newWatchdog() (*watchdog, error) {
	d := &watchdog{}
	m := w.m.meter
	var err, e error
	d.rearmed, e = m.Int64Counter("billing.wakeups.rearmed",
		metric.WithDescription("Wake-ups the NATS server never fired, scheduled again by the watchdog."), metric.WithUnit("{wake-up}"))
	err = errors.Join(err, e)
	gauge, e := m.Int64ObservableGauge("billing.wakeups.overdue",
		metric.WithDescription("Waiting operations whose wake-up is overdue by more than wake-overdue-after, as of the watchdog's last look."),
		metric.WithUnit("{operation}"))
	err = errors.Join(err, e)
	if err != nil {
		return nil, err
	}
	d.observer, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(gauge, d.overdue.Load())
		return nil
	}, gauge)
	return d, err
}

// watchWakeUps looks for overdue wake-ups every watchEvery until ctx is
// done.
func (w *Worker) watchWakeUps(ctx context.Context, d *watchdog) {
	defer func() { _ = d.observer.Unregister() }()
	stream, err := w.js.Stream(ctx, w.subj.WorkStream())
	for err != nil {
		w.log.Warn("wake-up watchdog: work stream", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchEvery):
		}
		stream, err = w.js.Stream(ctx, w.subj.WorkStream())
	}
	d.next = w.now().Add(-w.cfg.WakeOverdue - watchLookback).Unix()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	var logged time.Time // the last failure logged: at most one line per watchLogEvery
	for {
		if err := w.lookForOverdue(ctx, stream, d); err != nil && ctx.Err() == nil && time.Since(logged) >= watchLogEvery {
			logged = time.Now()
			w.log.Warn("wake-up watchdog", "error", err, "overdue", d.overdue.Load())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lookForOverdue looks at the wake-ups due in the seconds from d.next up
// to WakeOverdue ago. A second with a wake-up it could not act on (the
// store refusing the new schedule) is looked at again next time; a read
// that fails (NATS unreachable) ends the look there, to go on from that
// second next time.
func (w *Worker) lookForOverdue(ctx context.Context, stream jetstream.Stream, d *watchdog) error {
	now := w.now()
	end := now.Add(-w.cfg.WakeOverdue).Unix() // every wake-up due before this second is overdue
	redo, overdue := end, int64(0)
	var first error
	failed := 0
	for sec := d.next; sec < end; sec++ {
		n, err := w.rearmSecond(ctx, stream, sec, now)
		overdue += int64(n)
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		}
		failed++
		redo = min(redo, sec)
		var re *readError
		if errors.As(err, &re) || ctx.Err() != nil {
			d.next = redo
			return first // the gauge keeps its last full look
		}
	}
	d.next = redo
	d.overdue.Store(overdue)
	if failed > 1 {
		return fmt.Errorf("%w (and %d more seconds with a failure)", first, failed-1)
	}
	return first
}

// readError is a failure to read the stored wake-ups of a second.
type readError struct {
	sec int64
	err error
}

func (e *readError) Error() string { return fmt.Sprintf("read the wake-ups of %d: %v", e.sec, e.err) }
func (e *readError) Unwrap() error { return e.err }

// rearmSecond acts on the wake-ups still stored that fell due within the
// second sec: it returns how many were of operations still waiting for
// them.
func (w *Worker) rearmSecond(ctx context.Context, stream jetstream.Stream, sec int64, now time.Time) (int, error) {
	filter := w.subj.SchedulesDue(sec)
	overdue := 0
	var errs []error
	for seq := uint64(0); ; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return overdue, errors.Join(errs...)
		}
		if err != nil {
			return overdue, &readError{sec, err}
		}
		seq = m.Sequence + 1
		waiting, err := w.rearm(ctx, stream, m, now)
		if waiting {
			overdue++
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
}

// rearm acts on one stored wake-up that is overdue: when its operation
// still waits for it, it schedules it again for now and reports true;
// either way it then deletes the stored one.
func (w *Worker) rearm(ctx context.Context, stream jetstream.Stream, m *jetstream.RawStreamMsg, now time.Time) (bool, error) {
	var wk wake
	waiting := false
	if err := json.Unmarshal(m.Data, &wk); err == nil && wk.ID != "" {
		entry, err := w.kv.Get(ctx, wk.ID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, fmt.Errorf("load state: %w", err)
		default:
			st, err := decode(entry)
			if err != nil {
				return false, err
			}
			waiting = st.Phase == operation.PhaseWaiting && st.Wake == wk.Wake
			if waiting {
				// One id per stored wake-up: of the replicas that find it,
				// one schedule lands.
				id := "rearm." + wk.ID + "." + strconv.FormatUint(m.Sequence, 10)
				dup, err := w.scheduleAt(ctx, &st, now, id)
				if err != nil {
					return true, err // looked at again next time
				}
				if !dup {
					w.watch.rearmed.Add(ctx, 1, kindOption(st.Request.Kind))
					w.log.WarnContext(ctx, "wake-up never fired; scheduled again", "request_id", wk.ID,
						"due", st.NextAt, "overdue", now.Sub(st.NextAt).Round(time.Millisecond).String())
				}
			}
		}
	}
	// Stale (the operation moved on, ended or expired) or scheduled again:
	// the stored one goes, and with it the server's mark.
	if err := stream.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return waiting, fmt.Errorf("delete a stuck wake-up: %w", err)
	}
	return waiting, nil
}
