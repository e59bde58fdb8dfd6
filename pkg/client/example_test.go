package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// runWorker stands in, for the examples, for a deployed worker and its
// NATS server: it starts an embedded NATS server, the project's Azure
// emulator and one worker, and returns the NATS URL and a function that
// stops them all. script tells the emulator how to answer for an invoice
// name (none: a 202 with Retry-After: 1, then a 200).
func runWorker(script map[string][]emulator.Reply) (url string, stop func()) {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		panic(err)
	}
	s, err := devstack.Start(devstack.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	for inv, replies := range script {
		s.Emulator.Script(inv, replies...)
	}
	return s.NATS.ClientURL(), func() { s.Close(); _ = os.RemoveAll(dir) }
}

// waitFor returns the event about request id, reading w until it comes.
func waitFor(ctx context.Context, w *client.Watcher, id string) (client.Outcome, error) {
	for {
		o, err := w.Next(ctx)
		if err != nil || o.ID == id {
			return o, err
		}
	}
}

// Submit a request, wait for its event, and read its operation's stored
// state.
func Example() {
	url, stop := runWorker(nil)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	c, err := client.New(nc, "") // the default subject prefix
	if err != nil {
		panic(err)
	}
	// Watch before submitting, so that the event cannot be missed.
	w, err := c.Watch(ctx)
	if err != nil {
		panic(err)
	}
	defer w.Stop()

	req := messages.Request{Version: messages.Version, ID: "example-summary-1", Kind: messages.KindInvoiceSummary,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G000000001"}}
	duplicate, err := c.Submit(ctx, req, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("duplicate:", duplicate)

	o, err := waitFor(ctx, w, req.ID)
	if err != nil {
		panic(err)
	}
	if o.Completed != nil {
		fmt.Println("completed:", o.Completed.ID, o.Completed.Kind, "link given:", o.Completed.URL != "")
	}

	op, err := c.Status(ctx, req.ID)
	if err != nil {
		panic(err)
	}
	fmt.Printf("phase %s after %d Azure calls (%d poll)\n", op.Phase, op.AzureCalls, op.Polls)
	// Output:
	// duplicate: false
	// completed: example-summary-1 invoice-summary link given: true
	// phase completed after 2 Azure calls (1 poll)
}

// A failure event carries a code, whether a new request may succeed, and
// Azure's own error.
func ExampleWatcher_Next_failed() {
	url, stop := runWorker(map[string][]emulator.Reply{
		"G000000404": {emulator.Fail(http.StatusNotFound, "InvoiceNotFound", "The invoice was not found.")},
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	c, err := client.New(nc, "")
	if err != nil {
		panic(err)
	}
	w, err := c.Watch(ctx)
	if err != nil {
		panic(err)
	}
	defer w.Stop()

	req := messages.Request{Version: messages.Version, ID: "example-missing-1", Kind: messages.KindInvoice,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G000000404"}}
	if _, err := c.Submit(ctx, req, nil); err != nil {
		panic(err)
	}
	o, err := waitFor(ctx, w, req.ID)
	if err != nil {
		panic(err)
	}
	if f := o.Failed; f != nil {
		fmt.Println("failed:", f.Code, "retryable:", f.Retryable)
		if f.Azure != nil {
			fmt.Println("azure:", f.Azure.Status, f.Azure.Code)
		}
	}
	op, err := c.Status(ctx, req.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println("phase:", op.Phase, "terminal:", op.Phase.Terminal())
	// Output:
	// failed: azure_error retryable: false
	// azure: 404 InvoiceNotFound
	// phase: failed terminal: true
}

// A request sent again after its operation ended is a duplicate: the
// worker publishes no second event, and Outcome answers it from the
// stored state instead. Status of an id no worker accepted is
// ErrNoState.
func ExampleClient_Outcome() {
	url, stop := runWorker(map[string][]emulator.Reply{"G000000002": {emulator.OK()}})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	c, err := client.New(nc, "")
	if err != nil {
		panic(err)
	}
	w, err := c.Watch(ctx)
	if err != nil {
		panic(err)
	}
	defer w.Stop()
	req := messages.Request{Version: messages.Version, ID: "example-invoice-2", Kind: messages.KindInvoice,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G000000002"}}
	if _, err := c.Submit(ctx, req, nil); err != nil {
		panic(err)
	}
	if _, err := waitFor(ctx, w, req.ID); err != nil {
		panic(err)
	}

	// The same request again.
	duplicate, err := c.Submit(ctx, req, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println("duplicate:", duplicate)
	o, ok, err := c.Outcome(ctx, req)
	if err != nil {
		panic(err)
	}
	if ok && o.Completed != nil {
		fmt.Println("answered from the stored state:", o.Completed.ID, o.Completed.Invoice.Name)
		fmt.Println("event subject:", o.Subject)
	}

	if _, err := c.Status(ctx, "never-sent"); errors.Is(err, client.ErrNoState) {
		fmt.Println("never-sent:", err)
	}
	// Output:
	// duplicate: true
	// answered from the stored state: example-invoice-2 G000000002
	// event subject: billing.events.completed.invoice.example-invoice-2
	// never-sent: no stored state for this request id
}
