package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/azurite"
	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// enqueue fetch writes the archived document, its digest checked; a
// tampered object is refused and leaves no file.
func TestFetch(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	inv := devstack.InvoiceName("F", 1)
	s.Emulator.SetDownload(inv, emulator.Download{Size: 512 << 10})
	r := enqueue(t, s, "", "invoice-summary", "--billing-account", devstack.SampleBillingAccount, "--invoice-name", inv, "--id", "fetch-1", "--wait", "--json")
	var ev messages.Completed
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); r.code != 0 || err != nil || ev.Archive == nil || ev.Archive.Error != nil {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "summary.pdf")
	if r := enqueue(t, s, "", "fetch", "fetch-1", "-o", out); r.code != 0 || !strings.Contains(r.stdout, `"sha256":"`+ev.Archive.SHA256) {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(out)
	sum := sha256.Sum256(data)
	if err != nil || hex.EncodeToString(sum[:]) != ev.Archive.SHA256 || int64(len(data)) != ev.Archive.Size {
		t.Fatalf("file: %v, %d bytes", err, len(data))
	}

	// Opted out: nothing to fetch.
	if r := enqueue(t, s, "", "invoice-summary", "--billing-account", devstack.SampleBillingAccount, "--invoice-name", devstack.InvoiceName("F", 2),
		"--id", "fetch-2", "--archive=false", "--wait", "--json"); r.code != 0 || strings.Contains(r.stdout, `"archive"`) {
		t.Fatalf("opt-out: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := enqueue(t, s, "", "fetch", "fetch-2", "--output", filepath.Join(dir, "none")); r.code != exitFailed || !strings.Contains(r.stderr, "not to be archived") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}

	// Tamper with the object: one byte changed, same size.
	ctx := context.Background()
	js, _ := jetstream.New(s.Conn)
	obs, err := js.ObjectStore(ctx, ev.Archive.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	data[100] ^= 1
	if _, err := obs.PutBytes(ctx, ev.Archive.Name, data); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "tampered.pdf")
	if r := enqueue(t, s, "", "fetch", "fetch-1", "-o", bad); r.code != exitFailed || !strings.Contains(r.stderr, "does not match") {
		t.Fatalf("tampered: exit %d: %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left behind: %v", entries)
	}
	if r := enqueue(t, s, "", "fetch", "fetch-1"); r.code != exitUsage {
		t.Errorf("no --output: exit %d", r.code)
	}
}

// enqueue fetch reads a document archived in Azure Blob Storage (Azurite).
func TestFetchAzureBlob(t *testing.T) {
	t.Parallel()
	conn := azurite.Start(t)
	connFile := filepath.Join(t.TempDir(), "conn")
	if err := os.WriteFile(connFile, []byte(conn), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := devstack.Start(devstack.Options{Dir: t.TempDir(), Emulator: emulator.Options{Default: []emulator.Reply{emulator.OK()}},
		Configure: func(c *config.Config) {
			c.ArchiveStore, c.ArchiveBucket, c.ArchiveConnFile = "azblob", "docs", connFile
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	inv := devstack.InvoiceName("FB", 1)
	s.Emulator.SetDownload(inv, emulator.Download{Size: 300 << 10})
	r := enqueue(t, s, "", "invoice-summary", "--billing-account", devstack.SampleBillingAccount, "--invoice-name", inv, "--id", "fetch-blob", "--wait", "--json")
	var ev messages.Completed
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); r.code != 0 || err != nil || ev.Archive == nil || ev.Archive.Store != messages.StoreAzureBlob {
		t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "doc.pdf")
	if r := enqueue(t, s, "", "fetch", "fetch-blob", "-o", out); r.code != exitFailed || !strings.Contains(r.stderr, "no Blob Storage access") {
		t.Fatalf("without an account: exit %d: %s", r.code, r.stderr)
	}
	if r := enqueue(t, s, "", "fetch", "fetch-blob", "-o", out, "--connection-string-file", connFile); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	data, err := os.ReadFile(out)
	sum := sha256.Sum256(data)
	if err != nil || hex.EncodeToString(sum[:]) != ev.Archive.SHA256 {
		t.Fatalf("file: %v", err)
	}
}

// enqueue fetch -o DIR writes every file of a report of several files,
// each digest the one the emulator served, and the archive manifest; from
// the Object Store and from Blob Storage (Azurite).
func TestFetchReportOfSeveralFiles(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"nats", "azblob"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			connFile := filepath.Join(t.TempDir(), "conn")
			if store == "azblob" {
				if err := os.WriteFile(connFile, []byte(azurite.Start(t)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := devstack.Start(devstack.Options{Dir: t.TempDir(), Emulator: emulator.Options{Default: []emulator.Reply{emulator.Accepted("1"), emulator.OK()}},
				Configure: func(c *config.Config) {
					if store == "azblob" {
						c.ArchiveStore, c.ArchiveBucket, c.ArchiveConnFile = "azblob", "costs", connFile
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			inv := devstack.InvoiceName("FM"+store[:1], 1)
			sizes := []int64{700 << 10, 13, 2 << 20}
			s.Emulator.SetCostReport(inv, emulator.CostReport{BlobSizes: sizes})
			r := enqueue(t, s, "", "cost-details", "--billing-account", devstack.SampleMCAAccount, "--billing-profile", devstack.SampleBillingProfile,
				"--invoice-name", inv, "--id", "costs-"+store, "--wait", "--json")
			var ev messages.Completed
			if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); r.code != 0 || err != nil || ev.Archive == nil || ev.Archive.Error != nil || len(ev.Files) != 3 {
				t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
			}
			dir := filepath.Join(t.TempDir(), "report")
			args := []string{"fetch", "costs-" + store, "-o", dir}
			if store == "azblob" {
				args = append(args, "--connection-string-file", connFile)
			}
			if r := enqueue(t, s, "", args...); r.code != 0 {
				t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
			}
			served := map[string]string{}
			for _, sv := range s.Emulator.ServedFor(inv) {
				served[sv.File] = sv.SHA256
			}
			for i, f := range ev.Files {
				name := filepath.Base(f.Archive.Name)
				data, err := os.ReadFile(filepath.Join(dir, name))
				sum := sha256.Sum256(data)
				if err != nil || int64(len(data)) != sizes[i] || hex.EncodeToString(sum[:]) != served[name] {
					t.Errorf("file %d %s: %v, %d bytes, digest %x, served %s", i, name, err, len(data), sum, served[name])
				}
			}
			var m messages.ArchiveManifest
			data, err := os.ReadFile(filepath.Join(dir, messages.ManifestFile))
			if err != nil || json.Unmarshal(data, &m) != nil || len(m.Files) != 3 || m.Manifest == nil || m.Manifest.BlobCount != 3 {
				t.Errorf("manifest: %v %s", err, data)
			}
		})
	}
}
