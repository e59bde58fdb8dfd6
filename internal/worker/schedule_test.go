package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/natstest"
	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// every2s is a schedule without a period firing every two seconds (a
// cron with a seconds field); its requests are invoice summaries.
func every2s(b *testBundle, id string) messages.Schedule {
	return messages.Schedule{
		Version: 1, ID: id, Cron: "*/2 * * * * *",
		Request: messages.ScheduledRequest{Kind: messages.KindInvoiceSummary, Params: messages.Params{BillingAccountName: "12345678", InvoiceName: b.invoice()}},
	}
}

// covered returns the period keys schedule id covered, oldest first.
func covered(t *testing.T, c *client.Client, id string) []string {
	t.Helper()
	v, err := c.GetSchedule(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := len(v.Periods) - 1; i >= 0; i-- { // the record's order: oldest first
		keys = append(keys, v.Periods[i].Key)
	}
	return keys
}

// fireTime reads a period key of a schedule without a period (the fire's
// time in UTC).
func fireTime(t *testing.T, key string) time.Time {
	t.Helper()
	at, err := time.Parse("20060102T150405Z", key)
	if err != nil {
		t.Fatalf("period key %q: %v", key, err)
	}
	return at
}

// contiguous fails unless keys are fires every step apart, none missing
// and none twice.
func contiguous(t *testing.T, keys []string, step time.Duration) {
	t.Helper()
	for i := 1; i < len(keys); i++ {
		if d := fireTime(t, keys[i]).Sub(fireTime(t, keys[i-1])); d != step {
			t.Fatalf("periods %s then %s: %s apart, want %s (all: %v)", keys[i-1], keys[i], d, step, keys)
		}
	}
}

// oneEventEach waits for every period's request to end and fails unless
// each ended exactly once.
func oneEventEach(b *testBundle, sched string, keys []string) {
	b.t.Helper()
	for _, k := range keys {
		id := sched + "-" + k
		b.wait(id, 30*time.Second)
	}
	b.workSettled(30 * time.Second)
	for _, k := range keys {
		if n := len(b.events(sched + "-" + k)); n != 1 {
			b.t.Errorf("period %s: %d events, want 1", k, n)
		}
	}
}

func TestScheduleFiresOneRequestPerFireWithTwoWorkers(t *testing.T) {
	t.Parallel()
	b := setupWorkers(t, 2)
	c := b.stack.Client
	s := every2s(b, "two-workers")
	if created, err := c.PutSchedule(context.Background(), s); err != nil || !created {
		t.Fatalf("PutSchedule = %v, %v", created, err)
	}
	testwait.For(t, 30*time.Second, "four fires covered", func() bool { return len(covered(t, c, s.ID)) >= 4 })
	keys := covered(t, c, s.ID)
	contiguous(t, keys, 2*time.Second)
	oneEventEach(b, s.ID, keys)
	for _, k := range keys {
		if sec := fireTime(t, k).Second(); sec%2 != 0 {
			t.Errorf("period %s: not a fire of */2", k)
		}
	}
	o := b.events(s.ID + "-" + keys[0])[0]
	if o.Failed != nil && o.Failed.Labels[messages.LabelSchedule] != s.ID || o.Completed != nil && o.Completed.Labels[messages.LabelSchedule] != s.ID {
		t.Errorf("the request's event lacks the schedule label: %+v", o)
	}
}

func setupWorkers(t *testing.T, n int) *testBundle {
	t.Helper()
	b := setup(t)
	for range n - 1 {
		if err := b.stack.StartWorker(); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestScheduleEditPauseResumeDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.stack.Client
	ctx := context.Background()
	// clock fires throughout: its periods prove time passed, so that
	// "nothing happened" to the other is observed, not slept on.
	clock := every2s(b, "clock")
	s := every2s(b, "edited")
	for _, x := range []messages.Schedule{clock, s} {
		if _, err := c.PutSchedule(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	ticks := func(n int) {
		t.Helper()
		from := len(covered(t, c, clock.ID))
		testwait.For(t, 30*time.Second, "the clock schedule fires", func() bool { return len(covered(t, c, clock.ID)) >= from+n })
	}
	testwait.For(t, 30*time.Second, "the schedule fires", func() bool { return len(covered(t, c, s.ID)) >= 2 })

	// Replaced: every 3 seconds from now on.
	s.Cron = "*/3 * * * * *"
	if created, err := c.PutSchedule(ctx, s); err != nil || created {
		t.Fatalf("replace: %v, %v", created, err)
	}
	before := len(covered(t, c, s.ID))
	testwait.For(t, 30*time.Second, "the replaced schedule fires", func() bool { return len(covered(t, c, s.ID)) >= before+3 })
	keys := covered(t, c, s.ID)
	// The first fire after the edit may be one of the old expression's,
	// on its way when the schedule was replaced; the later ones follow
	// the new one.
	for _, k := range keys[before+1:] {
		if fireTime(t, k).Second()%3 != 0 {
			t.Errorf("after the edit, period %s is not a fire of */3 (all: %v)", k, keys)
		}
	}

	// Paused: nothing while the clock ticks.
	if err := c.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	paused := len(covered(t, c, s.ID))
	ticks(1) // a fire on its way when it was paused starts nothing either
	paused = max(paused, len(covered(t, c, s.ID)))
	ticks(3)
	if n := len(covered(t, c, s.ID)); n != paused {
		t.Fatalf("paused, the schedule covered %d more periods", n-paused)
	}
	v, _ := c.GetSchedule(ctx, s.ID)
	if !v.Paused || !v.Next.IsZero() {
		t.Errorf("paused schedule: paused %v, next %v", v.Paused, v.Next)
	}

	// Resumed: fires again, without catching up the paused stretch.
	if err := c.ResumeSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "the resumed schedule fires", func() bool { return len(covered(t, c, s.ID)) >= paused+2 })
	keys = covered(t, c, s.ID)
	if gap := fireTime(t, keys[paused]).Sub(fireTime(t, keys[paused-1])); gap < 6*time.Second {
		t.Errorf("resumed: the paused stretch was caught up (%v)", keys)
	}

	// Deleted: the record and the server's schedule are gone.
	if err := c.DeleteSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSchedule(ctx, s.ID); !errors.Is(err, client.ErrNoSchedule) {
		t.Fatalf("deleted schedule: %v", err)
	}
	js, _ := jetstream.New(b.stack.Conn)
	work, err := js.Stream(ctx, c.Layout().WorkStream())
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the server's schedule removed", func() bool {
		_, err := work.GetLastMsgForSubject(ctx, c.Layout().ScheduleSubject(s.ID))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	ticks(2)
	if _, err := c.GetSchedule(ctx, s.ID); !errors.Is(err, client.ErrNoSchedule) {
		t.Fatalf("a fire brought the deleted schedule back: %v", err)
	}
	b.workSettled(30 * time.Second)
	if err := c.PauseSchedule(ctx, "no-such"); !errors.Is(err, client.ErrNoSchedule) {
		t.Errorf("pause of an unknown schedule: %v", err)
	}
}

// The server fires once after it was down and skips the rest; the worker
// starts the periods of the fires it missed, each once.
func TestScheduleCatchesUpFiresMissedWhileNATSWasDown(t *testing.T) { //nolint:paralleltest // stops and restarts its NATS server on a fixed port
	b := setup(t)
	c := b.stack.Client
	s := every2s(b, "catch-up")
	if _, err := c.PutSchedule(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "the schedule fires", func() bool { return len(covered(t, c, s.ID)) >= 1 })
	b.stack.StopNATS()
	down := time.Now()
	// The downtime itself: three fires or more pass.
	if err := testwait.Until(30*time.Second, "7s of downtime", func() bool { return time.Since(down) > 7*time.Second }); err != nil {
		t.Fatal(err)
	}
	if err := b.stack.RestartNATS(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 60*time.Second, "fires after the restart", func() bool {
		keys, err := keysOf(c, s.ID)
		return err == nil && len(keys) > 0 && fireTime(t, keys[len(keys)-1]).After(down.Add(8*time.Second))
	})
	keys := covered(t, c, s.ID)
	contiguous(t, keys, 2*time.Second)
	oneEventEach(b, s.ID, keys)
}

func keysOf(c *client.Client, id string) ([]string, error) {
	v, err := c.GetSchedule(context.Background(), id)
	var keys []string
	for i := len(v.Periods) - 1; i >= 0; i-- { // the record's order: oldest first
		keys = append(keys, v.Periods[i].Key)
	}
	return keys, err
}

// A fire while no worker runs waits in the stream and is handled, for
// its own period, by the next worker to start.
func TestScheduleFireWhileEveryWorkerIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.stack.Client
	ctx := context.Background()
	s := every2s(b, "no-workers")
	s.Cron = "@every 2s"
	if _, err := c.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "the schedule fires", func() bool { return len(covered(t, c, s.ID)) >= 1 })
	if err := b.stack.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(b.stack.Conn)
	cons, err := js.Consumer(ctx, c.Layout().WorkStream(), "fires")
	if err != nil {
		t.Fatal(err)
	}
	var firstWaiting time.Time
	testwait.For(t, 30*time.Second, "a fire waiting for a worker", func() bool {
		info, err := cons.Info(ctx)
		if err != nil || info.NumPending == 0 {
			return false
		}
		m, err := js.Stream(ctx, c.Layout().WorkStream())
		if err != nil {
			return false
		}
		raw, err := m.GetLastMsgForSubject(ctx, c.Layout().ScheduleFire(s.ID))
		if err != nil {
			return false
		}
		firstWaiting = raw.Time
		return true
	})
	if err := c.PauseSchedule(ctx, "none"); !errors.Is(err, client.ErrNoSchedule) {
		t.Fatal(err)
	}
	if err := b.stack.StartWorker(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "the waiting fire's period", func() bool {
		keys, _ := keysOf(c, s.ID)
		return slices.ContainsFunc(keys, func(k string) bool {
			d := fireTime(t, k).Sub(firstWaiting.Truncate(time.Second))
			return d >= -time.Second && d <= time.Second
		})
	})
	if err := c.DeleteSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
}

// A backfill and a run of the same period make one request.
func TestScheduleBackfillAndRunShareIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.stack.Client
	ctx := context.Background()
	s := messages.Schedule{
		Version: 1, ID: "monthly", Cron: "0 0 6 10 * *", TimeZone: "Europe/Amsterdam", Period: schedule.PreviousMonth,
		Request: messages.ScheduledRequest{Kind: messages.KindAccountInvoices, Params: messages.Params{BillingAccountName: "12345678"}},
	}
	if _, err := c.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 31, 0, 0, 0, 0, time.UTC)
	reqs, err := c.BackfillSchedule(ctx, s.ID, from, to, 13)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "monthly-2025-01 monthly-2025-02 monthly-2025-03" || reqs[1].Params.PeriodEndDate != "2025-02-28" {
		t.Fatalf("backfill = %v (%+v)", ids, reqs[1].Params)
	}
	for _, id := range ids {
		b.wait(id, 30*time.Second)
	}
	r, err := c.RunSchedule(ctx, s.ID, "2025-02")
	if err != nil || r.ID != "monthly-2025-02" {
		t.Fatalf("run = %v, %v", r.ID, err)
	}
	if _, err := c.RunSchedule(ctx, s.ID, "2025-02-03"); err == nil {
		t.Error("run took a day as a month's period")
	}
	b.workSettled(30 * time.Second)
	for _, id := range ids {
		if n := len(b.events(id)); n != 1 {
			t.Errorf("%s: %d events, want 1", id, n)
		}
	}
	v, err := c.GetSchedule(ctx, s.ID)
	if err != nil || len(v.Periods) != 3 || v.Periods[0].Key != "2025-03" || v.Periods[0].Phase == "" {
		t.Errorf("show = %+v, %v", v.Periods, err)
	}
	if v.Next.Location().String() != "Europe/Amsterdam" || v.Next.Day() != 10 || v.Next.Hour() != 6 {
		t.Errorf("next fire %v", v.Next)
	}
}

