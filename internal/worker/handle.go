package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// This file is the runner: it turns messages into the operation machine's
// events, and carries out the steps the machine decides (store, call Azure,
// schedule, publish, settle the message). The decisions themselves are in
// package operation.

// wake is the body of a scheduled poll: which operation, and which of its
// wake-ups (a wake-up whose number is not the stored one is stale).
type wake struct {
	ID   string `json:"id"`
	Wake uint64 `json:"wake"`
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
		_ = msg.Term()
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
		_ = msg.Ack()
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
	calls := ctx // Azure calls end with the shutdown; what follows them does not
	id, held := cur.Request.ID, false
	regate := false // a call decided after an archive, not yet past the throttle
	defer func() {
		if held {
			w.calls.done(id)
		}
	}()
	for redecided := 0; ; {
		if err := w.prepare(ctx, step); err != nil {
			return err // the redelivery decides again
		}
		if step.Action == operation.Call && (!held || regate) && w.thr != nil {
			regate = false
			// The shared throttle may hold the call back: then the
			// operation waits for it instead.
			var h operation.Hold
			var wait bool
			if calls, h, wait = w.gate(calls, &cur, step.Next, log); wait {
				step = w.machine.Defer(*step.Next, h, w.now())
				log.DebugContext(ctx, "held by the shared throttle", "scope", h.Scope, "until", h.Until, "paused_until", h.PausedUntil)
			}
		}
		if step.Next != nil {
			if (step.Action == operation.Call || step.Action == operation.Archive) && !held {
				// Acting from before the claim is stored until the answer
				// is: no other delivery in this process may take the claim
				// for an orphan meanwhile.
				w.calls.add(id)
				held = true
			}
			next, found, err := w.put(ctx, step.Next, rev)
			if errors.Is(err, errConflict) && found != nil && redecided < maxRedecide {
				redecided++
				if cur, err = decode(found); err != nil {
					return err
				}
				log.DebugContext(ctx, "the state changed meanwhile; deciding again", "phase", string(cur.Phase))
				others := w.calls.count(id)
				if held {
					others-- // this delivery's own
				}
				d.Acting = others > 0
				step, rev = w.machine.Resume(cur, d, w.now()), found.Revision()
				continue
			}
			if err != nil {
				return err // the redelivery decides from what is stored
			}
			cur, rev = *step.Next, next
			if cur.Phase.Terminal() {
				w.m.ended(ctx, &cur)
				w.am.ended(ctx, &cur)
			}
		}
		switch step.Action {
		case operation.Call:
			if !w.now().Add(w.cfg.HTTPTimeout).Before(cur.ClaimedUntil) && redecided < maxRedecide {
				// Storing the claim took so long that it would run out
				// during the call, and another worker could take over:
				// renew it first.
				redecided++
				step = w.machine.Reclaim(cur, w.now())
				continue
			}
			var ok bool
			if step, ok = w.call(calls, msg, cur, log); !ok {
				return nil
			}
			// Azure's answer is not thrown away lightly: store it even if
			// the shutdown cuts in.
			ctx = context.WithoutCancel(calls)
			continue
		case operation.Archive:
			var ok bool
			if step, rev, ok = w.archive(calls, msg, cur, rev, log); !ok {
				return nil
			}
			// A new link is the first call again: through the throttle.
			regate = step.Action == operation.Call
			// The outcome is stored even if the shutdown cuts in.
			ctx = context.WithoutCancel(calls)
			continue
		case operation.Schedule:
			if err := w.schedule(ctx, &cur); err != nil {
				return err // the redelivery finds it waiting and schedules again
			}
			_ = msg.Ack()
		case operation.Publish, operation.Republish:
			return w.finish(ctx, msg, &cur, step.Action == operation.Republish, log)
		case operation.Ack:
			_ = msg.Ack()
		case operation.Retry:
			_ = msg.NakWithDelay(step.Delay)
		case operation.Spawn:
			_ = msg.Ack()
		case operation.Finish:
			ends, err := w.gather(ctx, &cur)
			if err != nil {
				return err
			}
			step = w.machine.Finish(cur, ends, w.now())
			continue
		case operation.Conflict:
			w.deadLetter(ctx, msg, *d.Request, messages.Failed{
				Code: messages.CodeIDConflict,
				Message: fmt.Sprintf("request id %q is taken by a %s request with other parameters (accepted %s); "+
					"only an identical resubmission (same kind, profile and params) gets its outcome: use a new id",
					d.Request.ID, cur.Request.Kind, cur.AcceptedAt.Format(time.RFC3339)),
			})
		}
		return nil
	}
}

