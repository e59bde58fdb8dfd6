package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// This file turns the fires of recurring schedules into requests. The
// NATS server holds each schedule as a repeating scheduled message on
// <prefix>.internal.cron.<id> and copies it to <prefix>.internal.fires.<id>
// when it fires; the durable consumer "fires" takes the copies. What a
// fire starts is decided by package schedule (schedule.Fire); this file
// reads the schedule's record, publishes the requests and stores the
// record back.

// FiresConsumer is the consumer of recurring schedules' fires.
const FiresConsumer = "fires"

// schedules is the worker's side of recurring schedules; nil when the
// server or the stream cannot hold them.
type schedules struct {
	kv       jetstream.KeyValue
	fires    metric.Int64Counter
	requests metric.Int64Counter
	missed   metric.Int64Counter
	errors   metric.Int64Counter
}

var (
	attrHow           = attribute.Key("billing.schedule.how")
	attrScheduleError = attribute.Key("billing.schedule.error")
	// attrKindFire is the billing.kind of a fire's dead letter.
	attrKindFire = attrKind.String(messages.FireToken)
)

// The values of billing.schedule.error.
const (
	errorUnusable   = "unusable"    // the record is unreadable or does not compile
	errorFireFailed = "fire_failed" // handling failed max-deliver times; dead-lettered
)

// ensureSchedules creates the schedules bucket and the fires consumer
// when the server fires repeating schedules (nats-server 2.14 or newer)
// and the work stream allows schedules. Otherwise it says why once and
// leaves schedules off: everything else works on 2.12.
func (w *Worker) ensureSchedules(ctx context.Context) error {
	if v := w.nc.ConnectedServerVersion(); !schedule.ServerSupports(v) {
		w.log.Warn("recurring schedules are off: nats-server "+v+" fires only one-shot schedules (2.14 or newer needed)", "server_version", v)
		return nil
	}
	st, err := w.js.Stream(ctx, w.subj.WorkStream())
	if err != nil {
		return fmt.Errorf("stream %s: %w", w.subj.WorkStream(), err)
	}
	if !st.CachedInfo().Config.AllowMsgSchedules {
		w.log.Warn("recurring schedules are off: the work stream does not allow message schedules", "stream", w.subj.WorkStream())
		return nil
	}
	kv, err := w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      w.subj.ScheduleBucket(),
		Description: "Recurring schedules: definition, paused, the periods covered",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    w.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", w.subj.ScheduleBucket(), err)
	}
	cc := consumerConfig(FiresConsumer, w.subj.ScheduleFires(), "Fires of recurring schedules, shared by every worker", &w.cfg)
	if _, err := w.js.CreateOrUpdateConsumer(ctx, w.subj.WorkStream(), cc); err != nil {
		return fmt.Errorf("consumer %s: %w", cc.Durable, err)
	}
	s := &schedules{kv: kv}
	m := w.m.meter
	var e1, e2, e3, e4 error
	s.fires, e1 = m.Int64Counter("billing.schedule.fires", metric.WithDescription("Fires of recurring schedules taken (a fire seen again included)."), metric.WithUnit("{fire}"))
	s.requests, e2 = m.Int64Counter("billing.schedule.requests", metric.WithDescription("Requests started by recurring schedules' fires, by how (fire, catch-up)."), metric.WithUnit("{request}"))
	s.missed, e3 = m.Int64Counter("billing.schedule.missed", metric.WithDescription("Missed fires of recurring schedules left out beyond schedule-catch-up."), metric.WithUnit("{fire}"))
	s.errors, e4 = m.Int64Counter("billing.schedule.errors", metric.WithDescription("Fires that started nothing: the schedule's record is unusable, or handling failed max-deliver times (dead-lettered), by error."), metric.WithUnit("{fire}"))
	if err := errors.Join(e1, e2, e3, e4); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	// Served from the start at 0: an alert on its increase then sees the
	// first missed fire too (a series born at 4 shows no increase).
	s.missed.Add(ctx, 0)
	w.sched = s
	return nil
}

// maxFireConflicts bounds the re-reads of a schedule's record changed by
// another writer while a fire was handled.
const maxFireConflicts = 10