// Without message schedules on the work stream, a schedule is refused
// with a clear error.
func TestScheduleRefusedWithoutMessageSchedules(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t)
	ctx := context.Background()
	l := messages.NewLayout("")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: l.WorkStream(), Subjects: []string{l.Requests(), l.Internal()}}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(js.Conn(), "")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{t: t}
	_, err = c.PutSchedule(ctx, every2s(b, "refused"))
	if !errors.Is(err, client.ErrSchedulesUnsupported) || !strings.Contains(err.Error(), "AllowMsgSchedules") {
		t.Fatalf("PutSchedule = %v", err)
	}
	// The server itself refuses a schedule on such a stream.
	m := nats.NewMsg(l.ScheduleSubject("refused"))
	m.Header.Set("Nats-Schedule", "@every 1s")
	m.Header.Set("Nats-Schedule-Target", l.ScheduleFire("refused"))
	if _, err := js.PublishMsg(ctx, m); err == nil {
		t.Error("the server took a schedule on a stream without AllowMsgSchedules")
	}
	// Requests still go through.
	if _, err := c.Submit(ctx, messages.Request{Version: 1, ID: "still-works", Kind: messages.KindInvoiceSummary,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G1"}}, nil); err != nil {
		t.Errorf("submit: %v", err)
	}
	_ = devstack.InvoiceName
}

