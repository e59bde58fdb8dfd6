package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

const testToken = "console-test-token-0123456789"

// Invoice names the emulator answers in a scripted way.
var (
	slowInvoice   = devstack.InvoiceName("SLW", 1) // 202 with Retry-After 600: waits ten minutes
	failInvoice   = devstack.InvoiceName("FAL", 1) // 400 InvalidInvoice: fails with Azure's error
	throttleInvoc = devstack.InvoiceName("THR", 1) // 429 Retry-After 1, then 202, then 200
)

type testBundle struct {
	stack *devstack.Stack
	srv   *console.Server
	url   string // the console's base URL
}

// setup starts a dev stack (embedded NATS, the emulator, one worker) and a
// console on it, listening on a loopback port.
func setup(t *testing.T, o console.Options) *testBundle {
	t.Helper()
	stack, err := devstack.Start(devstack.Options{Dir: t.TempDir(),
		Emulator: emulator.Options{Default: []emulator.Reply{emulator.Accepted("1"), emulator.OK()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	stack.Emulator.Script(slowInvoice, emulator.Accepted("600"), emulator.OK())
	stack.Emulator.Script(failInvoice, emulator.Fail(http.StatusBadRequest, "InvalidInvoice", "The invoice <b>"+failInvoice+"</b> does not exist."))
	stack.Emulator.Script(throttleInvoc, emulator.Throttled(http.StatusTooManyRequests, "Retry-After", "1"), emulator.Accepted("1"), emulator.OK())
	return serveConsole(t, stack, o)
}

// serveConsole serves a console on stack's client.
func serveConsole(t *testing.T, stack *devstack.Stack, o console.Options) *testBundle {
	t.Helper()
	o.Client = stack.Client
	srv, err := console.New(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := console.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testBundle{stack: stack, srv: srv, url: "http://" + l.Addr().String()}
}

// submit sends a sample request and returns its id.
func (b *testBundle) submit(t *testing.T, kind messages.Kind, id, invoice string) string {
	t.Helper()
	req := devstack.Sample(kind, id, invoice)
	if _, err := b.stack.Client.Submit(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	return id
}

// deadLetter publishes data on a request subject, as it is, and waits
// until the worker has kept it as a dead letter; it returns its number.
func (b *testBundle) deadLetter(t *testing.T, data string) uint64 {
	t.Helper()
	ctx := context.Background()
	before, err := b.stack.Client.DeadLetters(ctx, 0, 1000)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	l := b.stack.Client.Layout()
	if _, err := b.stack.Client.SubmitRaw(ctx, l.Request(messages.KindInvoiceSummary), "", []byte(data), nil); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	testwait.For(t, 15*time.Second, "the dead letter", func() bool {
		dls, _ := b.stack.Client.DeadLetters(ctx, 0, 1000)
		if len(dls) > len(before) {
			seq = dls[len(dls)-1].Sequence
			return true
		}
		return false
	})
	return seq
}

// state waits until the operation id is stored in a phase that ok accepts.
func (b *testBundle) state(t *testing.T, id string, ok func(client.Phase) bool) client.Operation {
	t.Helper()
	var st client.Operation
	testwait.For(t, 20*time.Second, "operation "+id, func() bool {
		var err error
		st, err = b.stack.Client.Status(context.Background(), id)
		return err == nil && ok(st.Phase)
	})
	return st
}

// httpClient is a client with a cookie jar that does not follow
// redirects.
func httpClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// post sends a form the way a same-origin page does (Sec-Fetch-Site:
// same-origin), unless hdr says otherwise.
func post(t *testing.T, c *http.Client, u string, form url.Values, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// mustJSON encodes v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func anyPhase(client.Phase) bool { return true }
