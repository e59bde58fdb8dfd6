package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/client"
)

// coverage prints the grid of the scopes collected and registered, as
// text and as JSON, and refuses months it cannot read.
func TestCoverageGrid(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.Emulator.SetListing(50, 1)
	s.Emulator.Script("20000031", emulator.Fail(http.StatusForbidden, "AuthorizationFailed", "not yours"))
	for _, acct := range []string{"20000030", "20000031"} {
		if r := enqueue(t, s, "", "collect", "--id", "cov-"+acct, "--billing-account", acct, "--from", "2026-09-01", "--to", "2026-10-31",
			"--kinds", "Invoice", "--wait"); r.code != exitOK && r.code != exitFailed {
			t.Fatalf("collect %s: exit %d %q", acct, r.code, r.stderr)
		}
	}
	if err := s.Client.PutScope(context.Background(), client.CoverageScope{Kind: "subscription", ID: "11111111-2222-3333-4444-555555555555", Name: "PAYG"}); err != nil {
		t.Fatal(err)
	}
	var g client.CoverageGrid
	r := enqueue(t, s, "", "coverage", "--from", "2026-09", "--to", "2026-11")
	if err := json.Unmarshal([]byte(r.stdout), &g); r.code != exitOK || err != nil {
		t.Fatalf("coverage: exit %d %v %q %q", r.code, err, r.stdout, r.stderr)
	}
	if len(g.Rows) != 3 || strings.Join(g.Months, ",") != "2026-09,2026-10,2026-11" ||
		g.Totals[client.CoverageComplete] != 2 || g.Totals[client.CoverageFailed] != 2 || g.Totals[client.CoverageNever] != 5 {
		t.Errorf("grid %+v", g)
	}
	r = enqueueWith(t, s, env{tty: true}, "coverage", "--from", "2026-09", "--to", "2026-11")
	want := []string{
		"account 20000030 complete complete never",
		"account 20000031 FAILED FAILED never",
		"subscription 11111111-2222-3333-4444-555555555555 (PAYG) never never never",
		"account 20000031 2026-09: collection cov-20000031 failed: access_denied",
		"2 complete, 0 partial, 2 failed, 5 never collected",
	}
	var lines []string // each line's words, one space apart
	for _, l := range strings.Split(r.stdout, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(lines, "\n"), w) {
			t.Errorf("coverage on a terminal: no %q in\n%s", w, r.stdout)
		}
	}
	for _, bad := range [][]string{{"--from", "2026-9"}, {"--to", "October"}, {"--from", "2026-11", "--to", "2026-01"}} {
		if r := enqueue(t, s, "", append([]string{"coverage"}, bad...)...); r.code == exitOK {
			t.Errorf("coverage %v: exit %d", bad, r.code)
		}
	}
}