// call makes the call that st (stored claimed) is due, and returns the
// machine's step for its answer. It returns false when the shutdown cut
// the call off; the message is then taken care of.
func (w *Worker) call(ctx context.Context, msg jetstream.Msg, st operation.State, log *slog.Logger) (operation.Step, bool) {
	client, _ := w.client(st.Request)
	// Later calls continue the trace from this attempt.
	tr := traceOf(ctx)
	st.TraceParent, st.TraceState = tr.Parent, tr.State
	var (
		resp *billing.Response
		err  error
	)
	// No call outlives the operation's deadline; none starts at it.
	start := w.now()
	late := !start.Before(st.Deadline)
	if !late {
		call, cancel := context.WithDeadline(ctx, st.Deadline)
		if st.Location != "" {
			resp, err = client.Poll(call, st.Request.CallKind(), st.Location)
		} else {
			resp, err = client.Start(call, st.Request.CallKind(), st.Request.Params)
		}
		cancel()
	}
	if err != nil && ctx.Err() != nil {
		// Cut off by the shutdown: leave the claim; once it expires the
		// operation is taken over.
		log.WarnContext(ctx, "azure call cancelled by shutdown")
		_ = msg.NakWithDelay(w.cfg.ClaimDuration())
		return operation.Step{}, false
	}
	a := answerOf(resp, err, late)
	if !late {
		w.observe(ctx, &st, &a, log)
	}
	// The operation's deadline, not http-timeout, bounded this call, and it
	// ended without an answer when (or just before, for the token: see
	// billing.AuthFailureMargin) the deadline ran out. The error only says
	// that time ran out; the failure before it says more.
	if a.Outcome == operation.NoAnswer || a.Outcome == operation.AuthUnavailable {
		bound := st.Deadline.Before(start.Add(w.cfg.HTTPTimeout))
		a.CutAtDeadline = bound && !w.now().Before(st.Deadline.Add(-billing.AuthFailureMargin))
	}
	step := w.machine.Answer(st, a, w.now())
	next := step.Next
	if !late {
		w.m.call(ctx, st.Request.Kind, next.LastStatus, err)
	}
	annotate(ctx, next)
	switch {
	case next.Phase == operation.PhaseWaiting:
		log.InfoContext(ctx, "waiting", "status", next.LastStatus, "next_at", next.NextAt, "wait", next.LastWait.String(),
			"wait_source", next.LastWaitSource, "azure_calls", next.AzureCalls, "error", next.LastError)
	case next.Completed != nil:
		log.InfoContext(ctx, "operation completed", "azure_calls", next.AzureCalls)
	}
	return step, true
}

// answerOf describes a call's result for the machine: the one place where
// the Azure client's errors are read.
func answerOf(resp *billing.Response, err error, late bool) operation.Answer {
	switch {
	case late:
		return operation.Answer{Outcome: operation.Late}
	case err == nil && resp.Done():
		r := resp.Result
		return operation.Answer{Outcome: operation.Done, Status: resp.Status, Header: resp.Header, Result: &operation.Result{
			URL: r.URL, ExpiryTime: r.ExpiryTime, ValidTill: r.ValidTill, DownloadFileProperties: r.DownloadFileProperties,
			Invoice: r.Invoice, Invoices: r.Invoices, NextLink: r.NextLink,
		}}
	case err == nil:
		return operation.Answer{Outcome: operation.Running, Status: resp.Status, Header: resp.Header, Location: resp.Location}
	}
	var (
		re *billing.ResponseError
		le *billing.LocationError
		me *billing.MalformedError
		ae *billing.AuthError
	)
	a := operation.Answer{Outcome: operation.NoAnswer, Error: redact.String(err.Error())}
	switch {
	case errors.As(err, &ae):
		a.Outcome = operation.AuthUnavailable
		if ae.Permanent {
			a.Outcome = operation.AuthRefused
		}
	case errors.As(err, &re):
		a.Status, a.Header = re.Azure.Status, re.Header
		switch {
		case re.Transient() && re.Throttled():
			a.Outcome = operation.Throttled
		case re.Transient():
			a.Outcome = operation.Transient
		case re.Denied():
			a.Outcome, a.Azure = operation.Denied, &re.Azure
		default:
			a.Outcome, a.Azure = operation.Refused, &re.Azure
		}
	case errors.As(err, &le):
		a.Outcome = operation.LocationRefused
	case errors.As(err, &me):
		a.Outcome, a.Status = operation.Malformed, me.Status
	}
	return a
}

// acting counts, per operation, the deliveries of this process that are
// calling Azure for it (from storing the claim to storing the answer).
type acting struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *acting) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[id]++
}

func (a *acting) done(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[id]--; a.n[id] <= 0 {
		delete(a.n, id)
	}
}

func (a *acting) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[id]
}

// finish publishes the stored outcome of a terminal operation and
// acknowledges msg. again is true when the operation had ended before this
// delivery: its event may be stored already.
func (w *Worker) finish(ctx context.Context, msg jetstream.Msg, st *operation.State, again bool, log *slog.Logger) error {
	if err := w.publishOutcome(ctx, st, again); err != nil {
		return err // the redelivery publishes it again
	}
	if st.Failed != nil && !again {
		log.InfoContext(ctx, "operation failed", "code", string(st.Failed.Code), "azure_calls", st.AzureCalls, "error", st.Failed.Message)
	}
	_ = msg.Ack()
	return nil
}

func (w *Worker) client(req messages.Request) (Azure, bool) {
	name := req.Profile
	if name == "" {
		name = w.profiles.Default
	}
	c, ok := w.profiles.Clients[name]
	return c, ok
}
