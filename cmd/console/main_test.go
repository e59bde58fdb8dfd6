package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/azbilling/worker/internal/azurite"
	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
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
		{"two ways to the archive", []string{"--archive-account-url", "https://archive.blob.core.windows.net/"},
			map[string]string{"BILLING_ARCHIVE_CONNECTION_STRING_FILE": short}, "not both"},
		{"a missing connection string file", []string{"--archive-connection-string-file", filepath.Join(dir, "none")}, nil, "archive-connection-string-file"},
		{"a bad connection string", []string{"--archive-connection-string-file", short}, nil, "not a Blob Storage connection string"},
		{"an unknown cloud", []string{"--archive-account-url", "https://archive.blob.core.windows.net/", "--azure-cloud", "mars"}, nil, "azure-cloud"},
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

// startConsole runs the console with vars as its environment until the
// test ends, and returns the address it listens on.
func startConsole(t *testing.T, vars map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr syncBuffer
	go func() {
		done <- run(ctx, []string{"--console-listen", "127.0.0.1:0"}, env(vars), io.Discard, &stderr, ready)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	select {
	case addr := <-ready:
		return addr
	case err := <-done:
		done <- err
		t.Fatalf("run: %v\n%s", err, stderr.String())
	case <-time.After(15 * time.Second):
		t.Fatal("not ready")
	}
	return ""
}

// syncBuffer is a bytes.Buffer safe for the console's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// getDocument downloads an operation's document from the console: the
// response, its body and the error reading it (a download cut short).
func getDocument(t *testing.T, addr, id string) (*http.Response, []byte, error) {
	t.Helper()
	res, err := http.Get("http://" + addr + "/operations/" + id + "/document")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// A document archived in Azure Blob Storage (Azurite, the worker's real
// Blob client) is handed out by a console given the worker's archive
// settings: the bytes the emulator served, with their SHA-256. Without
// them the console says it cannot reach Blob Storage. A blob replaced
// behind the worker's back is refused: with the original metadata and
// other bytes, the download is cut short; without its digest, an error
// page saying it does not match.
func TestDownloadFromBlobStorage(t *testing.T) {
	t.Parallel()
	conn := azurite.Start(t)
	connFile := filepath.Join(t.TempDir(), "connection-string")
	if err := os.WriteFile(connFile, []byte(conn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stack, err := devstack.Start(devstack.Options{Dir: t.TempDir(), Configure: func(c *config.Config) {
		c.ArchiveStore, c.ArchiveBucket, c.ArchiveConnFile = "azblob", "billing-archive", connFile
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	ctx := context.Background()
	const inv = "G000000521"
	stack.Emulator.SetDownload(inv, emulator.Download{Size: 300<<10 + 7}) // several chunks, more than what is held back
	req := devstack.Sample(messages.KindInvoiceSummary, "blob-download-1", inv)
	if _, err := stack.Client.Submit(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	var st client.Operation
	testwait.For(t, 30*time.Second, "the operation completes", func() bool {
		st, err = stack.Client.Status(ctx, req.ID)
		return err == nil && client.Phase.Terminal(st.Phase)
	})
	if st.Completed == nil || st.Completed.Archive == nil || st.Completed.Archive.Error != nil || st.Completed.Archive.Store != messages.StoreAzureBlob {
		t.Fatalf("not archived in Blob Storage: %+v", st.Completed)
	}
	a := st.Completed.Archive
	testwait.For(t, 5*time.Second, "the emulator records the download", func() bool { return len(stack.Emulator.ServedFor(inv)) > 0 })
	served := stack.Emulator.ServedFor(inv)

	nats := map[string]string{"BILLING_NATS_URL": stack.NATS.ClientURL()}
	without := startConsole(t, nats)
	if res, body, _ := getDocument(t, without, req.ID); res.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "no Blob Storage access") {
		t.Errorf("a console without the archive's settings: %d %s", res.StatusCode, body)
	}

	addr := startConsole(t, map[string]string{"BILLING_NATS_URL": stack.NATS.ClientURL(), "BILLING_ARCHIVE_CONNECTION_STRING_FILE": connFile})
	res, body, err := getDocument(t, addr, req.ID)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("download: %d %v %s", res.StatusCode, err, body)
	}
	sum := sha256.Sum256(body)
	if got := hex.EncodeToString(sum[:]); got != served[len(served)-1].SHA256 || got != a.SHA256 || int64(len(body)) != a.Size || a.Size != served[len(served)-1].Size {
		t.Errorf("downloaded %d bytes, SHA-256 %s; the archive says %d, %s; the emulator served %+v", len(body), got, a.Size, a.SHA256, served)
	}
	if ct := res.Header.Get("Content-Type"); ct != a.ContentType {
		t.Errorf("content type %q, archive %q", ct, a.ContentType)
	}

	// Other bytes of the same size under the blob's name, its metadata
	// (the digest of the event) kept: the download is cut short.
	cc, err := container.NewClientFromConnectionString(conn, a.Bucket, nil)
	if err != nil {
		t.Fatal(err)
	}
	blob := cc.NewBlockBlobClient(a.Name)
	props, err := blob.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Repeat([]byte("x"), int(a.Size))
	if _, err := blob.UploadBuffer(ctx, forged, &blockblob.UploadBufferOptions{Metadata: props.Metadata}); err != nil {
		t.Fatal(err)
	}
	res, body, err = getDocument(t, addr, req.ID)
	if err == nil || int64(len(body)) >= a.Size || res.StatusCode != http.StatusOK && res.StatusCode != http.StatusBadGateway {
		t.Errorf("forged bytes: %d, %d of %d bytes, read error %v: want a download cut short", res.StatusCode, len(body), a.Size, err)
	}
	// Without the digest in its metadata: refused before a byte is sent.
	if _, err := blob.UploadBuffer(ctx, forged, nil); err != nil {
		t.Fatal(err)
	}
	res, body, _ = getDocument(t, addr, req.ID)
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "does not match the digest of its completion event") || bytes.Contains(body, []byte("xxxx")) {
		t.Errorf("a blob without its digest: %d %s", res.StatusCode, body)
	}
}
