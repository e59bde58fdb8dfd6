package throttle_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/natstest"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/messages"
)

// bucket starts a real NATS server with JetStream and returns the
// throttle bucket and its JetStream context.
func bucket(t *testing.T) (jetstream.KeyValue, jetstream.JetStream) {
	t.Helper()
	js := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, throttle.BucketConfig(messages.NewLayout(""), 1))
	if err != nil {
		t.Fatal(err)
	}
	return kv, js
}

// Three handles (three replicas) reserving at once in one scope share one
// bucket: no slot is handed out twice, and the slots past the burst follow
// the rate.
func TestReplicasShareOneBucket(t *testing.T) {
	t.Parallel()
	kv, js := bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lim := map[throttle.Class]throttle.Limit{throttle.BillingWrites: {Rate: throttle.Rate{Calls: 20, Per: time.Second}, Burst: 10}}
	replicas := []*throttle.Throttle{throttle.New(kv, lim), throttle.New(kv, lim), throttle.New(kv, lim)}
	scope := throttle.ScopeOf("default", messages.KindInvoiceSummary, false)
	// A first answer without a remaining-budget header ends the scope's
	// probe: the configured limit is enforced from then on.
	if o, err := replicas[0].ObserveAnswer(ctx, scope, http.Header{}, 0, false); err != nil || o.Reported || o.Entry.Learned == nil {
		t.Fatalf("first answer: %+v %v", o, err)
	}
	start := time.Now()
	var mu sync.Mutex
	var slots []time.Time
	var wg sync.WaitGroup
	for _, r := range replicas {
		for range 10 {
			wg.Go(func() {
				g, err := r.Reserve(ctx, scope)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				slots = append(slots, g.At)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	// 30 calls, burst 10, 20/s: the last slot is 20 intervals (1 s) after
	// the burst; every slot is distinct.
	seen := map[time.Time]bool{}
	var last time.Time
	for _, s := range slots {
		if s.After(start) && seen[s] {
			t.Errorf("slot %s handed out twice", s.Sub(start))
		}
		seen[s] = true
		if s.After(last) {
			last = s
		}
	}
	if d := last.Sub(start); d < 950*time.Millisecond || d > 2*time.Second {
		t.Errorf("last slot after %s, want about 1s", d)
	}
	st, err := throttle.List(ctx, js, messages.NewLayout(""))
	if err != nil || len(st) != 1 || st[0].Scope != scope || st[0].Calls != 30 || st[0].Deferred != 20 || st[0].Rate != "20/1s" {
		t.Fatalf("list: %v %+v", err, st)
	}
}

// Before a scope's first answer the probe takes a slot and the calls
// held while its answer is awaited take none: each asks again when woken
// (a held call that went on its wake-up would skip the bucket the answer
// taught). After the answer every call takes a slot.
func TestProbeHoldsTakeNoSlot(t *testing.T) {
	t.Parallel()
	kv, _ := bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	th := throttle.New(kv, nil)
	scope := throttle.ScopeOf("default", messages.KindInvoiceSummary, false)
	probe, err := th.Reserve(ctx, scope)
	if err != nil || probe.NoSlot || probe.Seq != 1 {
		t.Fatalf("probe: %+v %v", probe, err)
	}
	held, err := th.Reserve(ctx, scope)
	if err != nil || !held.NoSlot || !held.At.After(probe.At) || held.Seq != 1 {
		t.Fatalf("held by the probe: %+v %v", held, err)
	}
	if _, err := th.ObserveAnswer(ctx, scope, http.Header{}, probe.Seq, false); err != nil {
		t.Fatal(err)
	}
	after, err := th.Reserve(ctx, scope)
	if err != nil || after.NoSlot || after.Seq != 2 || !after.PausedUntil.IsZero() {
		t.Fatalf("after the answer: %+v %v", after, err)
	}
}

// A pause set by one replica holds the others' calls until it ends; the
// scope's other classes are not held.
func TestPauseIsSharedAndScoped(t *testing.T) {
	t.Parallel()
	kv, js := bucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := throttle.New(kv, nil), throttle.New(kv, nil)
	writes := throttle.ScopeOf("default", messages.KindInvoiceSummary, false)
	reads := throttle.ScopeOf("default", messages.KindInvoiceSummary, true)
	until := time.Now().Add(30 * time.Second).Truncate(time.Millisecond)
	if added, err := a.Pause(ctx, writes, until, "retry-after"); err != nil || added <= 0 {
		t.Fatalf("pause: %v %v", added, err)
	}
	g, err := b.Reserve(ctx, writes)
	if err != nil || g.At.Before(until) || !g.PausedUntil.Equal(until) {
		t.Fatalf("reserve in the paused scope: %v %+v", err, g)
	}
	if h, err := b.Held(ctx, writes); err != nil || !h.PausedUntil.Equal(until) {
		t.Errorf("paused until %v %v", h.PausedUntil, err)
	}
	g, err = b.Reserve(ctx, reads)
	if err != nil || time.Until(g.At) > 0 || !g.PausedUntil.IsZero() {
		t.Fatalf("reserve in another scope: %v %+v", err, g)
	}
	h := http.Header{}
	h.Set(throttle.HeaderRemainingTenantReads, "3")
	observed := time.Now()
	if r, ok, err := a.Observe(ctx, reads, h, 0); err != nil || !ok || r.Value != 3 {
		t.Fatalf("observe: %v %v %+v", err, ok, r)
	}
	st, err := throttle.List(ctx, js, messages.NewLayout(""))
	if err != nil || len(st) != 2 {
		t.Fatalf("list: %v %+v", err, st)
	}
	// Azure's report cut the bucket to 3 calls; it refills at the scope's
	// rate from then on (a slow run, the race detector's, takes a while).
	rate, err := throttle.ParseRate(st[0].Rate)
	if err != nil {
		t.Fatal(err)
	}
	refilled := rate.Calls * time.Since(observed).Seconds() / rate.Per.Seconds()
	if st[0].Scope != reads || st[0].Remaining == nil || st[0].Remaining.Value != 3 || st[0].Tokens > 3.5+refilled {
		t.Errorf("reads: %+v", st[0])
	}
	if st[1].Scope != writes || st[1].Pauses != 1 || st[1].Throttled != 1 || !st[1].PausedUntil.Equal(until) {
		t.Errorf("writes: %+v", st[1])
	}
}

func TestListWithoutBucket(t *testing.T) {
	t.Parallel()
	_, js := bucket(t)
	st, err := throttle.List(context.Background(), js, messages.NewLayout("other"))
	if err != nil || len(st) != 0 {
		t.Errorf("%v %v", st, err)
	}
}
