package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// enqueue -wait for a request id whose operation has ended answers at once
// with the outcome it has, within the work stream's duplicate window and
// past it (shortened to 1 s here); a reuse of the id with other content is
// answered with its own id_conflict failure, not the other request's
// outcome.
func TestWaitForAResubmittedRequest(t *testing.T) {
	t.Parallel()
	const window = time.Second
	s, err := devstack.Start(devstack.Options{
		Dir:       t.TempDir(),
		Emulator:  emulator.Options{Default: []emulator.Reply{emulator.OK()}},
		Configure: func(c *config.Config) { c.DuplicateWindow = window },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	args := []string{"invoice-summary", "-id", "again-1", "-billing-account", devstack.SampleBillingAccount,
		"-invoice-name", "G000000001", "-wait", "-timeout", "30s"}
	first := enqueue(t, s, "", args...)
	if first.code != exitOK {
		t.Fatalf("exit %d: %s %s", first.code, first.stdout, first.stderr)
	}
	sentAt := time.Now()
	calls := len(s.Emulator.Calls())

	again := func(what string) {
		t.Helper()
		start := time.Now()
		r := enqueue(t, s, "", args...)
		if took := time.Since(start); r.code != exitOK || took > 5*time.Second {
			t.Fatalf("%s: exit %d after %s: %s %s", what, r.code, took.Round(time.Millisecond), r.stdout, r.stderr)
		}
		if r.stdout != first.stdout {
			t.Errorf("%s printed\n%s\nwant the first event\n%s", what, r.stdout, first.stdout)
		}
		sentAt = time.Now()
	}
	again("a resubmission at once")
	// Waiting for a time window to pass: nothing to observe instead.
	time.Sleep(time.Until(sentAt.Add(window + 200*time.Millisecond)))
	again("a resubmission past the window")
	if n := len(s.Emulator.Calls()); n != calls {
		t.Errorf("Azure saw %d calls, want %d: a resubmission called it again", n, calls)
	}

	// The same id with another invoice: its own id_conflict failure, now and
	// when sent again within the window (dropped as a duplicate then).
	conflict := append([]string(nil), args...)
	for i, a := range conflict {
		if a == "G000000001" {
			conflict[i] = "G000000002"
		}
	}
	for _, what := range []string{"a conflicting request", "the conflicting request again"} {
		r := enqueue(t, s, "", conflict...)
		var ev messages.Failed
		if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); r.code != exitFailed || err != nil || ev.Code != messages.CodeIDConflict {
			t.Errorf("%s: exit %d, printed %s %s; want an id_conflict failure", what, r.code, r.stdout, r.stderr)
		}
	}
}
