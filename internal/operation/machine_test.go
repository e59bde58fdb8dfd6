package operation_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const me = "worker-a"

func machine() operation.Machine {
	return operation.Machine{
		Worker: me, ClaimFor: 40 * time.Second,
		DefaultDeadline: time.Hour, MaxDeadline: 24 * time.Hour,
		MaxBadAnswers: 3, MaxUnanswered: 3,
		Policy: poll.DefaultPolicy(),
		Rand:   func() float64 { return 0.5 }, // no jitter: a wait of exactly the backoff
	}
}

func request() messages.Request {
	return messages.Request{Version: 1, ID: "req-1", Kind: messages.KindInvoiceSummary,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"}}
}

// state builds a stored state for a table row.
func state(f func(*operation.State)) operation.State {
	st := operation.NewState(request(), t0.Add(-time.Minute), time.Hour, 24*time.Hour)
	f(&st)
	return st
}

func waiting(location string, wake uint64, next time.Time) func(*operation.State) {
	return func(s *operation.State) {
		s.Phase, s.Location, s.Wake, s.NextAt, s.Started = operation.PhaseWaiting, location, wake, next, location != ""
	}
}

func claimed(by string, location string, until time.Time, unanswered int) func(*operation.State) {
	return func(s *operation.State) {
		s.Phase = operation.PhaseStarting
		if location != "" {
			s.Phase = operation.PhasePolling
		}
		s.Location, s.ClaimedBy, s.ClaimedUntil, s.Unanswered, s.Wake = location, by, until, unanswered, 4
	}
}

func ended(completed bool) func(*operation.State) {
	return func(s *operation.State) {
		if completed {
			s.Complete(messages.Completed{ID: s.Request.ID, URL: "https://x/y"}, t0)
		} else {
			s.Fail(messages.Failed{ID: s.Request.ID, Code: messages.CodeTimeout}, t0)
		}
	}
}

// invoices makes n listed invoices named prefix0, prefix1, ...
func invoices(prefix string, n int) []messages.Invoice {
	out := make([]messages.Invoice, n)
	for i := range out {
		out[i] = messages.Invoice{ID: "/x/" + prefix, Name: prefix + strconv.Itoa(i)}
	}
	return out
}

func TestAccept(t *testing.T) {
	t.Parallel()
	m := machine()
	past := t0.Add(-time.Second)
	far := t0.Add(48 * time.Hour)
	for _, tc := range []struct {
		name         string
		deadline     *time.Time
		action       operation.Action
		phase        operation.Phase
		wantDeadline time.Time
	}{
		{"new: claimed for the first call, default deadline", nil, operation.Call, operation.PhaseStarting, t0.Add(time.Hour)},
		{"deadline already passed: failed with timeout", &past, operation.Publish, operation.PhaseFailed, past},
		{"deadline past the cap: capped", &far, operation.Call, operation.PhaseStarting, t0.Add(24 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request()
			req.Deadline = tc.deadline
			step := m.Accept(req, operation.Trace{Parent: "00-abc-def-01"}, t0)
			next := step.Next
			if step.Action != tc.action || next == nil || next.Phase != tc.phase || !next.Deadline.Equal(tc.wantDeadline) {
				t.Fatalf("step %v %+v", step.Action, next)
			}
			if next.TraceParent != "00-abc-def-01" || next.Version != operation.StateVersion {
				t.Errorf("trace %q version %d", next.TraceParent, next.Version)
			}
			switch tc.action {
			case operation.Call:
				if next.ClaimedBy != me || !next.ClaimedUntil.Equal(t0.Add(40*time.Second)) || next.Unanswered != 1 {
					t.Errorf("claim %s until %s, %d unanswered", next.ClaimedBy, next.ClaimedUntil, next.Unanswered)
				}
			case operation.Publish:
				if next.Failed == nil || next.Failed.Code != messages.CodeTimeout || !next.Failed.Retryable {
					t.Errorf("failed %+v", next.Failed)
				}
			}
		})
	}
}

func TestResume(t *testing.T) {
	t.Parallel()
	m := machine()
	loc := "https://management.azure.com/op/1"
	other := request()
	other.Kind = messages.KindInvoice
	otherParams := request()
	otherParams.Params.InvoiceName = "G999999999"
	relabelled := request()
	relabelled.Labels = map[string]string{"again": "yes"}
	req := request()
	for _, tc := range []struct {
		name   string
		st     operation.State
		d      operation.Delivery
		action operation.Action
		check  func(t *testing.T, s operation.Step)
	}{
		{"ended (completed): publish again", state(ended(true)), operation.Delivery{Request: &req}, operation.Republish, nil},
		{"ended (failed), wake-up: publish again", state(ended(false)), operation.Delivery{Wake: 3}, operation.Republish, nil},
		{"id reused for another kind: conflict", state(ended(true)), operation.Delivery{Request: &other}, operation.Conflict, nil},
		{"id reused with other params: conflict", state(waiting(loc, 2, t0)), operation.Delivery{Request: &otherParams}, operation.Conflict, nil},
		{"identical resubmission with other labels, waiting: keep the wake-up", state(waiting(loc, 2, t0.Add(time.Minute))), operation.Delivery{Request: &relabelled}, operation.Schedule, nil},
		{"current wake-up due: claim and poll", state(waiting(loc, 2, t0)), operation.Delivery{Wake: 2}, operation.Call, func(t *testing.T, s operation.Step) {
			if s.Next.Phase != operation.PhasePolling || s.Next.ClaimedBy != me || s.Next.Unanswered != 0 {
				t.Errorf("%+v", s.Next)
			}
		}},
		{"current wake-up due, first call not yet accepted (throttled start): claim and count it", state(waiting("", 2, t0)), operation.Delivery{Wake: 2}, operation.Call, func(t *testing.T, s operation.Step) {
			if s.Next.Phase != operation.PhaseStarting || s.Next.Unanswered != 1 {
				t.Errorf("%+v", s.Next)
			}
		}},
		{"current wake-up early (the server's clock ahead): come back when due", state(waiting(loc, 2, t0.Add(time.Second))), operation.Delivery{Wake: 2}, operation.Retry, func(t *testing.T, s operation.Step) {
			if s.Delay != time.Second {
				t.Errorf("delay %s", s.Delay)
			}
		}},
		{"wake-up ahead of the stored state (a stale read): come back soon", state(claimed("worker-b", loc, t0.Add(5*time.Second), 0)), operation.Delivery{Wake: 5}, operation.Retry, nil},
		{"stale wake-up while waiting: make sure the pending one exists", state(waiting(loc, 2, t0)), operation.Delivery{Wake: 1}, operation.Schedule, nil},
		{"request seen again while waiting: keep the wake-up", state(waiting(loc, 2, t0)), operation.Delivery{Request: &req}, operation.Schedule, nil},
		{"live claim, stale wake-up: drop it", state(claimed("worker-b", loc, t0.Add(time.Second), 0)), operation.Delivery{Wake: 3}, operation.Ack, nil},
		{"live claim, its own wake-up redelivered: come back when it expires", state(claimed("worker-b", loc, t0.Add(5*time.Second), 0)), operation.Delivery{Wake: 4}, operation.Retry, func(t *testing.T, s operation.Step) {
			if s.Delay != 6*time.Second || s.Next != nil {
				t.Errorf("delay %s next %v", s.Delay, s.Next)
			}
		}},
		{"live claim, request seen again: come back when it expires", state(claimed("worker-b", "", t0.Add(5*time.Second), 1)), operation.Delivery{Request: &req}, operation.Retry, nil},
		{"expired claim on the first call: take over and call again, counted", state(claimed("worker-b", "", t0.Add(-time.Second), 1)), operation.Delivery{Request: &req}, operation.Call, func(t *testing.T, s operation.Step) {
			if s.Next.ClaimedBy != me || s.Next.Unanswered != 2 {
				t.Errorf("%+v", s.Next)
			}
		}},
		{"expired claim on the first call at the bound: interrupted, no call", state(claimed("worker-b", "", t0.Add(-time.Second), 3)), operation.Delivery{Request: &req}, operation.Publish, func(t *testing.T, s operation.Step) {
			if s.Next.Failed == nil || s.Next.Failed.Code != messages.CodeInterrupted || !s.Next.Failed.Retryable || !strings.Contains(s.Next.Failed.Message, "3 times") {
				t.Errorf("%+v", s.Next.Failed)
			}
		}},
		{"expired claim on a poll: take over (polls are not counted)", state(claimed("worker-b", loc, t0.Add(-time.Second), 0)), operation.Delivery{Wake: 4}, operation.Call, func(t *testing.T, s operation.Step) {
			if s.Next.Phase != operation.PhasePolling || s.Next.Unanswered != 0 {
				t.Errorf("%+v", s.Next)
			}
		}},
		{"own live claim, not acting on it (a write that landed late): take over", state(claimed(me, "", t0.Add(30*time.Second), 1)), operation.Delivery{Request: &req}, operation.Call, nil},
		{"own live claim while acting on it: come back later", state(claimed(me, "", t0.Add(30*time.Second), 1)), operation.Delivery{Request: &req, Acting: true}, operation.Retry, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Resume(tc.st, tc.d, t0)
			if s.Action != tc.action {
				t.Fatalf("action %v, want %v (next %+v)", s.Action, tc.action, s.Next)
			}
			if (s.Action == operation.Call || s.Action == operation.Publish) != (s.Next != nil) {
				t.Errorf("action %v with next %v", s.Action, s.Next)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestAnswer(t *testing.T) {
	t.Parallel()
	m := machine()
	loc := "https://management.azure.com/op/1"
	expiry := t0.Add(time.Hour)
	hdr := func(k, v string) http.Header { h := http.Header{}; h.Set(k, v); return h }
	first := state(claimed(me, "", t0.Add(30*time.Second), 1))
	polling := state(claimed(me, loc, t0.Add(30*time.Second), 0))
	authFailing := state(func(s *operation.State) {
		claimed(me, "", t0.Add(30*time.Second), 1)(s)
		s.LastError, s.LastErrorClass = "could not get a token", operation.ClassAuth
	})
	nearDeadline := state(func(s *operation.State) {
		claimed(me, loc, t0.Add(30*time.Second), 0)(s)
		s.Deadline = t0.Add(10 * time.Second)
	})
	badTwice := state(func(s *operation.State) { claimed(me, loc, t0.Add(30*time.Second), 0)(s); s.BadAnswers = 2 })
	denied := &messages.AzureError{Status: 403, Code: "AuthorizationFailed"}
	refused := &messages.AzureError{Status: 400, Code: "InvalidInvoice"}
	listing := func(location string, listed int) operation.State {
		st := state(claimed(me, location, t0.Add(30*time.Second), 0))
		if location == "" {
			st.Unanswered = 1
		}
		st.Request.Kind, st.Request.Params = messages.KindAccountInvoices, messages.Params{BillingAccountName: "12345678"}
		st.Listed = invoices("P", listed)
		return st
	}
	next := "https://management.azure.com/providers/Microsoft.Billing/billingAccounts/12345678/invoices?skiptoken=2"
	files := []byte(`{"fileType":"csv","files":[{"fileName":"ps1.csv","sizeInBytes":12}]}`)
	for _, tc := range []struct {
		name       string
		st         operation.State
		a          operation.Answer
		action     operation.Action
		code       messages.Code // the failure's code, when Publish fails it
		calls      int           // AzureCalls after
		unanswered int
		wait       time.Duration // the wait chosen, when Schedule
		check      func(t *testing.T, n *operation.State)
	}{
		{"200 on the first call: completed", first, operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{URL: "https://x/doc?sig=s", ExpiryTime: &expiry}},
			operation.Publish, "", 1, 0, 0, func(t *testing.T, n *operation.State) {
				if n.Completed == nil || n.Completed.URL != "https://x/doc?sig=s" || !n.Completed.ExpiryTime.Equal(expiry) || n.Completed.AzureCalls != 1 || !n.Started {
					t.Errorf("%+v", n.Completed)
				}
			}},
		{"202 on the first call: wait Retry-After, keep the Location", first, operation.Answer{Outcome: operation.Running, Status: 202, Location: loc, Header: hdr("Retry-After", "7")},
			operation.Schedule, "", 1, 0, 7 * time.Second, func(t *testing.T, n *operation.State) {
				if n.Location != loc || n.Wake != first.Wake+1 || n.LastWaitSource != "retry-after" || n.ClaimedBy != "" {
					t.Errorf("%+v", n)
				}
			}},
		{"202 on a poll without Location: keep polling the old one, default wait", polling, operation.Answer{Outcome: operation.Running, Status: 202},
			operation.Schedule, "", 1, 0, 15 * time.Second, func(t *testing.T, n *operation.State) {
				if n.Location != loc || n.Polls != 1 {
					t.Errorf("location %q polls %d", n.Location, n.Polls)
				}
			}},
		{"429 with Retry-After: wait as told", polling, operation.Answer{Outcome: operation.Throttled, Status: 429, Header: hdr("Retry-After", "30"), Error: "throttled"},
			operation.Schedule, "", 1, 0, 30 * time.Second, func(t *testing.T, n *operation.State) {
				if n.Failures != 1 || n.LastErrorClass != operation.ClassAzure || n.LastStatus != 429 {
					t.Errorf("%+v", n)
				}
			}},
		{"500 on the first call: backoff, answered", first, operation.Answer{Outcome: operation.Transient, Status: 500, Error: "boom"},
			operation.Schedule, "", 1, 0, time.Second, nil},
		{"400: azure_error with Azure's error", first, operation.Answer{Outcome: operation.Refused, Status: 400, Azure: refused, Error: "azure answered 400"},
			operation.Publish, messages.CodeAzureError, 1, 0, 0, func(t *testing.T, n *operation.State) {
				if n.Failed.Azure != refused || n.Failed.Retryable {
					t.Errorf("%+v", n.Failed)
				}
			}},
		{"403: access_denied", first, operation.Answer{Outcome: operation.Denied, Status: 403, Azure: denied, Error: "azure answered 403"},
			operation.Publish, messages.CodeAccessDenied, 1, 0, 0, nil},
		{"foreign Location: location_rejected", first, operation.Answer{Outcome: operation.LocationRefused, Status: 202, Error: "location on another host"},
			operation.Publish, messages.CodeLocationRejected, 1, 0, 0, nil},
		{"malformed 200: try again", polling, operation.Answer{Outcome: operation.Malformed, Status: 200, Error: "no url"},
			operation.Schedule, "", 1, 0, time.Second, func(t *testing.T, n *operation.State) {
				if n.BadAnswers != 1 {
					t.Errorf("bad answers %d", n.BadAnswers)
				}
			}},
		{"malformed 200 the third time in a row: bad_response", badTwice, operation.Answer{Outcome: operation.Malformed, Status: 200, Error: "no url"},
			operation.Publish, messages.CodeBadResponse, 1, 0, 0, nil},
		{"202 without Location on the first call: bad_response at once", first, operation.Answer{Outcome: operation.Malformed, Status: 202, Error: "202 without a Location header"},
			operation.Publish, messages.CodeBadResponse, 1, 0, 0, nil},
		{"credential refused: auth_failed, no call counted", first, operation.Answer{Outcome: operation.AuthRefused, Error: "invalid_client"},
			operation.Publish, messages.CodeAuthFailed, 0, 0, 0, nil},
		{"no token this time: wait, no call counted", first, operation.Answer{Outcome: operation.AuthUnavailable, Error: "503 from the token endpoint"},
			operation.Schedule, "", 0, 0, time.Second, func(t *testing.T, n *operation.State) {
				if n.LastErrorClass != operation.ClassAuth {
					t.Errorf("class %q", n.LastErrorClass)
				}
			}},
		{"first call without an answer: wait, still counted", first, operation.Answer{Outcome: operation.NoAnswer, Error: "connection reset"},
			operation.Schedule, "", 1, 1, time.Second, nil},
		{"no answer, and the deadline has come: timeout", nearDeadline, operation.Answer{Outcome: operation.NoAnswer, Error: "context deadline exceeded"},
			operation.Publish, messages.CodeTimeout, 1, 0, 0, nil},
		{"called at the deadline after auth failures: auth_unavailable, no call", authFailing, operation.Answer{Outcome: operation.Late},
			operation.Publish, messages.CodeAuthUnavailable, 0, 0, 0, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Failed.Message, "could not get a token") {
					t.Errorf("message %q", n.Failed.Message)
				}
			}},
		{"token request cut by the deadline after auth failures: auth_unavailable, the earlier failure kept", authFailing, operation.Answer{Outcome: operation.AuthUnavailable, Error: "context deadline exceeded", CutAtDeadline: true},
			operation.Publish, messages.CodeAuthUnavailable, 0, 0, 0, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Failed.Message, "could not get a token") || strings.Contains(n.Failed.Message, "context deadline") {
					t.Errorf("message %q", n.Failed.Message)
				}
			}},
		{"first call cut by the deadline: timeout naming the cut", first, operation.Answer{Outcome: operation.NoAnswer, Error: "context deadline exceeded", CutAtDeadline: true},
			operation.Publish, messages.CodeTimeout, 1, 1, 0, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Failed.Message, "context deadline exceeded") {
					t.Errorf("message %q", n.Failed.Message)
				}
			}},
		{"price sheet of a profile: downloadFileProperties passed on", first, operation.Answer{Outcome: operation.Done, Status: 200,
			Result: &operation.Result{URL: "https://x/ps.zip?sig=s", ExpiryTime: &expiry, DownloadFileProperties: files}},
			operation.Publish, "", 1, 0, 0, func(t *testing.T, n *operation.State) {
				if string(n.Completed.DownloadFileProperties) != string(files) {
					t.Errorf("downloadFileProperties %s", n.Completed.DownloadFileProperties)
				}
			}},
		{"listing, first page with a nextLink: keep its invoices, fetch the next page at once", listing("", 0),
			operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices("A", 3), NextLink: next}},
			operation.Call, "", 1, 0, 0, func(t *testing.T, n *operation.State) {
				if n.Location != next || len(n.Listed) != 3 || n.Phase != operation.PhasePolling || n.ClaimedBy != me || n.Completed != nil {
					t.Errorf("%+v", n)
				}
			}},
		{"listing, a middle page: appended, the next page claimed", listing(loc, 3),
			operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices("B", 2), NextLink: next}},
			operation.Call, "", 1, 0, 0, func(t *testing.T, n *operation.State) {
				if n.Location != next || len(n.Listed) != 5 || n.Listed[3].Name != "B0" || n.Polls != 1 {
					t.Errorf("%+v", n)
				}
			}},
		{"listing, last page: completed with every page's invoices in order", listing(loc, 3),
			operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices("C", 1)}},
			operation.Publish, "", 1, 0, 0, func(t *testing.T, n *operation.State) {
				c := n.Completed
				if c == nil || len(c.Invoices) != 4 || c.Invoices[0].Name != "P0" || c.Invoices[3].Name != "C0" || n.Listed != nil || c.URL != "" {
					t.Errorf("%+v %+v", c, n.Listed)
				}
			}},
		{"listing throttled on a page: wait, keep the page's URL and what was listed", listing(loc, 3),
			operation.Answer{Outcome: operation.Throttled, Status: 429, Header: hdr("Retry-After", "5"), Error: "throttled"},
			operation.Schedule, "", 1, 0, 5 * time.Second, func(t *testing.T, n *operation.State) {
				if n.Location != loc || len(n.Listed) != 3 {
					t.Errorf("%+v", n)
				}
			}},
		{"listing past the limit: too_many", listing(loc, messages.MaxListedInvoices-1),
			operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{Invoices: invoices("D", 2), NextLink: next}},
			operation.Publish, messages.CodeTooMany, 1, 0, 0, func(t *testing.T, n *operation.State) {
				if n.Failed.Retryable || !strings.Contains(n.Failed.Message, "narrow the period") {
					t.Errorf("%+v", n.Failed)
				}
			}},
		{"Azure asks to wait past the deadline: timeout at once", nearDeadline, operation.Answer{Outcome: operation.Running, Status: 202, Header: hdr("Retry-After", "60")},
			operation.Publish, messages.CodeTimeout, 1, 0, 0, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Failed.Message, "Azure asked to wait (retry-after)") {
					t.Errorf("message %q", n.Failed.Message)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			if tc.a.Outcome == operation.NoAnswer && tc.code == messages.CodeTimeout || tc.a.Outcome == operation.Late {
				// The call was cut at the deadline, or not made at it.
				now = tc.st.Deadline
			}
			s := m.Answer(tc.st, tc.a, now)
			n := s.Next
			if s.Action != tc.action || n == nil {
				t.Fatalf("action %v, want %v (next %+v)", s.Action, tc.action, n)
			}
			if n.AzureCalls != tc.calls || n.Unanswered != tc.unanswered {
				t.Errorf("%d calls and %d unanswered, want %d and %d", n.AzureCalls, n.Unanswered, tc.calls, tc.unanswered)
			}
			switch {
			case tc.action == operation.Schedule:
				if n.Phase != operation.PhaseWaiting || n.LastWait != tc.wait || !n.NextAt.Equal(now.Add(tc.wait)) {
					t.Errorf("phase %s wait %s next %s, want wait %s", n.Phase, n.LastWait, n.NextAt, tc.wait)
				}
			case tc.code != "":
				if n.Failed == nil || n.Failed.Code != tc.code || n.Phase != operation.PhaseFailed {
					t.Errorf("failed %+v, want %s", n.Failed, tc.code)
				}
			}
			if tc.check != nil {
				tc.check(t, n)
			}
			if tc.st.Phase != operation.PhaseStarting && tc.st.Phase != operation.PhasePolling {
				t.Fatal("rows start from a claimed state")
			}
		})
	}
}

