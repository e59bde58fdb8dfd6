package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/billing"
)

// This file makes the Azure calls the machine decides, and describes
// their results to it.

// unansweredTimeout bounds telling the throttle about a call cut off.
const unansweredTimeout = 2 * time.Second

// call makes the call that st (stored claimed) is due, and returns the
// machine's step for its answer, or for the shutdown cutting it off.
func (w *Worker) call(ctx context.Context, st operation.State, log *slog.Logger) operation.Step {
	client, _ := w.client(st.Request)
	observed := false
	defer func() {
		if !observed {
			// No answer to tell the throttle: the call panicked, or the
			// shutdown cut it off (the context is gone, so a short one
			// of its own).
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), unansweredTimeout)
			defer cancel()
			w.unanswered(bg, w.scopeOf(&st), log)
		}
	}()
	// Later calls continue the trace from this attempt.
	tr := traceOf(ctx)
	st.TraceParent, st.TraceState = tr.Parent, tr.State
	var (
		resp *billing.Response
		err  error
	)
	// No call outlives the operation's deadline; none starts at it.
	start := w.now()
	late := w.machine.Late(st, start)
	if !late {
		if !st.NextAt.IsZero() {
			w.m.late.Record(ctx, start.Sub(st.NextAt).Seconds(), kindOption(st.Request.Kind))
		}
		call, cancel := context.WithDeadline(ctx, st.Deadline)
		if st.Location != "" {
			resp, err = client.Poll(call, st.CallKind(), st.Location)
		} else {
			resp, err = client.Start(call, st.CallKind(), st.Request.Params)
		}
		cancel()
	}
	if err != nil && ctx.Err() != nil {
		// Cut off by the shutdown: leave the claim; once it expires the
		// operation is taken over.
		log.WarnContext(ctx, "azure call cancelled by shutdown")
		return w.machine.Interrupted()
	}
	a := answerOf(resp, err, late)
	observed = true
	if late {
		w.unanswered(ctx, w.scopeOf(&st), log)
	} else {
		w.observe(ctx, &st, &a, log)
	}
	// The machine works out whether the operation's deadline, not
	// http-timeout, cut the call short.
	step := w.machine.Answered(st, a, start, w.now())
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
	return step
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
			Invoice: r.Invoice, Invoices: r.Invoices, NextLink: r.NextLink, Items: r.Items,
			Files: r.Files, Manifest: r.Manifest, SecondaryURL: r.SecondaryURL, NoData: r.NoData,
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
