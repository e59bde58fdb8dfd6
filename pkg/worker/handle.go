package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
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
		span.SetAttributes(attrRequestID.String(req.ID), kindAttr(req.Kind))
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
	st := poll.NewState(req, now, w.cfg.DefaultDeadline, w.cfg.MaxDeadline)
	st.TraceParent, st.TraceState = traceContext(ctx)
	expired := !st.Deadline.After(now)
	if expired {
		w.fail(&st, messages.CodeTimeout, "the request's deadline had passed when it was accepted", nil, true, now)
	} else {
		st.Claim(w.id, now, now.Add(w.cfg.ClaimDuration()))
	}
	rev, err := w.kv.Create(ctx, req.ID, encodeState(&st))
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		entry, gerr := w.kv.Get(ctx, req.ID)
		if gerr != nil {
			log.WarnContext(ctx, "load state", "error", gerr)
			w.retryLater(ctx, msg, gerr)
			return
		}
		log.InfoContext(ctx, "request seen before: resuming its operation")
		w.resume(ctx, msg, entry, nil, log)
		return
	case err != nil:
		log.WarnContext(ctx, "store new state", "error", err)
		w.retryLater(ctx, msg, err)
		return
	}
	log.InfoContext(ctx, "request accepted", "deadline", st.Deadline)
	if expired {
		w.m.ended(ctx, &st)
		w.finish(ctx, msg, &st, log)
		return
	}
	w.act(ctx, msg, &st, rev, log)
}

// handlePoll takes a wake-up that fell due.
func (w *Worker) handlePoll(ctx context.Context, msg jetstream.Msg) {
	var wk wake
	if err := json.Unmarshal(msg.Data(), &wk); err != nil || wk.ID == "" {
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

// resume continues a stored operation. wk is the wake-up being handled, or
// nil for a request seen again.
func (w *Worker) resume(ctx context.Context, msg jetstream.Msg, entry jetstream.KeyValueEntry, wk *wake, log *slog.Logger) {
	var st poll.State
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		log.ErrorContext(ctx, "stored state does not decode", "error", err)
		w.retryLater(ctx, msg, err)
		return
	}
	log = log.With("kind", string(st.Request.Kind))
	now := w.now()
	current := wk != nil && wk.Wake == st.Wake
	switch {
	case st.Phase.Terminal():
		// Publish again: the event may not have gone out before a crash; the
		// message id makes a second copy a no-op.
		w.finish(ctx, msg, &st, log)

	case st.Phase == poll.PhaseWaiting && current && !now.Before(st.NextAt):
		st.Claim(w.id, now, now.Add(w.cfg.ClaimDuration()))
		if rev, ok := w.update(ctx, msg, &st, entry.Revision(), log); ok {
			w.act(ctx, msg, &st, rev, log)
		}

	case st.Phase == poll.PhaseWaiting:
		// A request seen again, a stale or early wake-up: make sure the
		// pending wake-up exists (one per operation: a new schedule replaces
		// the old one), and drop this message.
		if err := w.schedule(ctx, &st); err != nil {
			w.retryLater(ctx, msg, err)
			return
		}
		_ = msg.Ack()

	case !st.ClaimExpired(now):
		if wk != nil && !current {
			_ = msg.Ack() // stale; the holder's own message comes back if it dies
			return
		}
		_ = msg.NakWithDelay(st.ClaimedUntil.Sub(now) + time.Second)

	case st.Phase == poll.PhaseStarting && !st.Started && billing.OperationFor(st.Request.Kind).LongRunning:
		// The worker that sent the first POST died before storing the answer.
		// Azure may have started the operation; a second POST could start
		// another, so the request ends here.
		log.WarnContext(ctx, "claim expired during the first call", "claimed_by", st.ClaimedBy)
		w.fail(&st, messages.CodeInterrupted, "a worker stopped while the first call to Azure was in flight; whether Azure started the operation is unknown, so it is not started again", nil, true, now)
		if _, ok := w.update(ctx, msg, &st, entry.Revision(), log); ok {
			w.m.ended(ctx, &st)
			w.finish(ctx, msg, &st, log)
		}

	default:
		// The claim's worker died while polling (or reading an invoice):
		// those calls are safe to repeat.
		log.InfoContext(ctx, "taking over an expired claim", "claimed_by", st.ClaimedBy)
		st.Claim(w.id, now, now.Add(w.cfg.ClaimDuration()))
		if rev, ok := w.update(ctx, msg, &st, entry.Revision(), log); ok {
			w.act(ctx, msg, &st, rev, log)
		}
	}
}

// update stores st over revision rev and returns the new revision. When it
// returns false the message is taken care of: another worker changed the
// state first (it owns the operation now; the message is acknowledged), or
// the store failed (the message comes back later).
func (w *Worker) update(ctx context.Context, msg jetstream.Msg, st *poll.State, rev uint64, log *slog.Logger) (uint64, bool) {
	next, err := w.kv.Update(ctx, st.Request.ID, encodeState(st), rev)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		log.DebugContext(ctx, "another worker changed the operation first")
		_ = msg.Ack()
		return 0, false
	case err != nil:
		w.retryLater(ctx, msg, err)
		return 0, false
	}
	return next, true
}

