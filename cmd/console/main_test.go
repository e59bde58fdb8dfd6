package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// The console runs on NATS alone, on loopback, read-only by default, and
// stops when its context ends.
func TestRun(t *testing.T) {
	t.Parallel()
	stack, err := devstack.Start(devstack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"--console-listen", "127.0.0.1:0"}, env(map[string]string{"BILLING_NATS_URL": stack.NATS.ClientURL()}), &stdout, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("not ready")
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || !strings.Contains(stdout.String(), "console: http://"+addr+" (read-only)") {
		t.Errorf("address %q, output %q", addr, stdout.String())
	}
	res, err := http.Get("http://" + addr + "/operations")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "Operations") {
		t.Errorf("GET /operations: %d %s", res.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestRunRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(short, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"writes without a token", []string{"--console-write"}, nil, "write actions need a token"},
		{"a short token", []string{"--console-write", "--console-token-file", short}, nil, "too short"},
		{"an empty token file", []string{"--console-write", "--console-token-file", empty}, nil, "empty"},
		{"a missing token file", []string{"--console-token-file", filepath.Join(dir, "none")}, nil, "console-token-file"},
		{"a bad boolean", nil, map[string]string{"BILLING_CONSOLE_WRITE": "maybe"}, "BILLING_CONSOLE_WRITE"},
		{"a bad page size", []string{"--console-page-size", "0"}, nil, "console-page-size"},
		{"a bad refresh", nil, map[string]string{"BILLING_CONSOLE_REFRESH": "soon"}, "console-refresh"},
		{"arguments", []string{"extra"}, nil, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"BILLING_NATS_URL": "nats://127.0.0.1:1"}
			for k, v := range tc.env {
				vars[k] = v
			}
			err := run(context.Background(), tc.args, env(vars), io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// The console settings table of docs/console.md names every flag, with its
// environment variable.
func TestDocSettings(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../docs/console.md")
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(readme), "<!-- console settings -->")
	end := strings.Index(string(readme), "<!-- /console settings -->")
	if start < 0 || end < start {
		t.Fatal("docs/console.md has no console settings table")
	}
	table := string(readme[start:end])
	var usage bytes.Buffer
	_ = run(context.Background(), []string{"-h"}, env(nil), io.Discard, &usage, nil)
	n := 0
	for _, line := range strings.Split(usage.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "-") || f[0] == "-version" || f[0] == "-h" {
			continue
		}
		name := strings.TrimPrefix(f[0], "-")
		n++
		if !strings.Contains(table, "`-"+name+"`") || !strings.Contains(table, "`"+envName(name)+"`") {
			t.Errorf("docs/console.md's console settings lack -%s / %s", name, envName(name))
		}
	}
	if n < 10 {
		t.Errorf("read only %d flags from the usage", n)
	}
}
