package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// This file is the runner's intake: it turns messages into the operation
// machine's events and hands the machine's steps to carry (carry.go),
// which stores them, calls Azure (call.go), archives (archive.go),
// schedules and publishes (publish.go), and settles the message
// (settle.go). The decisions themselves are in package operation.

// wake is the body of a scheduled poll: which operation, and which of its
// wake-ups (a wake-up whose number is not the stored one is stale), and
// when its poll is due (absent from wake-ups scheduled by earlier
// versions): a wake-up the server fires before that is held until then
// without loading anything (hold.go).
type wake struct {
	ID   string     `json:"id"`
	Wake uint64     `json:"wake"`
	Due  *time.Time `json:"due,omitempty"`
}

// handleRequest takes a download request: it validates it (dead-lettering
// an invalid one), then starts its operation, or resumes the stored one
// when the request was seen before.
func (w *Worker) handleRequest(ctx context.Context, msg jetstream.Msg) error {
	ctx, span := w.startProcess(ctx, msg, RequestsConsumer)
	defer span.End()
	req, err := messages.DecodeRequest(msg.Data(), w.cfg.MaxRequestBytes)
	w.m.received.Add(ctx, 1, kindOption(req.Kind))
	if span.IsRecording() {
		span.SetAttributes(attrRequestID.String(messages.IDToken(req.ID)), kindAttr(req.Kind))
	}
	if err != nil {
		failed := messages.Failed{Code: messages.CodeInvalidRequest, Message: err.Error()}
		var ve *messages.ValidationError
		if errors.As(err, &ve) {
			failed.Fields = ve.Fields
		}
		w.deadLetter(ctx, msg, req, failed)
		return nil
	}
	log := w.log.With("request_id", req.ID, "kind", string(req.Kind))
	if _, ok := w.client(req); !ok {
		w.deadLetter(ctx, msg, req, messages.Failed{
			Code:    messages.CodeUnknownProfile,
			Message: fmt.Sprintf("credential profile %q is not configured on this worker", req.Profile),
		})
		return nil
	}
	// A new operation, created claimed; when the id has one already (a
	// redelivery, a resubmission) the create fails and the stored one
	// decides. No lookup on the common path.
	step := w.machine.Accept(req, traceOf(ctx), w.now())
	return w.carry(ctx, msg, *step.Next, step, 0, operation.Delivery{Request: &req}, log)
}

// handlePoll takes a wake-up that fell due.
func (w *Worker) handlePoll(ctx context.Context, msg jetstream.Msg) error {
	var wk wake
	if err := json.Unmarshal(msg.Data(), &wk); err != nil || !messages.ValidID(wk.ID) {
		w.log.ErrorContext(ctx, "dropping an unreadable wake-up", "subject", msg.Subject(), "error", err)
		_ = w.settle(msg, w.machine.Stray(false))
		return nil
	}
	ctx, span := w.startProcess(ctx, msg, PollsConsumer)
	defer span.End()
	span.SetAttributes(attrRequestID.String(wk.ID))
	log := w.log.With("request_id", wk.ID)
	entry, err := w.kv.Get(ctx, wk.ID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		log.WarnContext(ctx, "wake-up for an operation with no state (expired?)")
		_ = w.settle(msg, w.machine.Stray(true))
		return nil
	case err != nil:
		return fmt.Errorf("load state: %w", err)
	}
	return w.resume(ctx, msg, entry, operation.Delivery{Wake: wk.Wake}, log)
}

// resume lets the stored state decide what a delivery does.
func (w *Worker) resume(ctx context.Context, msg jetstream.Msg, entry jetstream.KeyValueEntry, d operation.Delivery, log *slog.Logger) error {
	st, err := decode(entry)
	if err != nil {
		return err
	}
	d.Acting = w.calls.count(st.Request.ID) > 0
	return w.carry(ctx, msg, st, w.machine.Resume(st, d, w.now()), entry.Revision(), d, log)
}

func (w *Worker) client(req messages.Request) (Azure, bool) {
	name := req.Profile
	if name == "" {
		name = w.profiles.Default
	}
	c, ok := w.profiles.Clients[name]
	return c, ok
}