func TestAbandon(t *testing.T) {
	t.Parallel()
	m := machine()
	req := request()
	w := state(waiting("https://management.azure.com/op/1", 2, t0))
	done := state(ended(true))
	for _, tc := range []struct {
		name   string
		st     *operation.State
		req    *messages.Request
		action operation.Action
	}{
		{"no state yet: store it failed", nil, &req, operation.Publish},
		{"waiting: internal_error", &w, nil, operation.Publish},
		{"ended already: publish its outcome again", &done, nil, operation.Republish},
		{"nothing to end", nil, nil, operation.Ack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Abandon(tc.st, tc.req, "handling failed 10 times; last: boom", operation.Trace{}, t0)
			if s.Action != tc.action {
				t.Fatalf("action %v, want %v", s.Action, tc.action)
			}
			if tc.action == operation.Publish && (s.Next.Failed == nil || s.Next.Failed.Code != messages.CodeInternal || !s.Next.Failed.Retryable) {
				t.Errorf("%+v", s.Next.Failed)
			}
		})
	}
}

// A claim whose store took too long is renewed for the call, which is not
// counted again.
func TestReclaim(t *testing.T) {
	t.Parallel()
	st := state(claimed(me, "", t0.Add(time.Second), 1))
	s := machine().Reclaim(st, t0)
	if s.Action != operation.Call || s.Next.ClaimedBy != me || !s.Next.ClaimedUntil.Equal(t0.Add(40*time.Second)) || s.Next.Unanswered != 1 {
		t.Errorf("%v %+v", s.Action, s.Next)
	}
}

