package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lineWriter hands the first line written to it over a channel.
type lineWriter struct{ lines chan string }

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w.lines <- strings.TrimSpace(string(p)):
	default:
	}
	return len(p), nil
}

func TestRun(t *testing.T) {
	t.Parallel()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ctx, cancel := context.WithCancel(t.Context())
	out := lineWriter{lines: make(chan string, 1)}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-ca-out", caFile, "-polls", "2", "-retry-after", "3"}, out, io.Discard)
	}()

	var url string
	select {
	case line := <-out.lines:
		url = line[strings.LastIndex(line, " ")+1:]
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no URL announced")
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()

	resp, err := client.Get(url + "/_emulator/token")
	if err != nil {
		t.Fatalf("trusting the -ca-out file: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("token: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop with its context")
	}
}

func TestRunFlagErrors(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"-polls", "-1"},
		{"-token-lifetime", "0s"},
		{"-plain-http", "-ca-out", "ca.pem"},
		{"-nope"},
		{"extra"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			if err := run(t.Context(), args, io.Discard, io.Discard); err == nil {
				t.Errorf("run(%q) succeeded, want an error", args)
			}
		})
	}
}
