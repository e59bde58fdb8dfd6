package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

type run struct {
	code           int
	stdout, stderr string
}

// enqueue runs the command in-process against the stack.
func enqueue(t *testing.T, s *devstack.Stack, stdin string, args ...string) run {
	t.Helper()
	return enqueueWith(t, s, env{stdin: stdin}, args...)
}

// env is what the command sees besides its arguments.
type env struct {
	stdin      string
	vars       map[string]string // the environment
	tty, ttyIn bool
	noServer   bool // no --server: it comes from the environment or a context
}

func enqueueWith(t *testing.T, s *devstack.Stack, e env, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(e.stdin), stdout: &out, stderr: &errb, tty: e.tty, ttyIn: e.ttyIn,
		getenv: func(k string) string { return e.vars[k] }, pollFor: 50 * time.Millisecond}
	if s != nil && !e.noServer {
		args = append([]string{"--server", s.NATS.ClientURL()}, args...)
	}
	code := a.main(context.Background(), args)
	return run{code, out.String(), errb.String()}
}

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(devstack.Options{Dir: t.TempDir(), Emulator: emulator.Options{Default: []emulator.Reply{emulator.OK()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestSubmitByFlagsAndWait(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	r := enqueue(t, s, "", "invoice-pricesheet", "--id", "flags-1", "--billing-account", devstack.SampleCMAccount,
		"--billing-profile", devstack.SampleBillingProfile, "--invoice-name", "G123", "--label", "team=finops", "--deadline", "10m", "--wait")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	var ev messages.Completed
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); err != nil || ev.ID != "flags-1" || ev.URL == "" || ev.Labels["team"] != "finops" {
		t.Fatalf("output %q: %v", r.stdout, err)
	}

	r = enqueue(t, s, "", "status", "flags-1")
	var st map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &st); r.code != exitOK || err != nil || st["phase"] != "completed" || st["location"] != nil {
		t.Errorf("status: exit %d %v %s", r.code, err, r.stdout)
	}
	if r := enqueue(t, s, "", "status", "nobody"); r.code != exitFailed || !strings.Contains(r.stderr, "no stored state") {
		t.Errorf("status of an unknown id: exit %d %s", r.code, r.stderr)
	}
}

// The single-dash long flags of earlier versions (-billing-account) still
// work: scripts written for them keep running.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "a command is required"},
		{[]string{"bill-me"}, "unknown command"},
		{[]string{"invoice-summary", "-billing-account", "12345678"}, "-invoice-name: is required"},
		{[]string{"invoice-summary", "-billing-account", "x", "-invoice-name", "G123456789"}, "-billing-account:"},
		{[]string{"invoice", "-billing-account", "1", "-invoice-name", "G123456789", "-download-token", "DRS_1"}, "-download-token: is not a parameter"},
		{[]string{"subscription-documents", "-subscription-id", devstack.SampleSubscriptionID, "-document", "nocolon"}, "documentName:invoiceName"},
		{[]string{"invoice", "-deadline", "whenever"}, "-deadline"},
		{[]string{"replay"}, "at least one"},
		{[]string{"status"}, "one request id"},
		{[]string{"invoice", "--no-such-flag"}, "unknown flag"},
		{[]string{"stats", "extra"}, "no arguments"},
		{[]string{"status", "x", "--tlscert", "c.pem"}, "--tlscert and --tlskey go together"},
	}
	for _, c := range cases {
		r := enqueue(t, s, "", c.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func TestFileWaitReportsFailures(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.Emulator.Script("G000000003", emulator.Fail(404, "InvoiceNotFound", "none"))
	var lines []string
	for i := 1; i <= 3; i++ {
		inv := "G00000000" + string(rune('0'+i))
		lines = append(lines, string(mustJSON(t, devstack.Sample(messages.KindInvoiceSummary, "file-"+inv, inv))))
	}
	r := enqueue(t, s, strings.Join(lines, "\n")+"\n", "file", "-wait", "-")
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d: %s %s", r.code, exitFailed, r.stdout, r.stderr)
	}
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 3 {
		t.Errorf("%d events printed, want 3: %s", n, r.stdout)
	}
	// An invalid line stops the whole file before anything is sent.
	r = enqueue(t, s, lines[0]+"\n{\"version\":1}\n", "file", "-")
	if r.code != exitUsage || !strings.Contains(r.stderr, "line 2") || !strings.Contains(r.stderr, "nothing sent") {
		t.Errorf("invalid line: exit %d %s", r.code, r.stderr)
	}
}

func TestDeadLettersListReplayDelete(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	bad := `{"version":1,"id":"dl-1","kind":"invoice","params":{"billingAccountName":"12345678","invoiceName":"nope"}}`
	if r := enqueue(t, s, bad+"\n", "file", "--force", "--wait", "-"); r.code != exitFailed {
		t.Fatalf("forced invalid request: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	r := enqueue(t, s, "", "deadletters")
	var dl struct {
		Seq     uint64 `json:"seq"`
		Code    string `json:"code"`
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &dl); err != nil || dl.Code != "invalid_request" || dl.Payload != bad {
		t.Fatalf("deadletters: %v %s", err, r.stdout)
	}
	fixed := filepath.Join(t.TempDir(), "fixed.json")
	if err := os.WriteFile(fixed, []byte(strings.Replace(bad, "nope", "G123456789", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := s.Client.Watch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if r := enqueue(t, s, "", "replay", "--payload", fixed, itoa(dl.Seq)); r.code != exitOK {
		t.Fatalf("replay: exit %d %s", r.code, r.stderr)
	}
	for {
		o, err := w.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == "dl-1" {
			if o.Completed == nil {
				t.Fatalf("replayed request did not complete: %+v", o.Failed)
			}
			break
		}
	}
	// Still kept until deleted explicitly.
	if r := enqueue(t, s, "", "deadletters"); !strings.Contains(r.stdout, "invalid_request") {
		t.Errorf("dead letter gone after replay: %s", r.stdout)
	}
	if r := enqueue(t, s, "", "delete-deadletter", itoa(dl.Seq)); r.code != exitUsage || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("delete without --yes, not on a terminal: exit %d %s", r.code, r.stderr)
	}
	if r := enqueue(t, s, "", "delete-deadletter", itoa(dl.Seq), "--yes"); r.code != exitOK {
		t.Fatalf("delete: exit %d %s", r.code, r.stderr)
	}
	if r := enqueue(t, s, "", "deadletters"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("dead letters after delete: %s", r.stdout)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
