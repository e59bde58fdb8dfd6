package worker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// crasher is an Azure client whose first call panics, as a bug in it
// would.
type crasher struct{}

func (crasher) Start(context.Context, messages.Kind, messages.Params) (*billing.Response, error) {
	panic("crasher: nil map sig=s3cr3t")
}

func (crasher) Poll(context.Context, messages.Kind, string) (*billing.Response, error) {
	panic("crasher: nil map")
}

// A panic inside a handler is logged with the stack where it happened, so
// that the bug can be found; the panic's text has its credentials masked.
func TestHandlerPanicLogsItsStack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.stack.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(b.stack.Config.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	logs := &syncBuffer{}
	w, err := worker.New(b.stack.Config.Worker(), nc, worker.Profiles{Default: "default", Clients: map[string]worker.Azure{"default": crasher{}}},
		slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	b.submit(devstack.Sample(messages.KindInvoice, b.id(), b.invoice()))
	type record struct {
		Msg   string `json:"msg"`
		Panic string `json:"panic"`
		Stack string `json:"stack"`
	}
	var got record
	testwait.For(t, 30*time.Second, "the panic logged", func() bool {
		for _, line := range logs.lines() {
			var r record
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "handler panic" {
				got = r
				return true
			}
		}
		return false
	})
	// The stack is the panicking goroutine's: it runs through the client's
	// method, called by the worker's handler.
	if !strings.Contains(got.Stack, "worker_test.crasher.Start") || !strings.Contains(got.Stack, "internal/worker.(*Worker).handleRequest") {
		t.Errorf("the logged stack does not show where the panic happened:\n%s", got.Stack)
	}
	if !strings.HasPrefix(got.Panic, "crasher: nil map") || strings.Contains(got.Panic, "s3cr3t") || strings.Contains(got.Stack, "s3cr3t") {
		t.Errorf("panic text %q", got.Panic)
	}
}
