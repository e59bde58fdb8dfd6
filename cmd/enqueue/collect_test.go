package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func TestCollect(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.Emulator.SetListing(4, 2) // two months, four invoices, one of them with a document that is gone

	// Piped: JSON lines of progress, then the collection's event; exit 1, as
	// one document failed.
	r := enqueue(t, s, "", "collect", "--billing-account", "30000001", "--from", "2026-01-01", "--to", "2026-02-28",
		"--id", "coll-cli", "--label", "run=cli", "--wait", "--timeout", "1m")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var ev messages.Completed
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); r.code != exitFailed || err != nil || ev.Collected == nil {
		t.Fatalf("collect: exit %d %v %q %q", r.code, err, r.stdout, r.stderr)
	}
	if sum := ev.Collected; sum.Failed != 1 || sum.Invoices != 4 || sum.Documents != len(sum.Children) || ev.Labels["run"] != "cli" {
		t.Errorf("summary %+v", sum)
	}
	for _, l := range lines[:len(lines)-1] {
		var p struct {
			ID    string `json:"id"`
			Phase string `json:"phase"`
			client.Progress
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil || p.ID != "coll-cli" {
			t.Errorf("progress line %q: %v", l, err)
		}
	}

	// status shows every child.
	r = enqueue(t, s, "", "status", "coll-cli")
	var v client.CollectionView
	if err := json.Unmarshal([]byte(r.stdout), &v); r.code != exitOK || err != nil || len(v.Children) != ev.Collected.Documents {
		t.Fatalf("status: exit %d %v %q", r.code, err, r.stdout)
	}

	// On a terminal, invoices only: a progress bar, a summary table, exit 0.
	r = enqueueWith(t, s, env{tty: true}, "collect", "--billing-account", "30000002", "--from", "2026-01-01", "--to", "2026-02-28",
		"--kinds", "Invoice", "--id", "coll-tty", "--wait", "--timeout", "1m")
	if r.code != exitOK || !strings.Contains(r.stdout, "4 documents of 4 invoices: 4 completed, 0 failed") || !strings.Contains(r.stdout, "OUTCOME") {
		t.Fatalf("collect on a terminal: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// The documents of the kinds not asked for are listed as skipped.
	if !regexp.MustCompile(`(?m)^skipped +G\w+ +TR-G\w+ +TaxReceipt +kind_not_requested$`).MatchString(r.stdout) {
		t.Errorf("collect on a terminal lists no skipped tax receipt: %q", r.stdout)
	}
	r = enqueueWith(t, s, env{tty: true}, "status", "coll-tty")
	if r.code != exitOK || strings.Count(r.stdout, "coll-tty-") != 4 {
		t.Errorf("status on a terminal: exit %d %q", r.code, r.stdout)
	}

	// The spelling: single-dash flags.
	r = enqueue(t, s, "", "collect", "-billing-account", "30000004", "-from", "2026-01-01", "-to", "2026-01-31", "-kinds", "Invoice",
		"-id", "coll-dash", "-wait", "-timeout", "1m")
	if r.code != exitOK || !strings.Contains(r.stdout, `"coll-dash"`) {
		t.Errorf("single-dash flags: exit %d %q %q", r.code, r.stdout, r.stderr)
	}

	// A bad period is refused before anything is sent.
	r = enqueue(t, s, "", "collect", "--billing-account", "30000003", "--from", "2026-03-01", "--to", "2026-01-01")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--to") {
		t.Errorf("bad period: exit %d %q", r.code, r.stderr)
	}
}