// act makes the operation's next Azure call (st is claimed at revision
// rev), decides what follows, stores it and carries it out.
func (w *Worker) act(ctx context.Context, msg jetstream.Msg, st *poll.State, rev uint64, log *slog.Logger) {
	client, _ := w.client(st.Request)
	req := st.Request
	var (
		resp *billing.Response
		err  error
	)
	// Later calls continue the trace from this attempt.
	st.TraceParent, st.TraceState = traceContext(ctx)
	polling := st.Location != ""
	if polling {
		st.Polls++
		resp, err = client.Poll(ctx, req.Kind, st.Location)
	} else {
		resp, err = client.Start(ctx, req.Kind, req.Params)
	}
	if err != nil && ctx.Err() != nil {
		// Cut off by the shutdown: leave the claim; once it expires the
		// operation is taken over (or, for a first POST, ends as
		// interrupted). An answer that did arrive is kept below.
		log.WarnContext(ctx, "azure call cancelled by shutdown")
		_ = msg.NakWithDelay(w.cfg.ClaimDuration())
		return
	}
	now := w.now()
	if !errors.Is(err, billing.ErrAuth) {
		st.AzureCalls++
	}
	switch {
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
	if st.Phase == poll.PhaseWaiting {
		log.InfoContext(ctx, "waiting", "status", st.LastStatus, "next_at", st.NextAt, "wait", st.LastWait.String(),
			"wait_source", st.LastWaitSource, "azure_calls", st.AzureCalls, "error", st.LastError)
	}

	// Store the outcome. A short in-process retry rides out a NATS blip;
	// the Azure answer is not thrown away lightly.
	store := context.WithoutCancel(ctx)
	err = backoff.Retry(func() error {
		_, err := w.kv.Update(store, req.ID, encodeState(st), rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(backoff.WithMaxRetries(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond)), 4), store))
	if errors.Is(err, jetstream.ErrKeyExists) {
		log.WarnContext(ctx, "lost the claim while calling Azure; another worker owns the operation now")
		_ = msg.Ack()
		return
	} else if err != nil {
		log.ErrorContext(ctx, "store state", "error", err)
		w.retryLater(ctx, msg, err)
		return
	}
	if st.Phase.Terminal() {
		w.m.ended(ctx, st)
	}
	if st.Phase == poll.PhaseWaiting {
		if err := w.schedule(store, st); err != nil {
			log.WarnContext(ctx, "schedule", "error", err)
			w.retryLater(ctx, msg, err) // redelivery finds it waiting and schedules again
			return
		}
		_ = msg.Ack()
		return
	}
	w.finish(store, msg, st, log)
}

// classify turns a failed call into a wait or a failure.
func (w *Worker) classify(st *poll.State, err error, now time.Time) {
	var (
		re *billing.ResponseError
		le *billing.LocationError
		me *billing.MalformedError
		ae *billing.AuthError
	)
	st.LastError = redact.String(err.Error())
	st.LastStatus = 0
	st.LastErrorClass = poll.ClassTransport
	switch {
	case errors.As(err, &ae):
		st.LastErrorClass = poll.ClassAuth
		if ae.Permanent {
			w.fail(st, messages.CodeAuthFailed, st.LastError, nil, false, now)
			return
		}
		st.Failures++
		w.wait(st, poll.ReasonTransient, nil, now)
	case errors.As(err, &re):
		st.LastStatus = re.Azure.Status
		st.LastErrorClass = poll.ClassAzure
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
		st.LastErrorClass = poll.ClassLocation
		w.fail(st, messages.CodeLocationRejected, le.Error(), nil, false, now)
	case errors.As(err, &me):
		st.LastStatus = me.Status
		st.LastErrorClass = poll.ClassMalformed
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
func (w *Worker) wait(st *poll.State, reason poll.Reason, header http.Header, now time.Time) {
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
		if st.LastErrorClass == poll.ClassAuth {
			code = messages.CodeAuthUnavailable
		}
	}
	w.fail(st, code, msg, nil, true, now)
}

func (w *Worker) fail(st *poll.State, code messages.Code, msg string, azure *messages.AzureError, retryable bool, now time.Time) {
	accepted := st.AcceptedAt
	st.Fail(messages.Failed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
		Code: code, Message: redact.String(msg), Azure: azure, Retryable: retryable,
		AcceptedAt: &accepted, FailedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}, now)
}

func (w *Worker) completed(st *poll.State, r *billing.Result, now time.Time) messages.Completed {
	return messages.Completed{
		Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
		URL: r.URL, ExpiryTime: r.ExpiryTime, ValidTill: r.ValidTill, Invoice: r.Invoice,
		AcceptedAt: st.AcceptedAt, CompletedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
	}
}

// finish publishes the stored outcome of a terminal operation and
// acknowledges msg.
func (w *Worker) finish(ctx context.Context, msg jetstream.Msg, st *poll.State, log *slog.Logger) {
	if err := w.publishOutcome(ctx, st); err != nil {
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

func encodeState(st *poll.State) []byte {
	b, err := json.Marshal(st)
	if err != nil {
		panic(fmt.Sprintf("encode state: %v", err)) // plain data: cannot happen
	}
	return b
}
