package natstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
)

// The smallest reproduction of the NATS server behaviour the worker's
// wake-up watchdog exists for (docs/architecture.md): a one-shot schedule
// that falls due while the file store refuses writes never fires, not even
// once space is freed; a new schedule (or deleting the stuck one) clears
// it. The test holds the server to that behaviour, so that an upgrade
// which fixes it is noticed (and the watchdog can then be reconsidered).
func TestServerDropsScheduleDueWhileStoreFull(t *testing.T) {
	t.Parallel()
	srv, err := devstack.StartNATS(devstack.NATSOptions{StoreDir: t.TempDir(), MaxFileStore: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, AllowMsgSchedules: true})
	if err != nil {
		t.Fatal(err)
	}
	fill, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "F", Subjects: []string{"f"}})
	if err != nil {
		t.Fatal(err)
	}
	schedule := func(subject string, at time.Time, msgID string) *jetstream.PubAck {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
		m.Header.Set("Nats-Schedule-Target", "s.fired")
		if msgID != "" {
			m.Header.Set(nats.MsgIdHdr, msgID)
		}
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	fired := func() uint64 {
		t.Helper()
		info, err := s.Info(ctx, jetstream.WithSubjectFilter("s.fired"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects["s.fired"]
	}

	due := time.Now().Add(time.Second)
	first := schedule("s.schedule.a", due, "")
	for { // fill the store until it refuses a write (10023, insufficient resources)
		_, err := js.Publish(ctx, "f", make([]byte, 32<<10))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == 10023 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The server's scheduler runs at least every 250 ms: past this, it
	// has tried to fire the schedule into the full store. A wait on the
	// clock: the server says nothing of the fire it dropped.
	for time.Since(due) < 2*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	if err := fill.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	// A second schedule, due after space was freed, fires: the scheduler
	// runs; the first one stays stored and never fires.
	schedule("s.schedule.b", time.Now(), "")
	deadline := time.Now().Add(10 * time.Second)
	for fired() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := fired(); n != 1 {
		t.Fatalf("%d fired, want 1 (the schedule due after the store was freed)", n)
	}
	if _, err := s.GetMsg(ctx, first.Sequence); err != nil {
		t.Fatalf("the schedule due while the store was full is gone (%v): has the server's behaviour changed?", err)
	}
	// What the watchdog does: schedule it again, once (a message id), and
	// delete the stuck one.
	for range 2 {
		schedule("s.schedule.a2", time.Now(), "rearm.a")
	}
	if err := s.DeleteMsg(ctx, first.Sequence); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for fired() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := fired(); n != 2 {
		t.Fatalf("%d fired, want 2", n)
	}
}
