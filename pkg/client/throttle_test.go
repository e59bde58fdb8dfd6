package client_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// The client reads the throttle bucket the worker's throttle writes: the
// same scopes, limits, pause, reported budget and counters as the
// throttle's own listing, and the same JSON names less the bucket's
// bookkeeping (version, tat).
func TestThrottleReadsTheWorkersBucket(t *testing.T) {
	t.Parallel()
	srv, err := devstack.StartNATS(devstack.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c, err := client.New(nc, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if scopes, err := c.Throttle(ctx); len(scopes) != 0 || err != nil {
		t.Fatalf("no bucket yet: %v %v", scopes, err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, throttle.BucketConfig(c.Layout(), 1))
	if err != nil {
		t.Fatal(err)
	}
	// A slow rate, so the free calls do not change between two readings.
	lim := map[throttle.Class]throttle.Limit{
		throttle.BillingWrites: {Rate: throttle.Rate{Calls: 1, Per: time.Hour}, Burst: 10},
		throttle.BillingReads:  {Rate: throttle.Rate{Calls: 2, Per: time.Hour}, Burst: 5},
	}
	th := throttle.New(kv, lim)
	writes := throttle.ScopeOf("default", messages.KindInvoiceSummary, false)
	reads := throttle.ScopeOf("default", messages.KindInvoice, false)
	for range 3 {
		if _, err := th.Reserve(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	h := http.Header{}
	h.Set(throttle.HeaderRemainingTenantWrites, "42")
	if _, _, err := th.Observe(ctx, writes, h, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := th.Reserve(ctx, reads); err != nil {
		t.Fatal(err)
	}
	if _, err := th.Pause(ctx, reads, time.Now().Add(time.Hour), "retry-after"); err != nil {
		t.Fatal(err)
	}

	got, err := c.Throttle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := throttle.List(ctx, js, c.Layout())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("client %+v, throttle %+v", got, want)
	}
	now := time.Now()
	for i := range want {
		g, w := got[i], want[i]
		if g.Scope != string(w.Scope) || g.Rate != w.Rate || g.Burst != w.Burst || !g.PausedUntil.Equal(w.PausedUntil) || g.PauseSource != w.PauseSource ||
			g.Calls != w.Calls || g.Deferred != w.Deferred || g.Throttled != w.Throttled || g.Pauses != w.Pauses ||
			g.PausedSeconds != w.PausedSeconds || !g.UpdatedAt.Equal(w.UpdatedAt) || math.Abs(g.Tokens-w.Tokens) > 0.01 ||
			(g.Remaining == nil) != (w.Remaining == nil) || g.Paused(now) != w.Paused(now) {
			t.Errorf("scope %d: client %+v, throttle %+v", i, g, w)
		}
		if r := g.Remaining; r != nil && (r.Header != w.Remaining.Header || r.Value != w.Remaining.Value || !r.At.Equal(w.Remaining.At)) {
			t.Errorf("scope %d remaining: client %+v, throttle %+v", i, *r, *w.Remaining)
		}
		gj, wj := jsonKeys(t, g), jsonKeys(t, w)
		delete(wj, "version")
		delete(wj, "tat")
		if len(gj) != len(wj) {
			t.Errorf("scope %d JSON names: client %v, throttle %v", i, gj, wj)
		}
		for k := range wj {
			if !gj[k] {
				t.Errorf("scope %d: client JSON has no %q", i, k)
			}
		}
	}
	// Sorted by scope: reads before writes.
	if got[0].Scope != string(reads) || !got[0].Paused(now) || got[0].Tokens != 0 || got[0].PauseSource != "retry-after" {
		t.Errorf("paused scope: %+v", got[0])
	}
	// Three calls before the first answer: the probe, and two held by the
	// probe's pause; then a report of 42 left, which ends the probe and
	// its pause: a bucket of 10 (the configured burst, the ceiling of the
	// 43 reported) less the probe.
	if w := got[1]; w.Scope != string(writes) || w.Paused(now) || w.PauseSource != "" || !w.ProbeAt.IsZero() || w.Calls != 1 || w.Deferred != 2 || math.Abs(w.Tokens-9) > 0.01 ||
		w.Remaining == nil || w.Remaining.Value != 42 || w.Learned == nil || w.Learned.Burst != 10 || w.Learned.Source != "remaining" {
		t.Errorf("writes scope: %+v", w)
	}
	if rate, burst := got[1].Enforced(); math.Abs(rate-1.0/3600) > 1e-9 || burst != 10 {
		t.Errorf("writes enforced %g/s burst %d, want 1/h and 10", rate, burst)
	}
	if l := got[0].Learned; l == nil || l.Burst != 5 || l.Source != "throttled" {
		t.Errorf("reads learned %+v: a throttled answer without headers keeps the configured burst (5)", l)
	}
}

func jsonKeys(t *testing.T, v any) map[string]bool {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for k := range m {
		keys[k] = true
	}
	return keys
}
