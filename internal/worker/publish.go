package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// schedule publishes the operation's pending wake-up for st.NextAt: a
// scheduled message on the operation's schedule subject for the second the
// server is to fire it (replacing any earlier one there) that the server
// moves to the polls subject when it falls due, poll-lead before st.NextAt
// (the machine's FireAt), to absorb the server's timer; the worker holds it
// the rest of the way (hold.go). Until then it holds no consumer slot.
func (w *Worker) schedule(ctx context.Context, st *operation.State) error {
	_, err := w.scheduleAt(ctx, st, w.machine.FireAt(st.NextAt), "")
	return err
}

// scheduleAt publishes the wake-up of st (its id, wake number and the time
// its poll is due, st.NextAt) for the server to fire at at, with the
// message id msgID when not empty (the stream then keeps one of several
// identical publishes). It reports whether the stream took it as a
// duplicate.
func (w *Worker) scheduleAt(ctx context.Context, st *operation.State, at time.Time, msgID string) (bool, error) {
	due := st.NextAt.UTC()
	body, _ := json.Marshal(wake{ID: st.Request.ID, Wake: st.Wake, Due: &due})
	m := nats.NewMsg(w.subj.Schedule(st.Request.ID, at))
	m.Data = body
	ctx, span := w.startSend(withStoredTrace(ctx, st), w.subj.Prefix+".internal.schedules", m.Subject)
	defer span.End()
	span.SetAttributes(attrRequestID.String(st.Request.ID), attrNextAt.String(at.UTC().Format(time.RFC3339Nano)))
	telemetry.Inject(ctx, m.Header) // the poll continues the trace from here
	// Not jetstream.WithScheduleAt: it formats whole seconds, which would
	// fire up to a second before the time Azure asked for. The server reads
	// RFC 3339 with fractional seconds.
	m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", w.subj.Polls())
	if msgID != "" {
		m.Header.Set(nats.MsgIdHdr, msgID)
	}
	ack, err := w.js.PublishMsg(ctx, m)
	if err != nil {
		return false, fmt.Errorf("schedule wake-up: %w", w.m.refusedWrite(ctx, writeSchedule, err))
	}
	return ack.Duplicate, nil
}

// publishOutcome publishes the completion or failure event stored in st,
// with the message id outcome.<id>. again is false when the operation
// ended in this delivery: the event is published and stored (a crash-retry
// within the duplicate window is dropped by its message id). again is true
// when the operation had ended before (a resubmission, a redelivery): the
// events stream may hold the event already, and must not hold it twice
// however long ago it was stored. If it holds it, the stored event goes out
// again to live subscribers only (publishLive); if not (it never went out
// before a crash, or it aged out or was deleted), it is published and
// stored as the first time.
func (w *Worker) publishOutcome(ctx context.Context, st *operation.State, again bool) error {
	outcome, ev := messages.OutcomeCompleted, any(st.Completed)
	if st.Failed != nil {
		outcome, ev = messages.OutcomeFailed, st.Failed
	}
	ctx = withStoredTrace(ctx, st)
	msgID := messages.OutcomeMsgID(st.Request.ID)
	if again {
		stored, err := w.storedEvent(ctx, w.subj.Event(outcome, st.Request.Kind, st.Request.ID), msgID)
		if err != nil {
			return fmt.Errorf("look up the stored %s event: %w", outcome, err)
		}
		if stored != nil {
			if err := w.publishLive(ctx, stored, msgID); err != nil {
				return err
			}
			return w.endedChild(ctx, st)
		}
	}
	if err := w.publishEvent(ctx, outcome, st.Request.Kind, st.Request.ID, msgID, ev); err != nil {
		return err
	}
	return w.endedChild(ctx, st)
}

// endedChild tells a child's collection that the child ended (after its
// event: a crash in between tells it on the redelivery).
func (w *Worker) endedChild(ctx context.Context, st *operation.State) error {
	if st.Request.Collection == nil {
		return nil
	}
	return w.notifyEnded(ctx, st.Request, st.Failed != nil)
}

