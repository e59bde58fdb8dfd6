package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/version"
)

// -version prints the build's version and exits without connecting.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	lookup := func(string) (string, bool) { return "", false }
	if err := run(context.Background(), []string{"-version"}, lookup, &out, &errb); err != nil {
		t.Fatalf("-version: %v (%s)", err, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != version.String() || got == "" {
		t.Errorf("-version printed %q, want %q", got, version.String())
	}
}

// Dev mode's standard output is its summary alone: by default the
// worker's JSON log lines go to the file it names (and not to stderr),
// and -dev-log-level brings them back on stderr.
func TestDevModeOutputHasNoLogLines(t *testing.T) {
	t.Parallel()
	lookup := func(string) (string, bool) { return "", false }
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"-dev", "-dev-exit"}, lookup, &out, &errb); err != nil {
		t.Fatalf("-dev: %v (%s)", err, errb.String())
	}
	var logFile string
	for line := range strings.Lines(out.String()) {
		if strings.HasPrefix(strings.TrimSpace(line), "{") {
			t.Errorf("a JSON line on standard output: %s", line)
		}
		if _, rest, ok := strings.Cut(line, "dev mode: the worker's log (JSON lines) goes to "); ok {
			logFile, _, _ = strings.Cut(rest, ";")
		}
	}
	for _, want := range []string{"dev mode: NATS ", "dev mode: console http://", "sent      ", "COMPLETED ", "archived:", "nats billing_archive "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(errb.String(), `"level":`) {
		t.Errorf("log lines on stderr by default:\n%s", errb.String())
	}
	if logFile == "" {
		t.Fatalf("the summary names no log file:\n%s", out.String())
	}
	t.Cleanup(func() { _ = os.Remove(logFile) })
	b, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec["level"] == nil {
		t.Errorf("the log file does not hold JSON log lines: %q (%v)", first, err)
	}

	// -dev-log-level: the log lines on stderr again, none on stdout.
	out.Reset()
	errb.Reset()
	if err := run(t.Context(), []string{"-dev", "-dev-exit", "-dev-log-level", "debug"}, lookup, &out, &errb); err != nil {
		t.Fatalf("-dev -dev-log-level debug: %v", err)
	}
	if !strings.Contains(errb.String(), `"level":"DEBUG"`) || strings.Contains(out.String(), `"level":`) || strings.Contains(out.String(), "log (JSON lines) goes to") {
		t.Errorf("-dev-log-level debug: stdout\n%s\nstderr %d bytes", out.String(), errb.Len())
	}
	if err := run(t.Context(), []string{"-dev", "-dev-log-level", "loud"}, lookup, &out, &errb); err == nil || !strings.Contains(err.Error(), "dev-log-level") {
		t.Errorf("a bad -dev-log-level: %v", err)
	}
}
