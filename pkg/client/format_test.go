package client_test

import (
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/client"
)

// An operation held by the shared throttle says so, with its scope and
// whether the scope is paused; the scopes print one line each.
func TestHumanThrottle(t *testing.T) {
	t.Parallel()
	now := time.Now()
	until := now.Add(time.Minute)
	st := operation.State{Phase: operation.PhaseWaiting, NextAt: until, LastWaitSource: operation.SourceThrottle,
		Throttled: &operation.Hold{Scope: "default.billing.writes", Until: until, Slot: true, PausedUntil: until}}
	if out := client.HumanState(st); !strings.Contains(out, "throttled:") || !strings.Contains(out, "scope default.billing.writes, paused by Azure until") {
		t.Errorf("state:\n%s", out)
	}
	scopes := []throttle.Status{{Entry: throttle.Entry{Scope: "default.billing.reads", Rate: "25/1s", Burst: 250, Calls: 3,
		PausedUntil: until, PauseSource: "retry-after",
		Remaining: &throttle.Remaining{Header: throttle.HeaderRemainingTenantReads, Value: 7, At: now}}, Tokens: 12}}
	out := client.HumanThrottle(scopes, now)
	for _, want := range []string{"throttle default.billing.reads: 25/1s burst 250, 12 free; 3 calls", "PAUSED until", "Azure reported 7 left"} {
		if !strings.Contains(out, want) {
			t.Errorf("%q not in %q", want, out)
		}
	}
	if client.HumanThrottle(nil, now) != "throttle: no scope yet\n" {
		t.Error("no scopes")
	}
}