// storedEvent returns the message the events stream holds on subject with
// the message id msgID, or nil if it holds none. That is nearly always the
// subject's last message; but the rejection of an invalid or conflicting
// request with the same id and kind (message id rejected.<seq>) shares a
// failure subject and may come after it, and then the subject's earlier
// messages are read too.
func (w *Worker) storedEvent(ctx context.Context, subject, msgID string) (*jetstream.RawStreamMsg, error) {
	stream, err := w.js.Stream(ctx, w.subj.EventsStream())
	if err != nil {
		return nil, err
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if last.Header.Get(jetstream.MsgIDHeader) == msgID {
		return last, nil
	}
	for seq := uint64(1); seq < last.Sequence; {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && m.Sequence >= last.Sequence) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		if m.Header.Get(jetstream.MsgIDHeader) == msgID {
			return m, nil
		}
		seq = m.Sequence + 1
	}
	return nil, nil
}

// liveOnly is the Nats-Expected-Stream of an event published for live
// subscribers only. No stream has this name (a stream name cannot hold a
// '.'), so the events stream's ingest refuses the message, standalone or
// clustered, before its duplicate check, while core subscribers of the
// subject receive it as any other message.
const liveOnly = "live-only.not-stored"

// publishLive sends a stored event again, as stored (subject, headers,
// body), to the subscribers of its subject, without a second copy in the
// events stream: a core publish (no reply, so no acknowledgement to wait
// for) that the stream refuses (liveOnly).
func (w *Worker) publishLive(ctx context.Context, stored *jetstream.RawStreamMsg, msgID string) error {
	m := nats.NewMsg(stored.Subject)
	m.Data = stored.Data
	for k, v := range stored.Header {
		m.Header[k] = v
	}
	m.Header.Set(jetstream.ExpectedStreamHeader, liveOnly)
	_, span := w.startSend(ctx, w.subj.Prefix+".events."+stored.Header.Get(messages.HeaderOutcome), m.Subject)
	defer span.End()
	span.SetAttributes(attrRequestID.String(stored.Header.Get(messages.HeaderRequestID)), semconv.MessagingMessageID(msgID))
	if err := w.nc.PublishMsg(m); err != nil {
		span.SetStatus(codes.Error, "publish failed")
		return fmt.Errorf("publish the stored event again: %w", err)
	}
	return nil
}

// publishEvent publishes an event in its own producer span, whose trace
// context the event carries on to its consumers.
func (w *Worker) publishEvent(ctx context.Context, outcome string, kind messages.Kind, id, msgID string, ev any) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	m := nats.NewMsg(w.subj.Event(outcome, kind, id))
	m.Data = body
	// An id or kind that breaks its rule never goes into a header as it
	// is; CloudEvents in binary content mode.
	for k, v := range w.subj.EventHeaders(outcome, kind, id, msgID, eventTime(ev)) {
		m.Header.Set(k, v)
	}
	ctx, span := w.startSend(ctx, w.subj.Prefix+".events."+outcome, m.Subject)
	defer span.End()
	span.SetAttributes(attrRequestID.String(messages.IDToken(id)), kindAttr(kind), semconv.MessagingMessageID(msgID))
	telemetry.Inject(ctx, m.Header)
	if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID)); err != nil {
		span.SetStatus(codes.Error, "publish failed")
		return fmt.Errorf("publish %s event: %w", outcome, w.m.refusedWrite(ctx, writeEvent, err))
	}
	return nil
}

// eventTime is when the event happened: its completedAt or failedAt.
func eventTime(ev any) time.Time {
	switch e := ev.(type) {
	case *messages.Completed:
		if e != nil {
			return e.CompletedAt
		}
	case messages.Completed:
		return e.CompletedAt
	case *messages.Failed:
		if e != nil {
			return e.FailedAt
		}
	case messages.Failed:
		return e.FailedAt
	}
	return time.Time{}
}

// maxHeaderText bounds the error text copied into a dead letter's header.
const maxHeaderText = 512

// deadLetter rejects msg (reject) and settles it.
func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, req messages.Request, failed messages.Failed) {
	_ = w.settle(msg, w.reject(ctx, msg, req, failed))
}