func TestDecodeRefusesUnknownVersion(t *testing.T) {
	t.Parallel()
	st := state(waiting("", 1, t0))
	if got, err := operation.Decode(operation.Encode(&st)); err != nil || got.Wake != 1 {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	st.Version = operation.StateVersion + 1
	if _, err := operation.Decode(operation.Encode(&st)); !errors.Is(err, operation.ErrUnknownVersion) {
		t.Errorf("version %d: %v, want ErrUnknownVersion", st.Version, err)
	}
	if _, err := operation.Decode([]byte("{")); err == nil || errors.Is(err, operation.ErrUnknownVersion) {
		t.Errorf("garbage: %v", err)
	}
}

// Every answer taken is kept in the call history: when, which call, the
// status, what it meant and the wait honoured after it; the history is
// bounded, and errors in it are redacted.
func TestAnswerRecordsCall(t *testing.T) {
	t.Parallel()
	m := machine()
	loc := "https://management.azure.com/op/1"
	hdr := func(k, v string) http.Header { h := http.Header{}; h.Set(k, v); return h }
	first := state(claimed(me, "", t0.Add(30*time.Second), 1))
	polling := state(claimed(me, loc, t0.Add(30*time.Second), 0))
	full := state(func(s *operation.State) {
		claimed(me, loc, t0.Add(30*time.Second), 0)(s)
		for i := range operation.MaxCalls {
			s.Calls = append(s.Calls, operation.CallRecord{At: t0.Add(time.Duration(i-100) * time.Second), Poll: true, Status: 202, Outcome: "running"})
		}
		s.CallsDropped = 3
	})
	for _, tc := range []struct {
		name    string
		st      operation.State
		a       operation.Answer
		want    operation.CallRecord
		n       int // calls kept after
		dropped int
	}{
		{"202 on the first call: its Retry-After honoured", first, operation.Answer{Outcome: operation.Running, Status: 202, Location: loc, Header: hdr("Retry-After", "7")},
			operation.CallRecord{At: t0, Status: 202, Outcome: "running", Wait: 7 * time.Second, WaitSource: "retry-after"}, 1, 0},
		{"429 on a poll: throttled, its wait", polling, operation.Answer{Outcome: operation.Throttled, Status: 429, Header: hdr("Retry-After", "30"), Error: "throttled"},
			operation.CallRecord{At: t0, Poll: true, Status: 429, Outcome: "throttled", Wait: 30 * time.Second, WaitSource: "retry-after", Error: "throttled"}, 1, 0},
		{"200 on a poll: done, no wait", polling, operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{URL: "https://x/doc?sig=s"}},
			operation.CallRecord{At: t0, Poll: true, Status: 200, Outcome: "done"}, 1, 0},
		{"no token: no status, backoff, the error redacted", first, operation.Answer{Outcome: operation.AuthUnavailable, Error: "GET https://x/y?sig=secret failed"},
			operation.CallRecord{At: t0, Outcome: "auth_unavailable", Wait: time.Second, WaitSource: "backoff", Error: "GET https://x/y?sig=REDACTED failed"}, 1, 0},
		{"400: refused, the operation ends without a wait", first, operation.Answer{Outcome: operation.Refused, Status: 400, Error: "azure answered 400"},
			operation.CallRecord{At: t0, Status: 400, Outcome: "refused", Error: "azure answered 400"}, 1, 0},
		{"a full history drops its oldest", full, operation.Answer{Outcome: operation.Running, Status: 202, Header: hdr("Retry-After", "5")},
			operation.CallRecord{At: t0, Poll: true, Status: 202, Outcome: "running", Wait: 5 * time.Second, WaitSource: "retry-after"}, operation.MaxCalls, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := m.Answer(tc.st, tc.a, t0).Next
			if len(n.Calls) != tc.n || n.CallsDropped != tc.dropped {
				t.Fatalf("%d calls, %d dropped; want %d and %d", len(n.Calls), n.CallsDropped, tc.n, tc.dropped)
			}
			if got := n.Calls[len(n.Calls)-1]; got != tc.want {
				t.Errorf("recorded %+v\nwant     %+v", got, tc.want)
			}
			if len(tc.st.Calls) > 0 && &tc.st.Calls[0] == &n.Calls[0] {
				t.Error("the history shares its array with the state it came from")
			}
		})
	}
	// A record stored before the history existed still decodes, with none.
	old := `{"version":1,"request":{"version":1,"id":"req-1","kind":"invoice-summary"},"phase":"waiting","wake":2}`
	if st, err := operation.Decode([]byte(old)); err != nil || st.Calls != nil || st.Wake != 2 {
		t.Errorf("old record: %v %+v", err, st)
	}
}

