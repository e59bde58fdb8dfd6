package worker_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// panicky is an Azure client whose every call panics: a bug the worker
// must survive.
type panicky struct{}

func (panicky) Start(context.Context, messages.Kind, messages.Params) (*billing.Response, error) {
	panic("boom")
}

func (panicky) Poll(context.Context, messages.Kind, string) (*billing.Response, error) {
	panic("boom")
}

// A valid request whose handling fails every time ends, after max-deliver
// deliveries, in one internal_error event; it is kept in the dead-letter
// stream, and its stored operation says it failed.
func TestRequestThatKeepsFailingEndsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.stack.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	cfg := b.stack.Config
	cfg.MaxDeliver = 2
	cfg.HTTPTimeout = 500 * time.Millisecond // claims of 1 s
	cfg.AckWait = 2 * time.Second
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, err := worker.New(cfg.Worker(), nc, worker.Profiles{Default: "default", Clients: map[string]worker.Azure{"default": panicky{}}},
		slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	req := devstack.Sample(messages.KindInvoice, b.id(), b.invoice())
	b.submit(req)
	o := b.wait(req.ID, 30*time.Second)
	if o.Failed == nil || o.Failed.Code != messages.CodeInternal || !o.Failed.Retryable {
		t.Fatalf("want internal_error, got %+v %+v", o.Completed, o.Failed)
	}
	st, err := b.stack.Client.Status(context.Background(), req.ID)
	if err != nil || st.Phase != "failed" || st.Failed.Code != messages.CodeInternal {
		t.Errorf("stored state: %v %+v", err, st)
	}
	dls, err := b.stack.Client.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dls) != 1 || dls[0].Code != string(messages.CodeInternal) {
		t.Errorf("dead letters: %v %+v", err, dls)
	}
	// One event only, even if the request comes again.
	b.submit(req)
	waitState(t, b.stack.Client, req.ID, func(s stateView) bool { return s.Phase == "failed" })
	assertOneEventEach(t, b, []string{req.ID})
}