// reject keeps a rejected message, with its original payload and headers,
// in the dead-letter stream, publishes the failure event, counts and logs
// the rejection, tells the collection of a rejected child, and returns the
// step that terminates the message so it is never redelivered. If a
// publish fails, the step redelivers it later instead: nothing is dropped.
func (w *Worker) reject(ctx context.Context, msg jetstream.Msg, req messages.Request, failed messages.Failed) operation.Step {
	log := w.log.With("request_id", messages.IDToken(req.ID), "kind", messages.KindToken(req.Kind))
	seq, earlier, err := w.keep(ctx, msg, req, failed)
	if err != nil {
		log.WarnContext(ctx, "dead-letter", "error", err)
		return w.machine.Unsettled()
	}
	failed.Version, failed.ID, failed.Kind, failed.Labels = messages.Version, req.ID, req.Kind, req.Labels
	failed.FailedAt = w.now()
	failSpan(ctx, failed.Code)
	msgID := fmt.Sprintf("rejected.%d", seq)
	again := false
	if earlier {
		// An earlier delivery got as far as the dead letter; its event may
		// be stored too, and must not be twice.
		stored, err := w.storedEvent(ctx, w.subj.Event(messages.OutcomeFailed, req.Kind, req.ID), msgID)
		if err == nil && stored != nil {
			err = w.publishLive(ctx, stored, msgID)
		}
		if err != nil {
			log.WarnContext(ctx, "publish rejection", "error", err)
			return w.machine.Unsettled()
		}
		again = stored != nil
	}
	if !again {
		if err := w.publishEvent(ctx, messages.OutcomeFailed, req.Kind, req.ID, msgID, failed); err != nil {
			log.WarnContext(ctx, "publish rejection", "error", err)
			return w.machine.Unsettled()
		}
	}
	step := w.machine.Rejected(operation.Rejection{Code: failed.Code, Child: req.Collection != nil, Again: again})
	if step.Count {
		w.m.rejected(ctx, req.Kind, failed.Code)
		log.WarnContext(ctx, "request rejected", "code", string(failed.Code), "error", failed.Message)
	}
	if step.Notify {
		// After the event: a crash in between tells it on the redelivery.
		if err := w.notifyEnded(ctx, req, true); err != nil {
			log.WarnContext(ctx, "tell the collection", "error", err)
			return w.machine.Unsettled()
		}
	}
	return step
}

// keep copies msg, its payload and headers, to the dead-letter stream with
// why it was rejected, and returns its sequence in the work stream and
// whether an earlier delivery had kept it already. Each
// rejected message has a dead-letter subject of its own, written only if
// empty, so a message redelivered however late is kept once.
func (w *Worker) keep(ctx context.Context, msg jetstream.Msg, req messages.Request, failed messages.Failed) (seq uint64, earlier bool, err error) {
	return w.keepOn(ctx, msg, func(seq uint64) string { return w.subj.DeadLetter(req.Kind, seq) }, kindAttr(req.Kind), failed)
}

// keepOn is keep with the dead letter's subject (given the message's
// sequence) and its kind for the metric.
func (w *Worker) keepOn(ctx context.Context, msg jetstream.Msg, subject func(seq uint64) string, kind attribute.KeyValue, failed messages.Failed) (seq uint64, earlier bool, err error) {
	meta, err := msg.Metadata()
	if err != nil {
		return 0, false, fmt.Errorf("dead-letter: %w", err)
	}
	seq = meta.Sequence.Stream
	dl := nats.NewMsg(subject(seq))
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		if strings.HasPrefix(strings.ToLower(k), "nats-") {
			continue
		}
		dl.Header[k] = v
	}
	if id := msg.Headers().Get(messages.HeaderMsgID); id != "" {
		dl.Header.Set(messages.HeaderOrigMsgID, id)
	}
	reason := failed.Message
	if len(reason) > maxHeaderText {
		reason = reason[:maxHeaderText] + "..."
	}
	dl.Header.Set(messages.HeaderErrorCode, string(failed.Code))
	dl.Header.Set(messages.HeaderError, strings.ToValidUTF8(strings.NewReplacer("\r", " ", "\n", " ").Replace(reason), "?"))
	dl.Header.Set(messages.HeaderOrigSubject, msg.Subject())
	dl.Header.Set(messages.HeaderOrigSeq, strconv.FormatUint(seq, 10))
	_, err = w.js.PublishMsg(ctx, dl, jetstream.WithExpectLastSequencePerSubject(0))
	_ = w.m.refusedWrite(ctx, writeDeadLetter, err)
	if wrongLastSequence(err) {
		return seq, true, nil // kept by an earlier delivery
	} else if err != nil {
		return 0, false, err
	}
	w.m.deadLetters.Add(ctx, 1, metric.WithAttributes(kind, attrCode.String(string(failed.Code))))
	return seq, false, nil
}

// wrongLastSequence reports the error of a conditional publish whose
// subject already holds a message (code 10071, or 10164 from a replicated
// stream).
func wrongLastSequence(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