// The shared throttle holds a call back: the step decided for the call
// becomes a wait, or a timeout when the deadline comes first.
func TestDefer(t *testing.T) {
	t.Parallel()
	m := machine()
	m.HoldSpread = 4 * time.Second
	loc := "https://management.azure.com/op/1"
	slot := t0.Add(3 * time.Second)
	pauseEnd := t0.Add(10 * time.Second)
	// The steps the machine decides for a call: a new request, a due poll.
	first := *m.Accept(request(), operation.Trace{}, t0).Next
	poll := *m.Resume(state(waiting(loc, 2, t0)), operation.Delivery{Wake: 2}, t0).Next
	throttledStart := *m.Resume(state(waiting("", 2, t0)), operation.Delivery{Wake: 2}, t0).Next
	nearDeadline := poll
	nearDeadline.Deadline = t0.Add(2 * time.Second)
	for _, tc := range []struct {
		name       string
		next       operation.State
		h          operation.Hold
		action     operation.Action
		at         time.Time // NextAt, when Schedule
		unanswered int
	}{
		{"new request, slot of the bucket in the future: wait for it, first call not counted", first,
			operation.Hold{Scope: "default.billing.writes", Until: slot, Slot: true}, operation.Schedule, slot, 0},
		{"first call again after a throttled start, scope paused: wait for the slot after the pause", throttledStart,
			operation.Hold{Scope: "default.billing.writes", Until: pauseEnd, Slot: true, PausedUntil: pauseEnd}, operation.Schedule, pauseEnd, 0},
		{"poll, pause without a slot: released with a spread (half of HoldSpread here)", poll,
			operation.Hold{Scope: "default.billing.reads", Until: pauseEnd, PausedUntil: pauseEnd}, operation.Schedule, pauseEnd.Add(2 * time.Second), 0},
		{"slot past the deadline: timeout", nearDeadline,
			operation.Hold{Scope: "default.billing.reads", Until: slot, Slot: true}, operation.Publish, time.Time{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.next.Phase.Claimed() {
				t.Fatal("rows start from a step's claimed state")
			}
			s := m.Defer(tc.next, tc.h, t0)
			n := s.Next
			if s.Action != tc.action || n == nil {
				t.Fatalf("action %v, want %v", s.Action, tc.action)
			}
			if n.Unanswered != tc.unanswered || n.ClaimedBy != "" || n.AzureCalls != tc.next.AzureCalls {
				t.Errorf("unanswered %d claimed by %q calls %d", n.Unanswered, n.ClaimedBy, n.AzureCalls)
			}
			switch tc.action {
			case operation.Schedule:
				if n.Phase != operation.PhaseWaiting || !n.NextAt.Equal(tc.at) || n.Wake != tc.next.Wake+1 ||
					n.LastWaitSource != operation.SourceThrottle || n.Throttled == nil || *n.Throttled != tc.h {
					t.Errorf("phase %s next %s wake %d source %q hold %+v", n.Phase, n.NextAt.Sub(t0), n.Wake, n.LastWaitSource, n.Throttled)
				}
				if n.Location != tc.next.Location {
					t.Errorf("location %q", n.Location)
				}
			case operation.Publish:
				if n.Failed == nil || n.Failed.Code != messages.CodeTimeout || !strings.Contains(n.Failed.Message, "shared throttle") {
					t.Errorf("%+v", n.Failed)
				}
			}
		})
	}
}

// A slot held is used once it has come, and the hold ends with the claim.
func TestSlotDue(t *testing.T) {
	t.Parallel()
	m := machine()
	slot := t0.Add(-time.Second)
	st := state(func(s *operation.State) {
		waiting("", 3, slot)(s)
		s.Throttled = &operation.Hold{Scope: "default.billing.writes", Until: slot, Slot: true}
	})
	if !st.SlotDue(t0) || st.SlotDue(slot.Add(-time.Millisecond)) {
		t.Error("SlotDue")
	}
	s := m.Resume(st, operation.Delivery{Wake: 3}, t0)
	if s.Action != operation.Call || s.Next.Throttled != nil {
		t.Errorf("%v %+v", s.Action, s.Next.Throttled)
	}
	// An answer's wait replaces a hold.
	held := *s.Next
	held.Throttled = &operation.Hold{Scope: "x"}
	if a := m.Answer(held, operation.Answer{Outcome: operation.Running, Status: 202, Location: "https://management.azure.com/op/1"}, t0); a.Next.Throttled != nil {
		t.Errorf("hold kept after an answer: %+v", a.Next.Throttled)
	}
}
