package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// benchKind is the operation every benchmark request asks for: "Invoices -
// Download Summary By Billing Account", a POST answered 200 or 202.
const benchKind = messages.KindInvoiceSummary

// publishStallWait is how long a publish waits for room among the
// unacknowledged ones before failing.
const publishStallWait = 30 * time.Second

// batch is a set of requests encoded before the clock starts.
type batch struct {
	// rate paces the publishing (requests per second; 0: as fast as the
	// stream takes them).
	rate    float64
	tag     string
	ids     []string
	invs    []string
	bodies  [][]byte
	subject string
}

// newBatch encodes n valid requests; request i asks about invoice
// devstack.InvoiceName(tag, i), so that the emulator can be scripted per
// request.
func newBatch(l messages.Layout, tag string, n int) (*batch, error) {
	b := &batch{tag: tag, subject: l.Request(benchKind)}
	for i := range n {
		id := fmt.Sprintf("%s-%07d", tag, i)
		inv := devstack.InvoiceName(tag, i)
		data, err := json.Marshal(devstack.Sample(benchKind, id, inv))
		if err != nil {
			return nil, err
		}
		b.ids, b.invs, b.bodies = append(b.ids, id), append(b.invs, inv), append(b.bodies, data)
	}
	return b, nil
}

// index returns the request number of id, or -1 when id is not of the
// batch.
func (b *batch) index(id string) int {
	rest, ok := strings.CutPrefix(id, b.tag+"-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= len(b.ids) {
		return -1
	}
	return i
}

// publish submits the batch as cmd/enqueue does (the request id as
// Nats-Msg-Id on the kind's subject), but asynchronously, so that the
// publisher is not what is measured. It returns when every publish is
// acknowledged.
func (b *batch) publish(ctx context.Context, js jetstream.JetStream) error {
	futures := make([]jetstream.PubAckFuture, 0, len(b.ids))
	start := time.Now()
	for i, id := range b.ids {
		if b.rate > 0 {
			// Paced: request i goes out i/rate after the first.
			if d := time.Until(start.Add(time.Duration(float64(i) / b.rate * float64(time.Second)))); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		m := nats.NewMsg(b.subject)
		m.Data = b.bodies[i]
		// A loaded machine can keep the stream from acknowledging 4,096
		// publishes within the client's default stall wait (200 ms).
		f, err := js.PublishMsgAsync(m, jetstream.WithMsgID(id), jetstream.WithStallWait(publishStallWait))
		if err != nil {
			return fmt.Errorf("publish %s: %w", id, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		return errors.New("publish: no acknowledgement of every request within 5 minutes")
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				return fmt.Errorf("publish %s: the stream took it for a duplicate", b.ids[i])
			}
		case err := <-f.Err():
			return fmt.Errorf("publish %s: %w", b.ids[i], err)
		}
	}
	return nil
}

// collected is what came back for a batch.
type collected struct {
	last      time.Time // when the last event arrived
	completed []*messages.Completed
}

// collect reads events until every request of the batch has its
// completion event. Any failure event, an event for an unknown request or
// a second event for one is an error.
func (b *batch) collect(ctx context.Context, w *client.Watcher, timeout time.Duration) (collected, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := collected{completed: make([]*messages.Completed, len(b.ids))}
	for got := 0; got < len(b.ids); got++ {
		o, err := w.Next(ctx)
		if err != nil {
			return out, fmt.Errorf("%d of %d completion events received: %w", got, len(b.ids), err)
		}
		i := b.index(o.ID)
		switch {
		case i < 0:
			return out, fmt.Errorf("event for a request not of this run: %q on %s", o.ID, o.Subject)
		case o.Failed != nil:
			return out, fmt.Errorf("request %s failed: %s: %s", o.ID, o.Failed.Code, o.Failed.Message)
		case o.Completed == nil:
			return out, fmt.Errorf("request %s: event without outcome", o.ID)
		case out.completed[i] != nil:
			return out, fmt.Errorf("request %s: a second completion event", o.ID)
		case o.Completed.URL == "":
			return out, fmt.Errorf("request %s: completion event without url", o.ID)
		}
		out.completed[i] = o.Completed
		out.last = time.Now()
	}
	return out, nil
}

// run submits the batch and waits for its events; it returns the time from
// the first publish to the last event.
func (b *batch) run(ctx context.Context, cl *client.Client, js jetstream.JetStream, timeout time.Duration) (time.Duration, collected, error) {
	w, err := cl.Watch(ctx)
	if err != nil {
		return 0, collected{}, err
	}
	defer w.Stop()
	start := time.Now()
	pubErr := make(chan error, 1)
	go func() { pubErr <- b.publish(ctx, js) }()
	c, err := b.collect(ctx, w, timeout)
	if perr := <-pubErr; perr != nil {
		return 0, c, perr
	}
	if err != nil {
		return 0, c, err
	}
	return c.last.Sub(start), c, nil
}

// bench is one devstack (embedded NATS, emulator, one worker) with the
// transport and credential the azcore loop shares.
type bench struct {
	s      *devstack.Stack
	js     jetstream.JetStream // the bench's own publisher
	loopTr policy.Transporter
	secret string
	dir    string
}

// startBench brings a stack up with one worker of the given concurrency,
// Azure answering def, and warms it up (token, connections).
func startBench(ctx context.Context, root, name string, conc int, def []emulator.Reply, configure func(*config.Config), opts ...worker.Option) (*bench, error) {
	dir, err := os.MkdirTemp(root, name+"-")
	if err != nil {
		return nil, err
	}
	s, err := devstack.Start(devstack.Options{
		Dir:      dir,
		Emulator: emulator.Options{Default: def},
		Configure: func(c *config.Config) {
			c.Concurrency = conc
			c.MaxAckPending = max(c.MaxAckPending, conc)
			c.LogLevel = "error"
			// These parts measure the worker, not Azure's budget (the
			// throttle part does), nor the archive (the archive part does).
			c.Throttle = false
			c.ArchiveStore = "none"
			if configure != nil {
				configure(c)
			}
		},
		AzureTransport:   func(emu *emulator.Server) policy.Transporter { return newTransport(emu.CertPool(), 256, 0) },
		WorkerOptionsFor: func(int) []worker.Option { return opts },
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	secret, err := os.ReadFile(filepath.Join(dir, "client-secret"))
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	js, err := jetstream.New(s.Conn, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	b := &bench{s: s, js: js, secret: string(secret), dir: dir, loopTr: newTransport(s.Emulator.CertPool(), 256, 0)}
	// Warm up: the token, the connections, the streams' first blocks.
	s.Emulator.SetDefault(emulator.OK())
	warm, err := newBatch(s.Client.Layout(), "warm"+name, 2*conc+20)
	if err == nil {
		_, _, err = warm.run(ctx, s.Client, js, time.Minute)
	}
	if err != nil {
		b.close()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	s.Emulator.Reset()
	return b, nil
}

func (b *bench) close() {
	b.s.Close()
	os.RemoveAll(b.dir)
}

// timeoutFor is a generous bound for n operations (a failure, not a
// measurement).
func timeoutFor(n int, extra time.Duration) time.Duration {
	return extra + time.Minute + time.Duration(n)*5*time.Millisecond
}
