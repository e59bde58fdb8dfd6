package worker_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
)

// faultConfig keeps every wait short, so that retries finish quickly.
func faultConfig(c *config.Config) {
	c.HTTPTimeout = time.Second
	c.AckWait = 3 * time.Second
	c.PollDefaultWait = time.Second
	c.PollMaxWait = 2 * time.Second
	c.BackoffInitial = 200 * time.Millisecond
	c.BackoffMax = time.Second
}

func body(s string) emulator.Reply {
	r := emulator.OK()
	r.Body = &s
	return r
}

// Each fault is survived: retried until the operation completes, or ended
// with a clear code.
func TestAzureFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, faultConfig)
	accepted := emulator.Accepted("1")
	noLocation := emulator.Accepted("1")
	noLocation.NoLocation = true
	cases := []struct {
		name    string
		script  []emulator.Reply
		want    messages.Code // "" for a completion
		minCall int
	}{
		{"connection reset on POST", []emulator.Reply{emulator.ResetConn(), emulator.OK()}, "", 2},
		{"connection reset on poll", []emulator.Reply{accepted, emulator.ResetConn(), emulator.OK()}, "", 3},
		{"timeout", []emulator.Reply{emulator.OK().After(3 * time.Second), emulator.OK()}, "", 2},
		{"500", []emulator.Reply{emulator.Fail(500, "InternalServerError", "boom"), emulator.OK()}, "", 2},
		{"502", []emulator.Reply{emulator.Fail(502, "BadGateway", "boom"), emulator.OK()}, "", 2},
		{"504 on poll", []emulator.Reply{accepted, emulator.Fail(504, "GatewayTimeout", "slow"), emulator.OK()}, "", 3},
		{"202 without Location on POST", []emulator.Reply{noLocation}, messages.CodeBadResponse, 1},
		{"202 without Location on poll keeps polling", []emulator.Reply{accepted, noLocation, emulator.OK()}, "", 3},
		{"200 malformed then good", []emulator.Reply{body("{not json"), emulator.OK()}, "", 2},
		{"200 empty then good", []emulator.Reply{body(""), emulator.OK()}, "", 2},
		{"200 without url", []emulator.Reply{body(`{"expiryTime":"2026-01-01T00:00:00Z"}`), emulator.OK()}, "", 2},
		{"200 malformed forever", []emulator.Reply{body("<html>")}, messages.CodeBadResponse, 3},
		{"retry-after 0", []emulator.Reply{emulator.Accepted("0"), emulator.OK()}, "", 2},
		{"retry-after negative", []emulator.Reply{emulator.Accepted("-5"), emulator.OK()}, "", 2},
		{"retry-after garbage", []emulator.Reply{emulator.Accepted("soon"), emulator.OK()}, "", 2},
		{"retry-after huge", []emulator.Reply{emulator.Accepted("99999999999"), emulator.OK()}, "", 2},
		{"429 without hint", []emulator.Reply{{Status: http.StatusTooManyRequests}, emulator.OK()}, "", 2},
		// A token that expired on its way (a call at its last moment, a
		// clock ahead): the next call has a fresh one.
		{"401 expired token", []emulator.Reply{emulator.Fail(http.StatusUnauthorized, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time."), emulator.OK()}, "", 2},
		{"401 other", []emulator.Reply{emulator.Fail(http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")}, messages.CodeAccessDenied, 1},
		{"location on another host", []emulator.Reply{withLocation("https://elsewhere.example:443/op/1")}, messages.CodeLocationRejected, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			inv := b.invoice()
			b.emu.Script(inv, c.script...)
			req := devstack.Sample(messages.KindInvoiceSummary, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, eventTimeout)
			switch {
			case c.want == "" && o.Completed == nil:
				t.Fatalf("want completion, got %+v", o.Failed)
			case c.want != "" && (o.Failed == nil || o.Failed.Code != c.want):
				t.Fatalf("want failure %s, got %+v %+v", c.want, o.Completed, o.Failed)
			}
			if n := len(b.emu.CallsFor(inv)); n < c.minCall {
				t.Errorf("%d calls, want at least %d", n, c.minCall)
			}
		})
	}
}

func withLocation(loc string) emulator.Reply {
	r := emulator.Accepted("1")
	r.Location = loc
	return r
}

// A NATS restart while operations wait and while completions are being
// published loses nothing: every request gets exactly one event.
func TestNATSRestartMidRun(t *testing.T) {
	t.Parallel()
	b := setup(t, faultConfig)
	const n = 40
	var ids []string
	for i := range n {
		inv := b.invoice()
		// The last answer is slow, so that many completions are in flight
		// when the server goes away.
		b.emu.Script(inv, emulator.Accepted("1"), emulator.OK().After(time.Duration(i%4)*300*time.Millisecond))
		req := devstack.Sample(messages.Kinds[i%4], b.id(), inv)
		b.submit(req)
		ids = append(ids, req.ID)
	}
	// Stop the server once the polls have begun: some completions are then
	// being answered (slowly) while it is down.
	testwait.For(t, 20*time.Second, "the polls have begun", func() bool { return len(b.emu.Calls()) >= n+n/4 })
	b.stack.StopNATS()
	time.Sleep(2 * time.Second) // the outage itself: its length is the scenario, not a wait for something
	if err := b.stack.RestartNATS(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		b.wait(id, time.Minute)
	}
	assertOneEventEach(t, b, ids)
}

// assertOneEventEach counts the events kept in the events stream per
// request: exactly one each.
func assertOneEventEach(t *testing.T, b *testBundle, ids []string) {
	t.Helper()
	counts := countEvents(t, b.stack.Conn, b.stack.Client.Layout().EventsStream())
	for _, id := range ids {
		if counts[id] != 1 {
			t.Errorf("request %s has %d events in the stream, want 1", id, counts[id])
		}
	}
}

// A worker whose NATS connection closes for good stops with
// ErrConnectionClosed and fails its liveness probe, so that the platform
// restarts it.
func TestConnectionClosedStopsWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w, nc := b.ownWorker()
	h := w.Health()
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	testwait.For(t, 10*time.Second, "ready", func() bool { return probe(t, h, "/readyz") == http.StatusOK })
	if code := probe(t, h, "/livez"); code != http.StatusOK {
		t.Fatalf("livez while connected: %d", code)
	}
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, worker.ErrConnectionClosed) {
			t.Fatalf("Run returned %v, want ErrConnectionClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the connection closed")
	}
	if code := probe(t, h, "/livez"); code != http.StatusServiceUnavailable {
		t.Errorf("livez after the connection closed: %d, want 503", code)
	}
}

// No Azure call outlives the operation's deadline: a call that hangs is
// cut at the deadline, not at the end of http-timeout (before the fix, a
// 2 s deadline with a 10 s timeout failed 8 s late).
func TestDeadlineCutsTheCall(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.HTTPTimeout, c.AckWait = 10*time.Second, 30*time.Second
	})
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK().After(15*time.Second))
	req := sampleSummary(b.id(), inv)
	deadline := time.Now().Add(2 * time.Second)
	req.Deadline = &deadline
	b.submit(req)
	o := b.wait(req.ID, eventTimeout)
	if o.Failed == nil || o.Failed.Code != messages.CodeTimeout {
		t.Fatalf("want timeout, got %+v %+v", o.Completed, o.Failed)
	}
	if late := o.Failed.FailedAt.Sub(deadline); late > 3*time.Second {
		t.Errorf("failed %s after the deadline; the call was not cut at it", late)
	}
	t.Logf("failed %s after the deadline", o.Failed.FailedAt.Sub(deadline).Round(time.Millisecond))
}
