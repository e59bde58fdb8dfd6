package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// testBundle is one stack (embedded NATS, emulator, worker) and a watcher
// of its events, for one test.
type testBundle struct {
	t     *testing.T
	stack *devstack.Stack
	emu   *emulator.Server

	mu       sync.Mutex
	outcomes map[string][]client.Outcome
	signal   chan struct{}
}

var testSeq atomic.Int64

func setup(t *testing.T, configure ...func(*config.Config)) *testBundle {
	t.Helper()
	stack, err := devstack.Start(devstack.Options{
		Dir:    t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Configure: func(c *config.Config) {
			c.Concurrency = 16
			c.MaxAckPending = 64
			roomyThrottle(c)
			for _, f := range configure {
				f(c)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	return watch(t, stack)
}

// watch collects every event of the stack for the test.
func watch(t *testing.T, stack *devstack.Stack) *testBundle {
	t.Helper()
	b := &testBundle{t: t, stack: stack, emu: stack.Emulator, outcomes: map[string][]client.Outcome{}, signal: make(chan struct{}, 1)}
	w, err := stack.Client.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); w.Stop(); <-done })
	go func() {
		defer close(done)
		for {
			o, err := w.Next(ctx)
			if err != nil {
				return
			}
			b.mu.Lock()
			b.outcomes[o.ID] = append(b.outcomes[o.ID], o)
			b.mu.Unlock()
			select {
			case b.signal <- struct{}{}:
			default:
			}
		}
	}()
	return b
}

// testWriter sends the worker's logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// id returns a fresh request id.
func (b *testBundle) id() string {
	return "t" + time.Now().Format("150405") + "-" + string(rune('a'+testSeq.Add(1)%26)) + itoa(testSeq.Load())
}

func itoa(n int64) string {
	const digits = "0123456789"
	if n == 0 {
		return "0"
	}
	var out []byte
	for ; n > 0; n /= 10 {
		out = append([]byte{digits[n%10]}, out...)
	}
	return string(out)
}

// invoice returns a fresh invoice name to script the emulator with.
func (b *testBundle) invoice() string {
	return devstack.InvoiceName("T", int(testSeq.Add(1)))
}

func (b *testBundle) submit(req messages.Request) {
	b.t.Helper()
	if _, err := b.stack.Client.Submit(context.Background(), req, nil); err != nil {
		b.t.Fatal(err)
	}
}

// wait returns the first event about id, failing the test after timeout.
func (b *testBundle) wait(id string, timeout time.Duration) client.Outcome {
	b.t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		got := b.outcomes[id]
		b.mu.Unlock()
		if len(got) > 0 {
			return got[0]
		}
		select {
		case <-b.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			b.t.Fatalf("no event for request %s within %s", id, timeout)
		}
	}
}

// events returns every event seen so far about id.
func (b *testBundle) events(id string) []client.Outcome {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]client.Outcome(nil), b.outcomes[id]...)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleSummary(id, invoice string) messages.Request {
	return devstack.Sample(messages.KindInvoiceSummary, id, invoice)
}

// countEvents reads the whole events stream and counts events per request
// id.
func countEvents(t *testing.T, nc *nats.Conn, stream string) map[string]int {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		counts[m.Headers().Get(messages.HeaderRequestID)]++
	}
	return counts
}

// workSettled waits until no consumer of the work stream has a message to
// deliver or awaiting its ack. From then on nothing can be redelivered, and
// every event that a delivery published is in the events stream.
func (b *testBundle) workSettled(timeout time.Duration) {
	b.t.Helper()
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx := context.Background()
	testwait.ForNoError(b.t, timeout, "the work stream's consumers settled", func() error {
		s, err := js.Stream(ctx, b.stack.Client.Layout().WorkStream())
		if err != nil {
			return err
		}
		consumers := s.ListConsumers(ctx)
		for info := range consumers.Info() {
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("consumer %s: %d to deliver, %d awaiting ack", info.Name, info.NumPending, info.NumAckPending)
			}
		}
		return consumers.Err()
	})
}

// ownWorker returns a worker of the stack's configuration on a connection
// of its own (closed at the end of the test), not yet running.
func (b *testBundle) ownWorker() (*worker.Worker, *nats.Conn) {
	b.t.Helper()
	nc, err := nats.Connect(b.stack.Config.NATSURL)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(nc.Close)
	profiles, err := b.stack.Config.AzureProfiles(config.AzureDeps{Transport: b.emu.Client()})
	if err != nil {
		b.t.Fatal(err)
	}
	w, err := worker.New(b.stack.Config.Worker(), nc, profiles, slog.New(slog.NewTextHandler(testWriter{b.t}, nil)))
	if err != nil {
		b.t.Fatal(err)
	}
	return w, nc
}
