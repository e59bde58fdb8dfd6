package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func TestStatesAndDeadLetterCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := devstack.Start(devstack.Options{Dir: t.TempDir(), Emulator: emulator.Options{Default: []emulator.Reply{emulator.OK()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if n, err := s.Client.DeadLetterCount(ctx); n != 0 || err != nil {
		t.Errorf("dead letters of a new stack: %d, %v", n, err)
	}
	if dls, err := s.Client.DeadLetters(ctx, 0, 10); len(dls) != 0 || err != nil {
		t.Errorf("dead letters of a new stack: %v, %v", dls, err)
	}
	if states, _, complete, err := s.Client.States(ctx, 0); len(states) != 0 || !complete || err != nil {
		t.Errorf("states of a new stack: %d %v %v", len(states), complete, err)
	}
	w, err := s.Client.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, id := range []string{"list-1", "list-2", "list-3"} {
		if _, err := s.Client.Submit(ctx, devstack.Sample(messages.KindInvoice, id, "G000000001"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for seen := 0; seen < 3; {
		if _, err := w.Next(ctx); err != nil {
			t.Fatal(err)
		}
		seen++
	}
	states, skipped, complete, err := s.Client.States(ctx, 0)
	if len(states) != 3 || skipped != 0 || !complete || err != nil {
		t.Fatalf("states: %d %d %v %v", len(states), skipped, complete, err)
	}
	for _, st := range states {
		if st.Phase != client.PhaseCompleted {
			t.Errorf("%s: %s", st.Request.ID, st.Phase)
		}
	}
	if states, _, complete, err := s.Client.States(ctx, 2); len(states) != 2 || complete || err != nil {
		t.Errorf("states, limit 2: %d %v %v", len(states), complete, err)
	}
	// A prefix with no bucket and no streams yet.
	other, err := client.New(s.Conn, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if states, _, complete, err := other.States(ctx, 0); len(states) != 0 || !complete || err != nil {
		t.Errorf("states, no bucket: %d %v %v", len(states), complete, err)
	}
	if n, err := other.DeadLetterCount(ctx); n != 0 || err != nil {
		t.Errorf("dead letters, no stream: %d %v", n, err)
	}

	// ScanStates sees the same states one at a time, and stops when asked.
	seen := map[string]bool{}
	if skipped, err := s.Client.ScanStates(ctx, func(st client.Operation) error {
		seen[st.Request.ID] = len(st.Calls) == 1 && st.Calls[0].Status == 200
		return nil
	}); skipped != 0 || err != nil || len(seen) != 3 || !seen["list-1"] {
		t.Errorf("scan: %v %v %v", skipped, err, seen)
	}
	n := 0
	if _, err := s.Client.ScanStates(ctx, func(client.Operation) error { n++; return client.ErrStopScan }); err != nil || n != 1 {
		t.Errorf("scan stopped after one: %d %v", n, err)
	}
	if _, err := other.ScanStates(ctx, func(client.Operation) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("scan, no bucket: %d %v", n, err)
	}
	// A deleted key is not seen.
	js, err := jetstream.New(s.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, s.Client.Layout().StateBucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "list-2"); err != nil {
		t.Fatal(err)
	}
	seen = map[string]bool{}
	if _, err := s.Client.ScanStates(ctx, func(st client.Operation) error { seen[st.Request.ID] = true; return nil }); err != nil || len(seen) != 2 || seen["list-2"] {
		t.Errorf("scan after a delete: %v %v", err, seen)
	}
	// DeadLettersSince: none yet, then the one kept, not before its time.
	since := time.Now().Add(-time.Minute)
	count := func(from time.Time) (n int) {
		t.Helper()
		if err := s.Client.DeadLettersSince(ctx, from, func(at time.Time) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(since); n != 0 {
		t.Errorf("dead letters since a minute ago, none kept: %d", n)
	}
	if _, err := s.Client.SubmitRaw(ctx, s.Client.Layout().Request(messages.KindInvoice), "", []byte("not json"), nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the dead letter counted", func() bool { return count(since) == 1 })
	// The rejection's event is stored just after its dead letter.
	testwait.For(t, 10*time.Second, "the rejection's event stored", func() bool {
		_, streams, err := s.Client.Backlog(ctx)
		for _, st := range streams {
			if st.Name == s.Client.Layout().EventsStream() {
				return err == nil && st.Messages >= 4
			}
		}
		return false
	})
	if n := count(time.Now().Add(time.Minute)); n != 0 {
		t.Errorf("dead letters since a minute from now: %d", n)
	}
	if err := other.DeadLettersSince(ctx, since, func(time.Time) error { return nil }); err != nil {
		t.Errorf("dead letters since, no stream: %v", err)
	}

	// Backlog: the worker's consumers, the three streams. The rejected
	// request's failure event is published after its dead letter is kept:
	// wait for it.
	var (
		consumers []client.ConsumerStat
		streams   []client.StreamStat
	)
	testwait.For(t, 10*time.Second, "the failure event of the rejected request", func() bool {
		consumers, streams, err = s.Client.Backlog(ctx)
		for _, st := range streams {
			if st.Name == s.Client.Layout().EventsStream() {
				return st.Messages == 4
			}
		}
		return err != nil
	})
	names := map[string]bool{}
	for _, c := range consumers {
		names[c.Name] = true
	}
	if err != nil || !names[worker.RequestsConsumer] || !names[worker.PollsConsumer] || len(streams) != 3 {
		t.Fatalf("backlog: %v %+v %+v", err, consumers, streams)
	}
	for _, st := range streams {
		if st.Name == s.Client.Layout().EventsStream() && st.Messages != 4 { // three completed, one rejected
			t.Errorf("events stream: %+v", st)
		}
	}
	if c, st, err := other.Backlog(ctx); err != nil || len(c) != 0 || len(st) != 0 {
		t.Errorf("backlog, no streams: %v %v %v", c, st, err)
	}
}
