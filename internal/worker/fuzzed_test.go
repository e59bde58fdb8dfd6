package worker_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// mutate damages a valid request document in one of several ways.
func mutate(rng *rand.Rand, doc []byte) []byte {
	out := append([]byte(nil), doc...)
	switch rng.IntN(5) {
	case 0: // flip bytes
		for range 1 + rng.IntN(4) {
			i := rng.IntN(len(out))
			out[i] = byte(rng.IntN(256))
		}
	case 1: // truncate
		out = out[:rng.IntN(len(out))]
	case 2: // insert random bytes
		i := rng.IntN(len(out))
		junk := make([]byte, 1+rng.IntN(8))
		for j := range junk {
			junk[j] = byte(rng.IntN(256))
		}
		out = append(out[:i], append(junk, out[i:]...)...)
	case 3: // duplicate a slice
		i, j := rng.IntN(len(out)), rng.IntN(len(out))
		if i > j {
			i, j = j, i
		}
		out = append(out[:j], append(append([]byte(nil), out[i:j]...), out[j:]...)...)
	default: // leave it valid
	}
	return out
}

// Requests damaged at random never crash the worker: each ends in exactly
// one event, a completion or a failure.
func TestFuzzedRequestsEndInEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(7, 11))
	const n = 300
	expected := map[string]int{} // id the event will carry -> how many
	ctx := context.Background()
	for i := range n {
		kind := devstack.ScriptedKinds()[i%len(devstack.ScriptedKinds())]
		req := devstack.Sample(kind, "fz-"+itoa(int64(i)), b.invoice())
		doc, _ := json.Marshal(req)
		data := mutate(rng, doc)
		// The worker reads the id the same way.
		got, _ := messages.DecodeRequest(data, 0)
		expected[got.ID]++
		if _, err := b.stack.Client.SubmitRaw(ctx, b.stack.Client.Layout().Request(kind), "", data, nil); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, time.Minute, "every request has its outcomes", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		for id, want := range expected {
			if len(b.outcomes[id]) < want && (id == "" || want == 1) {
				return false
			}
		}
		return true
	})
	for id, want := range expected {
		got := b.events(id)
		if id != "" && want == 1 && len(got) != 1 {
			t.Errorf("request %s: %d events, want 1", id, len(got))
		}
		if id == "" && len(got) != want {
			t.Errorf("%d events without an id, want %d", len(got), want)
		}
		for _, o := range got {
			if (o.Completed == nil) == (o.Failed == nil) {
				t.Errorf("request %s: event is neither completion nor failure", id)
			}
		}
	}
}
