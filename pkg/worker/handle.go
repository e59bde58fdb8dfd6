package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/operation"
	"github.com/azbilling/worker/pkg/poll"
	"github.com/azbilling/worker/pkg/redact"
)

// wake is the body of a scheduled poll: which operation, and which of its
// wake-ups (a wake-up whose number is not the stored one is stale).
type wake struct {
	ID   string `json:"id"`
	Wake uint64 `json:"wake"`
}

// handleRequest takes a download request: it validates it (dead-lettering
// an invalid one), then starts its operation, or resumes the stored one
// when the request was seen before.
func (w *Worker) handleRequest(ctx context.Context, msg jetstream.Msg) {
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
		return
	}
	log := w.log.With("request_id", req.ID, "kind", string(req.Kind))
	if _, ok := w.client(req); !ok {
		w.deadLetter(ctx, msg, req, messages.Failed{
			Code:    messages.CodeUnknownProfile,
			Message: fmt.Sprintf("credential profile %q is not configured on this worker", req.Profile),
		})
		return
	}
	w.start(ctx, msg, req, log)
}

// start stores a new operation, claimed by this worker, and makes its first
// call; or, when the request id already has an operation (a redelivery, a
// duplicate), resumes that one. Create fails on an existing key, so this
// costs no lookup on the common path.
func (w *Worker) start(ctx context.Context, msg jetstream.Msg, req messages.Request, log *slog.Logger) {
	now := w.now()
	st := operation.NewState(req, now, w.cfg.DefaultDeadline, w.cfg.MaxDeadline)
	st.TraceParent, st.TraceState = traceContext(ctx)
	expired := !st.Deadline.After(now)
	if expired {
		w.fail(&st, messages.CodeTimeout, "the request's deadline had passed when it was accepted", nil, true, now)
	} else {
		w.claim(&st, now)
	}
	rev, found, err := w.put(ctx, &st, 0)
	switch {
	case errors.Is(err, errConflict) && found != nil:
		stored, derr := decode(found)
		if derr == nil && !messages.SameOperation(stored.Request, req) {
			w.deadLetter(ctx, msg, req, messages.Failed{
				Code: messages.CodeIDConflict,
				Message: fmt.Sprintf("request id %q is taken by a %s request with other parameters (accepted %s); "+
					"only an identical resubmission (same kind, profile and params) gets its outcome: use a new id",
					req.ID, stored.Request.Kind, stored.AcceptedAt.Format(time.RFC3339)),
			})
			return
		}
		log.InfoContext(ctx, "request seen before: resuming its operation")
		w.resume(ctx, msg, found, nil, log)
		return
	case err != nil:
		log.WarnContext(ctx, "store new state", "error", err)
		w.retryLater(ctx, msg, err)
		return
	}
	log.InfoContext(ctx, "request accepted", "deadline", st.Deadline)
	if expired {
		w.m.ended(ctx, &st)
		w.finish(ctx, msg, &st, false, log)
		return
	}
	w.act(ctx, msg, &st, rev, nil, log)
}

