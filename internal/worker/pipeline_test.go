package worker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

const eventTimeout = 20 * time.Second

func TestImmediateSuccessEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, kind := range devstack.ScriptedKinds() {
		t.Run(string(kind), func(t *testing.T) {
			inv := b.invoice()
			b.emu.Script(inv, emulator.OK())
			req := devstack.Sample(kind, b.id(), inv)
			req.Labels = map[string]string{"team": "finops"}
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want a completion, got failure %+v", o.Failed)
			}
			c := o.Completed
			if c.Kind != kind || c.AzureCalls != 1 || c.Labels["team"] != "finops" {
				t.Errorf("completion = %+v", c)
			}
			if kind.ReturnsURL() {
				// The emulator's transactions download names no expiry, as
				// the specification's example.
				noExpiry := kind == messages.KindInvoiceTransactions
				if !strings.Contains(c.URL, "sig=") || noExpiry != (c.ExpiryTime == nil) || !noExpiry && !c.ExpiryTime.After(time.Now()) {
					t.Errorf("url/expiry = %q %v", c.URL, c.ExpiryTime)
				}
			} else if c.Invoice == nil || c.Invoice.Name == "" || len(c.Invoice.Documents) == 0 || c.Invoice.Status == "" {
				t.Errorf("invoice = %+v", c.Invoice)
			}
			if kind == messages.KindInvoicePriceSheet && c.ValidTill == nil {
				t.Errorf("price sheet without validTill")
			}
			if (kind == messages.KindProfilePriceSheet || kind == messages.KindAccountPriceSheet) != (len(c.DownloadFileProperties) > 0) {
				t.Errorf("downloadFileProperties = %s", c.DownloadFileProperties)
			}
			if calls := b.emu.CallsFor(inv); len(calls) != 1 {
				t.Errorf("emulator saw %d calls, want 1", len(calls))
			}
		})
	}
}

func TestPollsUntilDoneEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, kind := range devstack.ScriptedKinds() {
		if kind == messages.KindInvoice {
			continue // not long-running
		}
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			const polls = 2
			b.emu.Script(inv, emulator.Accepted("1"), emulator.Accepted("1"), emulator.Accepted("1"), emulator.OK())
			req := devstack.Sample(kind, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want completion, got %+v", o.Failed)
			}
			calls := b.emu.CallsFor(inv)
			if len(calls) != polls+2 || o.Completed.AzureCalls != polls+2 {
				t.Fatalf("calls: emulator %d, event %d, want %d", len(calls), o.Completed.AzureCalls, polls+2)
			}
			assertNoEarlyPoll(t, calls, time.Second)
			if calls[0].Method != http.MethodPost || calls[1].Phase != "poll" {
				t.Errorf("first calls: %+v %+v", calls[0], calls[1])
			}
		})
	}
}

// assertNoEarlyPoll checks that each call came at least wait after the one
// before (the emulator logs the time each call arrived).
func assertNoEarlyPoll(t *testing.T, calls []emulator.Call, wait time.Duration) {
	t.Helper()
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].Time.Sub(calls[i-1].Time); gap < wait {
			t.Errorf("call %d came %s after the one before, earlier than %s", i, gap, wait)
		}
	}
}

func TestRetryAfterForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name  string
		reply func() emulator.Reply
		wait  time.Duration
	}{
		{"seconds", func() emulator.Reply { return emulator.Accepted("2") }, 2 * time.Second},
		// The date is set when the case starts, before the request is even
		// submitted, and is whole seconds: 5 s ahead leaves at least 2 s
		// after the first call even when that call comes 2 s late (seen
		// with many tests at once).
		{"http-date", func() emulator.Reply {
			return emulator.AcceptedWith(map[string]string{"Retry-After": time.Now().Add(5 * time.Second).UTC().Format(http.TimeFormat)})
		}, 2 * time.Second},
		{"retry-after-ms", func() emulator.Reply {
			return emulator.AcceptedWith(map[string]string{"retry-after-ms": "1500"})
		}, 1500 * time.Millisecond},
		{"x-ms-retry-after-ms", func() emulator.Reply {
			return emulator.AcceptedWith(map[string]string{"x-ms-retry-after-ms": "1200"})
		}, 1200 * time.Millisecond},
		{"429 consumption", func() emulator.Reply {
			return emulator.Throttled(http.StatusTooManyRequests, "x-ms-ratelimit-microsoft.consumption-retry-after", "2")
		}, 2 * time.Second},
		{"429 costmanagement qpu", func() emulator.Reply {
			return emulator.Throttled(http.StatusTooManyRequests, "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after", "2")
		}, 2 * time.Second},
		{"429 retry-after", func() emulator.Reply {
			return emulator.Throttled(http.StatusTooManyRequests, "Retry-After", "1")
		}, time.Second},
		{"503 retry-after", func() emulator.Reply {
			return emulator.Throttled(http.StatusServiceUnavailable, "Retry-After", "1")
		}, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			b.emu.Script(inv, c.reply(), emulator.OK())
			req := devstack.Sample(messages.KindInvoicePriceSheet, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			if o.Completed == nil {
				t.Fatalf("want completion, got %+v", o.Failed)
			}
			calls := b.emu.CallsFor(inv)
			if len(calls) != 2 {
				t.Fatalf("%d calls, want 2", len(calls))
			}
			assertNoEarlyPoll(t, calls, c.wait)
		})
	}
}

func TestThrottledThenSuccessEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, kind := range devstack.ScriptedKinds() {
		for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
			t.Run(string(kind)+"/"+http.StatusText(status), func(t *testing.T) {
				t.Parallel()
				inv := b.invoice()
				b.emu.Script(inv, emulator.Throttled(status, "Retry-After", "1"), emulator.OK())
				req := devstack.Sample(kind, b.id(), inv)
				b.submit(req)
				o := b.wait(req.ID, eventTimeout)
				if o.Completed == nil || o.Completed.AzureCalls != 2 {
					t.Fatalf("want completion after 2 calls, got %+v %+v", o.Completed, o.Failed)
				}
			})
		}
	}
}

func TestAzureErrorEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		status int
		code   string
		want   messages.Code
	}{
		{http.StatusBadRequest, "InvalidInvoiceName", messages.CodeAzureError},
		{http.StatusNotFound, "InvoiceNotFound", messages.CodeAzureError},
		{http.StatusForbidden, "AuthorizationFailed", messages.CodeAccessDenied},
	}
	for _, kind := range devstack.ScriptedKinds() {
		for _, c := range cases {
			t.Run(string(kind)+"/"+c.code, func(t *testing.T) {
				t.Parallel()
				inv := b.invoice()
				b.emu.Script(inv, emulator.Fail(c.status, c.code, "the emulator says no"))
				req := devstack.Sample(kind, b.id(), inv)
				b.submit(req)
				o := b.wait(req.ID, eventTimeout)
				f := o.Failed
				if f == nil {
					t.Fatalf("want failure, got %+v", o.Completed)
				}
				if f.Code != c.want || f.Azure == nil || f.Azure.Code != c.code || f.Azure.Status != c.status || f.Retryable {
					t.Errorf("failure = %+v azure %+v", f, f.Azure)
				}
				if f.Azure.Message != "the emulator says no" {
					t.Errorf("azure message = %q", f.Azure.Message)
				}
			})
		}
	}
}

func TestDeadlineEndsInTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("1"))
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	deadline := time.Now().Add(2500 * time.Millisecond)
	req.Deadline = &deadline
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeTimeout || !o.Failed.Retryable {
		t.Fatalf("want timeout failure, got %+v %+v", o.Completed, o.Failed)
	}
	// It ends at the deadline, or as soon as Azure's Retry-After (1 s) would
	// carry the next poll past it.
	if o.Failed.FailedAt.Before(deadline.Add(-time.Second)) {
		t.Errorf("failed at %s, more than the Retry-After before the deadline %s", o.Failed.FailedAt, deadline)
	}
	if n := len(b.emu.CallsFor(inv)); n < 2 {
		t.Errorf("only %d calls before the deadline", n)
	}
}

func TestDuplicateRequestGetsTheSameAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	b.emu.Script(inv, emulator.Accepted("1"), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
	b.submit(req)
	first := b.wait(req.ID, eventTimeout)
	if first.Completed == nil {
		t.Fatalf("want completion, got %+v", first.Failed)
	}
	// Past the stream's duplicate window a resubmission reaches the worker;
	// publish it on the raw subject with a fresh message id to get there.
	data := mustJSON(t, req)
	if _, err := b.stack.Client.SubmitRaw(context.Background(), b.stack.Client.Layout().Request(req.Kind), "again-"+req.ID, data, nil); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, b.stack.Client, req.ID, func(s stateView) bool { return s.Phase == "completed" })
	if n := len(b.emu.CallsFor(inv)); n != 2 {
		t.Errorf("emulator saw %d calls, want 2 (no second POST)", n)
	}
	if st.AzureCalls != 2 {
		t.Errorf("state says %d calls", st.AzureCalls)
	}
	// The stored event is published again with the same message id, so the
	// events stream still holds one.
	last, ok, err := b.stack.Client.Last(context.Background(), req.ID)
	if err != nil || !ok || last.Completed == nil || last.Completed.URL != first.Completed.URL {
		t.Errorf("last event = %+v %v %v", last, ok, err)
	}
}

type stateView struct {
	Phase      string
	AzureCalls int
}

func waitState(t *testing.T, c *client.Client, id string, ok func(stateView) bool) stateView {
	t.Helper()
	var v stateView
	testwait.For(t, eventTimeout, "the wanted state of "+id, func() bool {
		st, err := c.Status(context.Background(), id)
		if err != nil && !errors.Is(err, client.ErrNoState) {
			t.Fatal(err)
		}
		v = stateView{Phase: string(st.Phase), AzureCalls: st.AzureCalls}
		return err == nil && ok(v)
	})
	return v
}
