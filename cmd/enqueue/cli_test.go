package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/version"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// Flags may follow the arguments: `file reqs.ndjson --wait` waits.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	r := enqueue(t, s, "", "invoice-summary", "--billing-account", devstack.SampleBillingAccount,
		"--invoice-name", "G000000001", "--id", "after-1", "--wait")
	if r.code != exitOK || !strings.Contains(r.stdout, `"after-1"`) {
		t.Fatalf("kind then flags: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	path := filepath.Join(t.TempDir(), "reqs.ndjson")
	if err := os.WriteFile(path, mustJSON(t, devstack.Sample(messages.KindInvoiceSummary, "after-2", "G000000002")), 0o600); err != nil {
		t.Fatal(err)
	}
	r = enqueue(t, s, "", "file", path, "--wait", "--timeout", "30s")
	var ev messages.Completed
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); r.code != exitOK || err != nil || ev.ID != "after-2" {
		t.Fatalf("file then --wait: exit %d %v %s %s", r.code, err, r.stdout, r.stderr)
	}
	// The connection flags too, after the command's argument.
	r = enqueueWith(t, nil, env{}, "status", "after-2", "--server", s.NATS.ClientURL())
	if r.code != exitOK || !strings.Contains(r.stdout, `"completed"`) {
		t.Errorf("status then --server: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// help, -h on every command, version and completion need no server.
func TestHelpVersionCompletion(t *testing.T) {
	t.Parallel()
	noServer := env{vars: map[string]string{"NATS_URL": "nats://127.0.0.1:1"}}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"help", "stats"}} {
		r := enqueueWith(t, nil, noServer, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%v: exit %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
	root := (&app{getenv: func(string) string { return "" }}).commands()
	for _, c := range root.Commands() {
		r := enqueueWith(t, nil, noServer, c.Name(), "-h")
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage:") || r.stderr != "" {
			t.Errorf("%s -h: exit %d %q %q", c.Name(), r.code, r.stdout, r.stderr)
		}
	}
	// Not read as a sequence number.
	r := enqueueWith(t, nil, noServer, "delete-deadletter", "-h")
	if r.code != exitOK || !strings.Contains(r.stdout, "--yes") {
		t.Errorf("delete-deadletter -h: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := enqueueWith(t, nil, noServer, args...)
		if r.code != exitOK || strings.TrimSpace(r.stdout) != version.String() {
			t.Errorf("%v: exit %d %q, want %q", args, r.code, r.stdout, version.String())
		}
	}
	r = enqueueWith(t, nil, noServer, "version", "--json")
	if r.code != exitOK || strings.TrimSpace(r.stdout) != `{"version":"`+version.String()+`"}` {
		t.Errorf("version --json: %q", r.stdout)
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		r := enqueueWith(t, nil, noServer, "completion", sh)
		if r.code != exitOK || len(r.stdout) < 100 || !strings.Contains(r.stdout, "enqueue") {
			t.Errorf("completion %s: exit %d, %d bytes %q", sh, r.code, len(r.stdout), r.stderr)
		}
	}
}

// delete-deadletter asks on a terminal and takes --yes; elsewhere it
// refuses without --yes, before connecting.
func TestDeleteConfirmation(t *testing.T) {
	t.Parallel()
	noServer := env{vars: map[string]string{"NATS_URL": "nats://127.0.0.1:1"}}
	r := enqueueWith(t, nil, noServer, "delete-deadletter", "7")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("not a terminal, no --yes: exit %d %q", r.code, r.stderr)
	}
	ask := noServer
	ask.tty, ask.ttyIn, ask.stdin = true, true, "n\n"
	r = enqueueWith(t, nil, ask, "delete-deadletter", "7")
	if r.code != exitFailed || !strings.Contains(r.stderr, "Delete dead letter(s) 7 for good? [y/N]") || !strings.Contains(r.stderr, "nothing deleted") {
		t.Errorf("answered no: exit %d %q", r.code, r.stderr)
	}
	// Answered yes: it goes on to connect (and fails: no server here).
	ask.stdin = "y\n"
	r = enqueueWith(t, nil, ask, "delete-deadletter", "7")
	if r.code != exitFailed || !strings.Contains(r.stderr, "connect to nats://127.0.0.1:1") {
		t.Errorf("answered yes: exit %d %q", r.code, r.stderr)
	}
}

// deadletters on a new stack, and on a prefix with no streams at all:
// an empty list.
func TestDeadLettersEmpty(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for _, args := range [][]string{{"deadletters"}, {"deadletters", "--prefix", "nobody"}} {
		if r := enqueue(t, s, "", args...); r.code != exitOK || r.stdout != "" || r.stderr != "" {
			t.Errorf("%v: exit %d %q %q", args, r.code, r.stdout, r.stderr)
		}
		if r := enqueueWith(t, s, env{tty: true}, args...); r.code != exitOK || r.stdout != "no dead letters\n" {
			t.Errorf("%v on a terminal: exit %d %q %q", args, r.code, r.stdout, r.stderr)
		}
	}
}

// --context NAME and NATS_CONTEXT read the nats CLI's context file.
func TestNATSContext(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	cfg := t.TempDir()
	dir := filepath.Join(cfg, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctxFile := `{"description":"dev stack","url":"` + s.NATS.ClientURL() + `","creds":"","nkey":"","cert":"","key":"","ca":""}`
	if err := os.WriteFile(filepath.Join(dir, "dev.json"), []byte(ctxFile), 0o600); err != nil {
		t.Fatal(err)
	}
	xdg := env{noServer: true, vars: map[string]string{"XDG_CONFIG_HOME": cfg}}
	if r := enqueueWith(t, s, xdg, "deadletters", "--context", "dev"); r.code != exitOK {
		t.Errorf("--context dev (XDG_CONFIG_HOME): exit %d %q", r.code, r.stderr)
	}
	home := t.TempDir()
	if err := os.Symlink(cfg, filepath.Join(home, ".config")); err != nil {
		t.Fatal(err)
	}
	byEnv := env{noServer: true, vars: map[string]string{"HOME": home, "NATS_CONTEXT": "dev"}}
	if r := enqueueWith(t, s, byEnv, "stats"); r.code != exitOK {
		t.Errorf("NATS_CONTEXT=dev (HOME): exit %d %q", r.code, r.stderr)
	}
	if r := enqueueWith(t, s, xdg, "stats", "--context", "other"); r.code != exitUsage || !strings.Contains(r.stderr, "no such nats context") {
		t.Errorf("unknown context: exit %d %q", r.code, r.stderr)
	}
	// --server wins over the context's url.
	if r := enqueueWith(t, s, xdg, "stats", "--context", "dev", "--server", "nats://127.0.0.1:1"); r.code != exitFailed || !strings.Contains(r.stderr, "127.0.0.1:1") {
		t.Errorf("--server over the context: exit %d %q", r.code, r.stderr)
	}
}

// stats counts the operations by phase and names the oldest waiting one.
func TestStats(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.Emulator.Script("G000000003", emulator.Fail(404, "InvoiceNotFound", "none"))
	s.Emulator.Script("G000000004", emulator.Throttled(429, "Retry-After", "600"))
	var lines []string
	for i := 1; i <= 3; i++ {
		inv := "G00000000" + string(rune('0'+i))
		lines = append(lines, string(mustJSON(t, devstack.Sample(messages.KindInvoiceSummary, "stats-"+inv, inv))))
	}
	if r := enqueue(t, s, strings.Join(lines, "\n"), "file", "-", "--wait"); r.code != exitFailed {
		t.Fatalf("file: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	// A single --wait on a terminal says what is happening: throttled, and
	// waiting until a time.
	r := enqueueWith(t, s, env{tty: true}, "invoice-summary", "--id", "stats-slow", "--billing-account", devstack.SampleBillingAccount,
		"--invoice-name", "G000000004", "--wait", "--timeout", "2s")
	if r.code != exitTimeout || !strings.Contains(r.stderr, "throttled by Azure (last status 429)") || !strings.Contains(r.stderr, "until") {
		t.Fatalf("waiting on a throttled request: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	var rep statsReport
	r = enqueue(t, s, "", "stats")
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != exitOK || err != nil {
		t.Fatalf("stats: exit %d %v %q %q", r.code, err, r.stdout, r.stderr)
	}
	if rep.Total != 4 || rep.Phases["completed"] != 2 || rep.Phases["failed"] != 1 || rep.Phases["waiting"] != 1 || !rep.Complete {
		t.Errorf("stats: %+v", rep)
	}
	if o := rep.Oldest; o == nil || o.ID != "stats-slow" || o.Kind != "invoice-summary" || time.Until(o.NextAt) < time.Minute {
		t.Errorf("oldest waiting: %+v", o)
	}
	// The 429 paused the shared throttle's scope of the POSTs.
	if len(rep.Throttle) != 1 || rep.Throttle[0].Scope != "default.billing.writes" || rep.Throttle[0].Pauses != 1 || rep.Throttle[0].Calls != 4 {
		t.Errorf("throttle: %+v", rep.Throttle)
	}
	r = enqueueWith(t, s, env{tty: true}, "stats")
	if r.code != exitOK || !strings.Contains(r.stdout, "completed  2") || !strings.Contains(r.stdout, "oldest waiting: stats-slow (invoice-summary)") ||
		!strings.Contains(r.stdout, "throttle default.billing.writes: configured 10/1s burst 200") || !strings.Contains(r.stdout, "PAUSED until") ||
		!strings.Contains(r.stdout, "collections: 0 children in flight (global window), 0 collections waiting") {
		t.Errorf("stats on a terminal: exit %d %q", r.code, r.stdout)
	}
	r = enqueue(t, s, "", "stats", "--limit", "2")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Total != 2 || rep.Complete {
		t.Errorf("stats --limit 2: %v %+v", err, rep)
	}
}

// A single --wait on a terminal ends with "done" and the readable event.
func TestWaitOnATerminal(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	r := enqueueWith(t, s, env{tty: true}, "invoice", "--id", "tty-1", "--billing-account", devstack.SampleBillingAccount,
		"--invoice-name", "G000000001", "--wait")
	if r.code != exitOK || !strings.Contains(r.stderr, "done") || !strings.Contains(r.stdout, "tty-1") || strings.HasPrefix(r.stdout, "{") {
		t.Errorf("exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// --json on a terminal: the event as JSON, nothing else.
	r = enqueueWith(t, s, env{tty: true}, "invoice", "--id", "tty-2", "--billing-account", devstack.SampleBillingAccount,
		"--invoice-name", "G000000001", "--wait", "--json")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "{") || r.stderr != "" {
		t.Errorf("--json: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// stats counts apart the waiting operations whose wake-up is past its time
// by more than --overdue-after (here: no worker is left to take it).
func TestStatsOverdue(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.Emulator.Script("G000000005", emulator.Accepted("1"), emulator.OK())
	req := devstack.Sample(messages.KindInvoiceSummary, "stats-overdue", "G000000005")
	if _, err := s.Client.Submit(context.Background(), req, nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the operation waits", func() bool {
		st, err := s.Client.Status(context.Background(), req.ID)
		return err == nil && st.Phase == client.PhaseWaiting
	})
	if err := s.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	var rep statsReport
	testwait.For(t, 15*time.Second, "stats counts it overdue", func() bool {
		r := enqueue(t, s, "", "stats", "--overdue-after", "1s")
		return json.Unmarshal([]byte(r.stdout), &rep) == nil && rep.Overdue == 1
	})
	if o := rep.MostOverdue; o == nil || o.ID != req.ID || rep.Phases["waiting"] != 1 {
		t.Errorf("most overdue: %+v (waiting %d)", o, rep.Phases["waiting"])
	}
	if r := enqueueWith(t, s, env{tty: true}, "stats", "--overdue-after", "1s"); !strings.Contains(r.stdout, "overdue    1") ||
		!strings.Contains(r.stdout, "most overdue: stats-overdue (invoice-summary)") {
		t.Errorf("stats on a terminal: %q", r.stdout)
	}
	// With the default bound (30 s) it is merely waiting.
	r := enqueue(t, s, "", "stats")
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Overdue != 0 {
		t.Errorf("stats with the default bound: %v %+v", err, rep)
	}
}
