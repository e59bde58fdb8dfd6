// Package azurite runs Azurite's Blob service, the open-source Azure
// Storage emulator installed from npm into tools/azurite (by .ci/run), for
// the tests of the archive's Blob Storage store.
package azurite

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// azuriteKey is the account key every Azurite has (its documented
// development account, devstoreaccount1): not a secret.
const azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

// Start runs Azurite's Blob service (tools/azurite's, or the AZURITE_BLOB
// executable) on a loopback port for the test, and returns its connection
// string; it stops with the test. Outside CI a missing Azurite skips the
// test, saying how to install it.
func Start(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("AZURITE_BLOB")
	if bin == "" {
		bin = filepath.Join(repoRoot(), "tools", "azurite", "node_modules", ".bin", "azurite-blob")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Azurite is not installed (%v): .ci/run installs it with npm ci --prefix tools/azurite", err)
		}
		t.Skipf("Azurite is not installed (%v): run npm ci --prefix tools/azurite", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", port, "--location", t.TempDir(),
		"--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error // read once exited is closed
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("Azurite exited: %v", waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Azurite did not listen within 60s")
		}
	}
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey +
		";BlobEndpoint=http://127.0.0.1:" + port + "/devstoreaccount1;"
}

// repoRoot is the repository's root: this file is internal/azurite's.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Launch runs Azurite's Blob service outside a test (the benchmark), with
// its data in dir, and returns its connection string and a function that
// stops it. ErrNotInstalled says Azurite is missing.
func Launch(dir string) (conn string, stop func(), err error) {
	bin := os.Getenv("AZURITE_BLOB")
	if bin == "" {
		bin = filepath.Join(repoRoot(), "tools", "azurite", "node_modules", ".bin", "azurite-blob")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", nil, fmt.Errorf("%w: %w (npm ci --prefix tools/azurite)", ErrNotInstalled, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", port, "--location", dir,
		"--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			return "", nil, fmt.Errorf("azurite exited: %w", waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("azurite did not listen within 60s")
		}
	}
	return "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azuriteKey +
		";BlobEndpoint=http://127.0.0.1:" + port + "/devstoreaccount1;", stop, nil
}

// ErrNotInstalled: Azurite is not installed.
var ErrNotInstalled = errors.New("azurite is not installed")
