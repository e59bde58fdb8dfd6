package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
)

// runScheduler measures nats-server's scheduler alone (no worker): how
// late it fires one-shot schedules (`@at`, sub-second precision), alone
// and by the thousand, into a durable consumer with explicit acks, as the
// worker's wake-ups are.
func runScheduler(ctx context.Context, o options, r *report) error {
	r.printf("\n## nats-server's scheduler (no worker)\n\n")
	dir, err := os.MkdirTemp(o.dir, "sched-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := devstack.StartNATS(devstack.NATSOptions{StoreDir: dir})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SCHED", Subjects: []string{"s.>"}, AllowMsgSchedules: true, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	r.printf("One embedded nats-server (file store), one stream with `AllowMsgSchedules`; each schedule `@at <RFC 3339 with nanoseconds>` on " +
		"a subject of its own, targeting one subject read by a durable pull consumer (explicit acks). Lateness = arrival at the consumer - the schedule's time.\n\n" +
		"| scenario | schedules | publish took | lateness p50 | p99 | max | early | last fired after the last due |\n|---|---|---|---|---|---|---|---|\n")
	type scenario struct {
		name   string
		n      int
		spread time.Duration // the due times are spread evenly over this
		alone  bool          // one at a time, each waited for
	}
	for i, sc := range []scenario{
		{"one alone, due 1 s after its publish, 20 times", 20, 0, true},
		{"due over 1 s", o.schedN / 10, time.Second, false},
		{"due over 10 s", o.schedN, 10 * time.Second, false},
		{"due at one instant", o.schedN, 0, false},
	} {
		if sc.n < 1 || ctx.Err() != nil {
			continue
		}
		progress("scheduler: %s (%d)", sc.name, sc.n)
		var lat durations
		var early int
		var pub, tail time.Duration
		if sc.alone {
			for k := range sc.n {
				l, e, _, _, err := fireSchedules(ctx, js, fmt.Sprintf("a%d-%d", i, k), 1, 0, time.Second)
				if err != nil {
					return err
				}
				lat, early = append(lat, l...), early+e
			}
		} else {
			l, e, p, t, err := fireSchedules(ctx, js, "b"+strconv.Itoa(i), sc.n, sc.spread, 2*time.Second)
			if err != nil {
				return err
			}
			lat, early, pub, tail = l, e, p, t
		}
		lat = lat.sorted()
		r.printf("| %s | %s | %s | %s | %s | %s | %d | %s |\n", sc.name, thousands(float64(sc.n)), ms(pub), ms(lat.quantile(.5)), ms(lat.quantile(.99)),
			ms(lat[len(lat)-1]), early, ms(tail))
	}
	return nil
}

// fireSchedules publishes n schedules under tag, due evenly over spread
// starting lead after the publishing starts, and waits for every fire.
// It returns each fire's lateness, the early ones, how long the publishing
// took, and how long after the last due time the last fire came.
func fireSchedules(ctx context.Context, js jetstream.JetStream, tag string, n int, spread, lead time.Duration) (durations, int, time.Duration, time.Duration, error) {
	target := "s.fired." + tag
	cons, err := js.CreateOrUpdateConsumer(ctx, "SCHED", jetstream.ConsumerConfig{Durable: "c" + tag, FilterSubject: target, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 10000})
	if err != nil {
		return nil, 0, 0, 0, err
	}
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), "SCHED", "c"+tag) }()
	start := time.Now()
	first := start.Add(lead)
	dues := make([]time.Time, n)
	var (
		mu    sync.Mutex
		lat   = make(durations, 0, n)
		early int
		last  time.Time
		done  = make(chan struct{})
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		k, _ := strconv.Atoi(string(m.Data()))
		_ = m.Ack()
		mu.Lock()
		defer mu.Unlock()
		l := now.Sub(dues[k])
		if l < 0 {
			early++
		}
		lat = append(lat, l)
		last = now
		if len(lat) == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, 0, 0, 0, err
	}
	defer cc.Stop()
	for k := range n {
		due := first
		if n > 1 {
			due = first.Add(time.Duration(int64(spread) * int64(k) / int64(n-1)))
		}
		dues[k] = due
	}
	for k := range n {
		m := nats.NewMsg("s.sched." + tag + "." + strconv.Itoa(k))
		m.Data = []byte(strconv.Itoa(k))
		m.Header.Set("Nats-Schedule", "@at "+dues[k].UTC().Format(time.RFC3339Nano))
		m.Header.Set("Nats-Schedule-Target", target)
		if _, err := js.PublishMsgAsync(m); err != nil {
			return nil, 0, 0, 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return nil, 0, 0, 0, ctx.Err()
	}
	pub := time.Since(start)
	select {
	case <-done:
	case <-time.After(lead + spread + 2*time.Minute):
		return nil, 0, 0, 0, fmt.Errorf("scheduler: %d of %d schedules fired", len(lat), n)
	case <-ctx.Done():
		return nil, 0, 0, 0, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return lat, early, pub, last.Sub(dues[n-1]), nil
}