// handlePoll takes a wake-up that fell due.
func (w *Worker) handlePoll(ctx context.Context, msg jetstream.Msg) {
	var wk wake
	if err := json.Unmarshal(msg.Data(), &wk); err != nil || !messages.ValidID(wk.ID) {
		w.log.ErrorContext(ctx, "dropping an unreadable wake-up", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	ctx, span := w.startProcess(ctx, msg, PollsConsumer)
	defer span.End()
	span.SetAttributes(attrRequestID.String(wk.ID))
	log := w.log.With("request_id", wk.ID)
	entry, err := w.kv.Get(ctx, wk.ID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		log.WarnContext(ctx, "wake-up for an operation with no state (expired?)")
		_ = msg.Ack()
	case err != nil:
		log.WarnContext(ctx, "load state", "error", err)
		w.retryLater(ctx, msg, err)
	default:
		w.resume(ctx, msg, entry, &wk, log)
	}
}

// maxRedecide bounds how often one delivery decides again after finding
// the state changed under it; past that the message comes back later.
const maxRedecide = 3

// resume continues a stored operation. wk is the wake-up being handled, or
// nil for a request seen again.
func (w *Worker) resume(ctx context.Context, msg jetstream.Msg, entry jetstream.KeyValueEntry, wk *wake, log *slog.Logger) {
	for range maxRedecide {
		next, done := w.decide(ctx, msg, entry, wk, log)
		if done {
			return
		}
		entry = next
	}
	w.retryLater(ctx, msg, errConflict)
}

// decide takes the step the stored state calls for. When it finds that
// the state changed under it, it returns the entry stored now and false,
// and the caller decides again from that entry.
func (w *Worker) decide(ctx context.Context, msg jetstream.Msg, entry jetstream.KeyValueEntry, wk *wake, log *slog.Logger) (jetstream.KeyValueEntry, bool) {
	st, err := decode(entry)
	if err != nil {
		log.ErrorContext(ctx, "load state", "error", err)
		w.retryLater(ctx, msg, err)
		return nil, true
	}
	log = log.With("kind", string(st.Request.Kind))
	now := w.now()
	current := wk != nil && wk.Wake == st.Wake
	// A claim this process holds but is not acting on is left over from
	// one of its own writes that timed out and landed later: void.
	orphan := st.Phase.Claimed() && st.ClaimedBy == w.id && !w.acting(st.Request.ID)
	switch {
	case st.Phase.Terminal():
		// Publish again: the event may not have gone out before a crash, and
		// a resubmission's waiters want it.
		w.finish(ctx, msg, &st, true, log)
		return nil, true

	case st.Phase == operation.PhaseWaiting && current && !now.Before(st.NextAt),
		st.ClaimExpired(now) || orphan:
		if st.Phase.Claimed() {
			log.InfoContext(ctx, "taking over an expired claim", "claimed_by", st.ClaimedBy, "unanswered_calls", st.Unanswered)
		}
		if st.Location == "" && st.Unanswered >= w.cfg.MaxUnanswered {
			// Each of these first calls may have started an operation in
			// Azure; stop sending more.
			w.fail(&st, messages.CodeInterrupted, fmt.Sprintf("the first call to Azure went unanswered %d times (timeouts, "+
				"connection resets or a worker stopping mid-call); it is not sent again", st.Unanswered), nil, true, now)
			if _, found, err := w.put(ctx, &st, entry.Revision()); err != nil {
				return w.storeFailed(ctx, msg, found, err, log)
			}
			w.m.ended(ctx, &st)
			w.finish(ctx, msg, &st, false, log)
			return nil, true
		}
		w.claim(&st, now)
		rev, found, err := w.put(ctx, &st, entry.Revision())
		if err != nil {
			return w.storeFailed(ctx, msg, found, err, log)
		}
		w.act(ctx, msg, &st, rev, wk, log)
		return nil, true

	case st.Phase == operation.PhaseWaiting:
		// A request seen again, a stale or early wake-up: make sure the
		// pending wake-up exists (one per operation: a new schedule replaces
		// the old one), and drop this message.
		if err := w.schedule(ctx, &st); err != nil {
			w.retryLater(ctx, msg, err)
			return nil, true
		}
		_ = msg.Ack()
		return nil, true

	default: // claimed, and the claim holds
		if wk != nil && !current {
			_ = msg.Ack() // stale; the holder's own message comes back if it dies
			return nil, true
		}
		_ = msg.NakWithDelay(st.ClaimedUntil.Sub(now) + time.Second)
		return nil, true
	}
}

// storeFailed handles a write of the state that did not succeed: a
// conflict hands back the entry to decide again from; anything else sends
// the message back for a later delivery, where the stored state decides.
func (w *Worker) storeFailed(ctx context.Context, msg jetstream.Msg, found jetstream.KeyValueEntry, err error, log *slog.Logger) (jetstream.KeyValueEntry, bool) {
	if errors.Is(err, errConflict) && found != nil {
		log.DebugContext(ctx, "the state changed meanwhile; deciding again")
		return found, false
	}
	log.WarnContext(ctx, "store state", "error", err)
	w.retryLater(ctx, msg, err)
	return nil, true
}

// claim marks st as held by this worker for its next call. A first call
// is counted as unanswered until its answer is stored, so that a worker
// dying mid-call leaves it counted.
func (w *Worker) claim(st *operation.State, now time.Time) {
	st.Claim(w.id, now, now.Add(w.cfg.ClaimDuration()))
	if st.Location == "" {
		st.Unanswered++
	}
}

// acting reports whether this process is making a call for operation id.
func (w *Worker) acting(id string) bool {
	_, ok := w.calls.Load(id)
	return ok
}

// act makes the operation's next Azure call (st is claimed at revision
// rev), decides what follows, stores it and carries it out. wk is the
// wake-up being handled, nil for a request.
func (w *Worker) act(ctx context.Context, msg jetstream.Msg, st *operation.State, rev uint64, wk *wake, log *slog.Logger) {
	w.calls.Store(st.Request.ID, struct{}{})
	defer w.calls.Delete(st.Request.ID)
	client, _ := w.client(st.Request)
	req := st.Request
	var (
		resp *billing.Response
		err  error
	)
	// Later calls continue the trace from this attempt.
	st.TraceParent, st.TraceState = traceContext(ctx)
	// No call outlives the operation's deadline; none starts at it.
	polling := st.Location != ""
	late := !w.now().Before(st.Deadline)
	if !late {
		call, cancel := context.WithDeadline(ctx, st.Deadline)
		if polling {
			st.Polls++
			resp, err = client.Poll(call, req.Kind, st.Location)
		} else {
			resp, err = client.Start(call, req.Kind, req.Params)
		}
		cancel()
	}
	if err != nil && ctx.Err() != nil {
		// Cut off by the shutdown: leave the claim; once it expires the
		// operation is taken over. An answer that did arrive is kept below.
		log.WarnContext(ctx, "azure call cancelled by shutdown")
		_ = msg.NakWithDelay(w.cfg.ClaimDuration())
		return
	}
	now := w.now()
	if !late && !errors.Is(err, billing.ErrAuth) {
		st.AzureCalls++
	}
	if !polling && (late || answered(err)) {
		st.Unanswered = max(st.Unanswered-1, 0)
	}
	switch {
	case late || err != nil && !answered(err) && !now.Before(st.Deadline):
		// The deadline came before an answer: the operation times out, and
		// the failure stored before (if any) says what kept it from ending.
		if st.LastError == "" {
			st.LastError = "no answer from Azure before the deadline"
			st.LastErrorClass = operation.ClassTransport
		}
		w.wait(st, poll.ReasonTransient, nil, now)
	case err == nil && resp.Done():
		st.Started, st.LastStatus, st.LastError, st.LastErrorClass = true, http.StatusOK, "", ""
		st.Complete(w.completed(st, resp.Result, now), now)
		log.InfoContext(ctx, "operation completed", "azure_calls", st.AzureCalls)
	case err == nil:
		st.Started, st.LastStatus, st.LastError, st.LastErrorClass = true, resp.Status, "", ""
		st.Failures, st.BadAnswers = 0, 0
		if resp.Location != "" {
			st.Location = resp.Location
		}
		w.wait(st, poll.ReasonInProgress, resp.Header, now)
	default:
		w.classify(st, err, now)
	}
	w.m.call(ctx, req.Kind, st.LastStatus, err)
	annotate(ctx, st)
	if st.Phase == operation.PhaseWaiting {
		log.InfoContext(ctx, "waiting", "status", st.LastStatus, "next_at", st.NextAt, "wait", st.LastWait.String(),
			"wait_source", st.LastWaitSource, "azure_calls", st.AzureCalls, "error", st.LastError)
	}

	// Store the outcome, riding out a NATS outage: Azure's answer is not
	// thrown away lightly.
	store := context.WithoutCancel(ctx)
	if _, found, err := w.put(store, st, rev); err != nil {
		if errors.Is(err, errConflict) && found != nil {
			log.WarnContext(ctx, "the state changed while calling Azure; deciding again from the stored state")
			w.resume(store, msg, found, wk, log)
			return
		}
		log.ErrorContext(ctx, "store state", "error", err)
		w.retryLater(ctx, msg, err)
		return
	}
	if st.Phase.Terminal() {
		w.m.ended(ctx, st)
	}
	if st.Phase == operation.PhaseWaiting {
		if err := w.schedule(store, st); err != nil {
			log.WarnContext(ctx, "schedule", "error", err)
			w.retryLater(ctx, msg, err) // redelivery finds it waiting and schedules again
			return
		}
		_ = msg.Ack()
		return
	}
	w.finish(store, msg, st, false, log)
}

// answered reports whether a call's outcome is known: Azure answered (any
// status, or a body that did not parse), or the call was never sent (no
// token). Only a timeout or a broken connection leaves it unknown.
func answered(err error) bool {
	var (
		re *billing.ResponseError
		me *billing.MalformedError
	)
	return err == nil || errors.As(err, &re) || errors.As(err, &me) || errors.Is(err, billing.ErrAuth)
}

// classify turns a failed call into a wait or a failure.
func (w *Worker) classify(st *operation.State, err error, now time.Time) {
	var (
		re *billing.ResponseError
		le *billing.LocationError
		me *billing.MalformedError
		ae *billing.AuthError
	)
	st.LastError = redact.String(err.Error())
	st.LastStatus = 0
	st.LastErrorClass = operation.ClassTransport
	switch {
	case errors.As(err, &ae):
		st.LastErrorClass = operation.ClassAuth
		if ae.Permanent {
			w.fail(st, messages.CodeAuthFailed, st.LastError, nil, false, now)
			return
		}
		st.Failures++
		w.wait(st, poll.ReasonTransient, nil, now)
	case errors.As(err, &re):
		st.LastStatus = re.Azure.Status
		st.LastErrorClass = operation.ClassAzure
		switch {
		case re.Transient():
			st.Failures++
			reason := poll.ReasonTransient
			if re.Throttled() {
				reason = poll.ReasonThrottled
			}
			w.wait(st, reason, re.Header, now)
		case re.Denied():
			w.fail(st, messages.CodeAccessDenied, re.Error(), &re.Azure, false, now)
		default:
			w.fail(st, messages.CodeAzureError, re.Error(), &re.Azure, false, now)
		}
	case errors.As(err, &le):
		st.LastErrorClass = operation.ClassLocation
		w.fail(st, messages.CodeLocationRejected, le.Error(), nil, false, now)
	case errors.As(err, &me):
		st.LastStatus = me.Status
		st.LastErrorClass = operation.ClassMalformed
		st.BadAnswers++
		if me.Status == http.StatusAccepted || st.BadAnswers >= w.cfg.MaxBadAnswers {
			w.fail(st, messages.CodeBadResponse, me.Error(), nil, true, now)
			return
		}
		st.Failures++
		w.wait(st, poll.ReasonTransient, nil, now)
	default:
		st.Failures++
		w.wait(st, poll.ReasonTransient, nil, now)
	}
}

// wait asks the policy when to call again, or ends the operation when its
// deadline cannot be met.
func (w *Worker) wait(st *operation.State, reason poll.Reason, header http.Header, now time.Time) {
	d := w.policy.Next(poll.Input{
		Now: now, Deadline: st.Deadline, Reason: reason, Header: header, Failures: st.Failures,
	})
	if !d.GiveUp {
		st.Wait(d, now)
		return
	}
	code, msg := messages.CodeTimeout, fmt.Sprintf("the deadline %s passed before the operation finished", st.Deadline.Format(time.RFC3339))
	if d.Source != "" && d.Source != poll.SourceBackoff && d.Source != poll.SourceDefault {
		msg = fmt.Sprintf("Azure asked to wait (%s) past the deadline %s", d.Source, st.Deadline.Format(time.RFC3339))
	}
	if st.LastError != "" {
		msg += "; last error: " + st.LastError
		if st.LastErrorClass == operation.ClassAuth {
			code = messages.CodeAuthUnavailable
		}
	}
	w.fail(st, code, msg, nil, true, now)
}

func (w *Worker) fail(st *operation.State, code messages.Code, msg string, azure *messages.AzureError, retryable bool, now time.Time) {
	accepted := st.AcceptedAt
	st.Fail(messages.Failed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
		Code: code, Message: redact.String(msg), Azure: azure, Retryable: retryable,
		AcceptedAt: &accepted, FailedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}, now)
}

func (w *Worker) completed(st *operation.State, r *billing.Result, now time.Time) messages.Completed {
	return messages.Completed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
		URL: r.URL, ExpiryTime: r.ExpiryTime, ValidTill: r.ValidTill, Invoice: r.Invoice,
		AcceptedAt: st.AcceptedAt, CompletedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}
}

// finish publishes the stored outcome of a terminal operation and
// acknowledges msg. again is true when the operation had ended before this
// delivery: its event may be stored already.
func (w *Worker) finish(ctx context.Context, msg jetstream.Msg, st *operation.State, again bool, log *slog.Logger) {
	if err := w.publishOutcome(ctx, st, again); err != nil {
		log.WarnContext(ctx, "publish outcome", "error", err)
		w.retryLater(ctx, msg, err) // redelivery publishes it again
		return
	}
	if st.Failed != nil {
		log.InfoContext(ctx, "operation failed", "code", string(st.Failed.Code), "azure_calls", st.AzureCalls, "error", st.Failed.Message)
	}
	_ = msg.Ack()
}

func (w *Worker) client(req messages.Request) (Azure, bool) {
	name := req.Profile
	if name == "" {
		name = w.profiles.Default
	}
	c, ok := w.profiles.Clients[name]
	return c, ok
}