// A fire whose handling keeps failing (here: the request its schedule
// makes is larger than the work stream takes, so every publish is
// refused) is dead-lettered as a fire after max-deliver deliveries, with
// why, on <prefix>.deadletter.~fire.<seq>: not read as a request, not
// called invalid, no failure event for a request that never was.
func TestScheduleFireThatKeepsFailingIsDeadLetteredAsAFire(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.MaxDeliver, c.MaxRequestBytes = 2, 1024 })
	c := b.stack.Client
	ctx := context.Background()
	s := every2s(b, "too-big")
	if _, err := c.PutSchedule(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The record as a tool with a larger limit may have written it: the
	// template's labels make every request over 1024 bytes. (The
	// schedule's message, armed above, stays small.)
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, c.Layout().ScheduleBucket())
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	var rec schedule.Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	rec.Schedule.Request.Labels = map[string]string{}
	for i := range 8 {
		rec.Schedule.Request.Labels[fmt.Sprintf("l%d", i)] = strings.Repeat("x", 200)
	}
	if _, err := schedule.Compile(rec.Schedule); err != nil {
		t.Fatalf("the record must stay a valid schedule: %v", err)
	}
	if _, err := kv.Update(ctx, s.ID, mustJSON(t, rec), e.Revision()); err != nil {
		t.Fatal(err)
	}

	var dl client.DeadLetter
	testwait.ForNoError(t, 60*time.Second, "a fire dead-lettered", func() error {
		dls, err := c.DeadLetters(ctx, 0, 100)
		if err != nil {
			return err
		}
		for _, d := range dls {
			if d.OriginalSubject == c.Layout().ScheduleFire(s.ID) {
				dl = d
				return nil
			}
		}
		return fmt.Errorf("%d dead letters, none of the fires", len(dls))
	})
	layout := c.Layout()
	if want := layout.FireDeadLetter(mustUint(t, dl.Header.Get(messages.HeaderOrigSeq))); dl.Subject != want {
		t.Errorf("dead letter on %s, want %s", dl.Subject, want)
	}
	if dl.Code != string(messages.CodeInternal) || !strings.Contains(dl.Error, "schedule fire not handled after 2 deliveries") ||
		!strings.Contains(dl.Error, "schedule "+s.ID) || strings.Contains(dl.Error, "invalid") {
		t.Errorf("dead letter %s: %s", dl.Code, dl.Error)
	}
	if err := c.Replay(ctx, dl.Sequence, nil); err == nil || !strings.Contains(err.Error(), "schedule run "+s.ID) {
		t.Errorf("replay of a fire: %v, want a refusal that points at schedule run", err)
	}
	var body messages.Schedule
	if err := json.Unmarshal(dl.Data, &body); err != nil || body.ID != s.ID {
		t.Errorf("the dead letter's body is not the fire's schedule: %v: %s", err, dl.Data)
	}

	// Stopped, the fires on their way settle (paused: nothing to start):
	// then no rejection event can still be on its way.
	if err := c.PauseSchedule(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	b.workSettled(30 * time.Second)
	b.mu.Lock()
	outcomes := len(b.outcomes)
	b.mu.Unlock()
	if outcomes != 0 {
		t.Errorf("events for %d requests, want none: a fire is no request", outcomes)
	}
	if got := covered(t, c, s.ID); len(got) != 0 {
		t.Errorf("periods recorded covered: %v, want none (the next fire catches them up)", got)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