// handleFire takes one fire of a recurring schedule: it starts the
// requests of the periods the fire (and the fires missed before it)
// cover, then stores how far the schedule got. Requests are published
// before the record: after a crash in between, the fire comes again,
// makes the same requests under the same ids (no second operation) and
// stores the record.
func (w *Worker) handleFire(ctx context.Context, msg jetstream.Msg) error {
	ack := operation.Step{Action: operation.Ack}
	id := msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:]
	log := w.log.With("schedule", id)
	if msg.Headers().Get(messages.HeaderScheduleAction) == messages.ScheduleActionStop {
		return w.settle(msg, ack) // the one-shot fire that stopped a schedule
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("fire of %s: %w", id, err)
	}
	at := meta.Timestamp // when the server fired, however late it is handled
	s := w.sched
	s.fires.Add(ctx, 1)
	for range maxFireConflicts {
		entry, err := s.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			log.InfoContext(ctx, "fire of a deleted schedule: nothing to start")
			return w.settle(msg, ack)
		}
		if err != nil {
			return fmt.Errorf("read schedule %s: %w", id, err)
		}
		var rec schedule.Record
		comp, cerr := schedule.Compiled{}, json.Unmarshal(entry.Value(), &rec)
		if cerr == nil {
			comp, cerr = schedule.Compile(rec.Schedule)
		}
		if cerr != nil {
			// Written past the tools' checks: a retry would not mend it.
			s.errors.Add(ctx, 1, metric.WithAttributes(attrScheduleError.String(errorUnusable)))
			log.ErrorContext(ctx, "fire of an unusable schedule: nothing started", "error", cerr)
			return w.settle(msg, ack)
		}
		plan := schedule.Fire(comp, rec, at, w.cfg.ScheduleCatchUp)
		if len(plan.Starts) == 0 && plan.Next.LastFire.Equal(rec.LastFire) {
			return w.settle(msg, ack) // paused, or a fire seen before
		}
		for _, st := range plan.Starts {
			if err := w.submit(ctx, st.Request); err != nil {
				return fmt.Errorf("schedule %s, period %s: %w", id, st.Period.Key, err)
			}
		}
		data, _ := json.Marshal(plan.Next)
		if _, err := s.kv.Update(ctx, id, data, entry.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // changed meanwhile: plan again from what is stored
			}
			return fmt.Errorf("store schedule %s: %w", id, err)
		}
		for _, st := range plan.Starts {
			s.requests.Add(ctx, 1, metric.WithAttributes(attrHow.String(st.How)))
			log.InfoContext(ctx, "schedule started a request", "period", st.Period.Key, "request_id", st.Request.ID, "how", st.How)
		}
		if plan.Skipped > 0 {
			s.missed.Add(ctx, int64(plan.Skipped))
			log.WarnContext(ctx, "missed fires beyond schedule-catch-up left out; backfill them", "left_out", plan.Skipped)
		}
		return w.settle(msg, ack)
	}
	return fmt.Errorf("schedule %s kept changing", id)
}

// keepFire keeps a fire that kept failing in the dead-letter stream, on
// <prefix>.deadletter.~fire.<seq>, with why; there is no operation to end
// and no request to fail: the schedule's record still shows the fires
// before it, so its next fire starts the periods this one would have. It
// reports false when the copy could not be written (the fire comes back).
func (w *Worker) keepFire(ctx context.Context, msg jetstream.Msg, failed messages.Failed) bool {
	id := msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:]
	if _, _, err := w.keepOn(ctx, msg, w.subj.FireDeadLetter, attrKindFire, failed); err != nil {
		w.log.WarnContext(ctx, "dead-letter a schedule's fire", "schedule", id, "error", err)
		return false
	}
	if w.sched != nil {
		w.sched.errors.Add(ctx, 1, metric.WithAttributes(attrScheduleError.String(errorFireFailed)))
	}
	w.log.ErrorContext(ctx, "schedule fire dead-lettered", "schedule", id, "error", failed.Message)
	return true
}

// submit publishes a schedule's request with its message id, as any
// producer would.
func (w *Worker) submit(ctx context.Context, req messages.Request) error {
	m := nats.NewMsg(w.subj.Request(req.Kind))
	m.Data, _ = json.Marshal(req)
	telemetry.Inject(ctx, m.Header)
	_, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID(messages.DedupID(req)))
	return err
}
