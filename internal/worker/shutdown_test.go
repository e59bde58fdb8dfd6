package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

func probe(t *testing.T, h http.Handler, path string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code
}

// Readiness is false until the worker has set up its streams, true while it
// runs, and false again while it drains; in-flight work finishes first.
func TestReadinessAndDrain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The stack's own worker is stopped, so this one takes the request.
	if err := b.stack.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	w, _ := b.ownWorker()
	h := w.Health()
	if code := probe(t, h, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("ready before Run: %d", code)
	}
	if code := probe(t, h, "/livez"); code != http.StatusOK {
		t.Fatalf("livez: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testwait.For(t, 10*time.Second, "ready", func() bool { return probe(t, h, "/readyz") == http.StatusOK })

	// A slow Azure answer keeps a request in flight while we shut down.
	inv := b.invoice()
	b.emu.Script(inv, emulator.OK().After(1500*time.Millisecond))
	req := devstack.Sample(messages.KindInvoice, b.id(), inv)
	b.submit(req)
	testwait.For(t, 10*time.Second, "the in-flight request's Azure call", func() bool { return len(b.emu.CallsFor(inv)) > 0 || len(b.emu.Calls()) > 0 })
	cancel()
	testwait.For(t, 5*time.Second, "not ready once draining", func() bool { return probe(t, h, "/readyz") == http.StatusServiceUnavailable })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(b.stack.Config.DrainTimeout + 5*time.Second):
		t.Fatal("Run did not return within the drain timeout")
	}
	o := b.wait(req.ID, eventTimeout)
	if o.Completed == nil {
		t.Fatalf("the in-flight request did not complete during the drain: %+v", o.Failed)
	}
}
