package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/azurite"
	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// archived checks that o completed with an archive of what the emulator
// served for invoice (once, whole) and returns it.
func (b *testBundle) archived(o client.Outcome, invoice string) *messages.Archive {
	b.t.Helper()
	if o.Completed == nil {
		b.t.Fatalf("%s: not completed: %+v", o.ID, o.Failed)
	}
	a := o.Completed.Archive
	if a == nil || a.Error != nil {
		b.t.Fatalf("%s: archive %+v", o.ID, a)
	}
	// The emulator records a whole download just after its last byte.
	testwait.For(b.t, 5*time.Second, "the emulator records the whole download", func() bool { return len(b.emu.ServedFor(invoice)) > 0 })
	served := b.emu.ServedFor(invoice)
	if len(served) != 1 {
		b.t.Fatalf("%s: served whole %d times, want 1", o.ID, len(served))
	}
	s := served[0]
	if a.SHA256 != s.SHA256 || a.Size != s.Size || a.ContentType != s.ContentType {
		b.t.Errorf("%s: archive %+v, the emulator served %+v", o.ID, a, s)
	}
	if a.Store != messages.StoreNATS || a.Bucket != "billing_archive" || a.StoredAt == nil || a.StoredAt.Before(o.Completed.AcceptedAt) {
		b.t.Errorf("%s: archive %+v", o.ID, a)
	}
	return a
}

// Every kind with a document: archived under its predictable name, with
// the digest of the emulator's bytes, readable back with the client.
func TestArchiveEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t)
	types := map[string]string{".pdf": "application/pdf", ".csv": "text/csv", ".zip": "application/zip"}
	for _, k := range messages.Kinds {
		if !k.ReturnsURL() {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			inv := b.invoice()
			b.emu.SetDownload(inv, emulator.Download{Size: 300<<10 + 7})
			req := devstack.Sample(k, b.id(), inv)
			b.submit(req)
			o := b.wait(req.ID, 30*time.Second)
			a := b.archived(o, inv)
			if a.ContentType != types[path.Ext(a.Name)] || a.Name != messages.ObjectName(req, o.Completed.URL) || !strings.HasPrefix(a.Name, string(k)+"/") {
				t.Errorf("archive %+v", a)
			}
			var buf bytes.Buffer
			got, err := b.stack.Client.Fetch(context.Background(), req.ID, &buf)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(buf.Bytes())
			if hex.EncodeToString(sum[:]) != a.SHA256 || int64(buf.Len()) != a.Size || got.Name != a.Name {
				t.Errorf("fetched %d bytes", buf.Len())
			}
			if a.ContentType != "application/zip" {
				want, _ := io.ReadAll(emulator.Document(a.Name[strings.LastIndex(a.Name, "/")+1:], a.Size))
				if !bytes.Equal(buf.Bytes(), want) {
					t.Error("fetched bytes differ from the emulator's document")
				}
			}
		})
	}
}

// A request may opt out; the invoice kind has nothing to archive.
func TestArchiveOptOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	req := sampleSummary(b.id(), inv)
	no := false
	req.Archive = &no
	b.submit(req)
	if o := b.wait(req.ID, 30*time.Second); o.Completed == nil || o.Completed.Archive != nil || b.emu.Downloads(inv) != 0 {
		t.Fatalf("%+v, %d downloads", o.Completed, b.emu.Downloads(inv))
	}
	read := devstack.Sample(messages.KindInvoice, b.id(), b.invoice())
	b.submit(read)
	if o := b.wait(read.ID, 30*time.Second); o.Completed == nil || o.Completed.Archive != nil {
		t.Fatalf("%+v", o.Completed)
	}
	if _, err := b.stack.Client.Fetch(context.Background(), req.ID, io.Discard); !errors.Is(err, client.ErrNotArchived) {
		t.Errorf("fetch of an unarchived document: %v", err)
	}
}

// A worker with no store: a request that asks gets not_configured, and
// its link.
func TestArchiveNotConfigured(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) { c.ArchiveStore = "none" })
	req := sampleSummary(b.id(), b.invoice())
	yes := true
	req.Archive = &yes
	b.submit(req)
	o := b.wait(req.ID, 30*time.Second)
	if o.Completed == nil || o.Completed.URL == "" || o.Completed.Archive == nil || o.Completed.Archive.Error == nil ||
		o.Completed.Archive.Error.Code != messages.ArchiveNotConfigured {
		t.Fatalf("%+v", o.Completed)
	}
}

// A download cut mid-body is tried again into a fresh object; a link that
// expired gets one new Azure call, then is archived.
func TestArchiveFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.BackoffInitial = 50 * time.Millisecond
		c.PollMinWait = 10 * time.Millisecond
	})
	t.Run("reset mid-body", func(t *testing.T) {
		inv := b.invoice()
		b.emu.SetDownload(inv, emulator.Download{Size: 1 << 20, Resets: 2, ResetAfter: 200 << 10})
		req := sampleSummary(b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, 30*time.Second)
		b.archived(o, inv)
		if n := b.emu.Downloads(inv); n != 3 {
			t.Errorf("%d downloads, want 3", n)
		}
		if len(b.events(req.ID)) != 1 {
			t.Errorf("%d events", len(b.events(req.ID)))
		}
	})
	t.Run("expired link", func(t *testing.T) {
		inv := b.invoice()
		b.emu.SetDownload(inv, emulator.Download{Size: 100 << 10, Expired: 1})
		req := sampleSummary(b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, 30*time.Second)
		b.archived(o, inv)
		posts := 0
		for _, c := range b.emu.CallsFor(inv) {
			if c.Method == http.MethodPost {
				posts++
			}
		}
		if posts != 2 || b.emu.Downloads(inv) != 2 {
			t.Errorf("%d POSTs and %d downloads, want 2 and 2", posts, b.emu.Downloads(inv))
		}
		if strings.Contains(o.Completed.URL, "sig=") && o.Completed.AzureCalls < 3 {
			t.Errorf("azure calls %d", o.Completed.AzureCalls)
		}
	})
	t.Run("link keeps expiring", func(t *testing.T) {
		inv := b.invoice()
		b.emu.SetDownload(inv, emulator.Download{Size: 1 << 10, Expired: 100})
		req := sampleSummary(b.id(), inv)
		b.submit(req)
		o := b.wait(req.ID, 30*time.Second)
		if o.Completed == nil || o.Completed.URL == "" || o.Completed.Archive.Error == nil || o.Completed.Archive.Error.Code != messages.ArchiveLinkExpired {
			t.Fatalf("%+v", o.Completed)
		}
		if strings.Contains(o.Completed.Archive.Error.Message, "sig=") && !strings.Contains(o.Completed.Archive.Error.Message, "REDACTED") {
			t.Errorf("signature in %q", o.Completed.Archive.Error.Message)
		}
		if n := b.emu.Downloads(inv); n != 3 {
			t.Errorf("%d downloads, want 3 (the first link and two new ones)", n)
		}
	})
}

// The store refuses the write: the completion event goes out with Azure's
// link and store_failed.
func TestArchiveStoreFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	js, err := jetstream.New(b.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.UpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "billing_archive", Storage: jetstream.FileStorage, MaxBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	inv := b.invoice()
	b.emu.SetDownload(inv, emulator.Download{Size: 1 << 20})
	req := sampleSummary(b.id(), inv)
	b.submit(req)
	o := b.wait(req.ID, 30*time.Second)
	c := o.Completed
	if c == nil || c.URL == "" || c.Archive == nil || c.Archive.Error == nil || c.Archive.Error.Code != messages.ArchiveStoreFailed {
		t.Fatalf("%+v", c)
	}
	if strings.Contains(c.Archive.Error.Message, "sig=") {
		t.Errorf("signature in %q", c.Archive.Error.Message)
	}
	obs, err := js.ObjectStore(ctx, "billing_archive")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(ctx, messages.ObjectName(req, c.URL)); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("a partial object is visible: %v", err)
	}
}

// A second request for the same document is recognised as done; the
// client refuses a tampered object and leaves no file behind.
func TestArchiveSameContentAndTamper(t *testing.T) {
	t.Parallel()
	b := setup(t)
	inv := b.invoice()
	b.emu.SetDownload(inv, emulator.Download{Size: 200 << 10})
	first := sampleSummary(b.id(), inv)
	b.submit(first)
	a1 := b.wait(first.ID, 30*time.Second).Completed.Archive
	again := sampleSummary(b.id(), inv)
	b.submit(again)
	a2 := b.wait(again.ID, 30*time.Second).Completed.Archive
	if a1 == nil || a2 == nil || a2.Error != nil || a1.Name != a2.Name || a1.SHA256 != a2.SHA256 || !a1.StoredAt.Equal(*a2.StoredAt) {
		t.Fatalf("%+v %+v", a1, a2)
	}

	dir := t.TempDir()
	out := filepath.Join(dir, "summary.pdf")
	ctx := context.Background()
	if _, err := b.stack.Client.FetchFile(ctx, first.ID, out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if sum := sha256.Sum256(data); err != nil || hex.EncodeToString(sum[:]) != a1.SHA256 {
		t.Fatalf("fetched file: %v", err)
	}
	// Replace the object behind the worker's back.
	js, _ := jetstream.New(b.stack.Conn)
	obs, err := js.ObjectStore(ctx, a1.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, a1.Name, bytes.Repeat([]byte("x"), int(a1.Size))); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(dir, "tampered.pdf")
	if _, err := b.stack.Client.FetchFile(ctx, first.ID, out2); !errors.Is(err, client.ErrDigestMismatch) {
		t.Fatalf("tampered object: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
}

// Azure Blob Storage as the archive (Azurite, with the real azblob
// client): archived with the digest of the emulator's bytes, and read back
// through the stack's client, which the worker's settings give Blob
// Storage access.
func TestArchiveAzureBlob(t *testing.T) {
	t.Parallel()
	conn := azurite.Start(t)
	connFile := filepath.Join(t.TempDir(), "conn")
	if err := os.WriteFile(connFile, []byte(conn), 0o600); err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *config.Config) {
		c.ArchiveStore, c.ArchiveBucket, c.ArchiveConnFile = "azblob", "billing-archive", connFile
	})
	inv := b.invoice()
	b.emu.SetDownload(inv, emulator.Download{Size: 6<<20 + 1, Resets: 1, ResetAfter: 3 << 20})
	req := devstack.Sample(messages.KindInvoicePriceSheet, b.id(), inv)
	b.submit(req)
	o := b.wait(req.ID, 60*time.Second)
	a := o.Completed.Archive
	if a == nil || a.Error != nil {
		t.Fatalf("%+v", o.Completed)
	}
	testwait.For(t, 5*time.Second, "the emulator records the whole download", func() bool { return len(b.emu.ServedFor(inv)) > 0 })
	s := b.emu.ServedFor(inv)
	if len(s) != 1 || a.Store != messages.StoreAzureBlob || a.Bucket != "billing-archive" || a.SHA256 != s[0].SHA256 || a.Size != s[0].Size || a.ContentType != "text/csv" {
		t.Fatalf("archive %+v, served %+v", a, s)
	}
	// The stack's client (dev mode's console's too) reads Blob Storage with
	// the worker's archive settings.
	out := filepath.Join(t.TempDir(), "pricesheet.csv")
	if _, err := b.stack.Client.FetchFile(context.Background(), req.ID, out); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != a.SHA256 {
		t.Error("fetched file differs")
	}
}

// A download that lasts longer than a claim and than ack-wait: the claim
// is renewed and the message kept in progress, so no other delivery takes
// the operation over (one download, one event).
func TestArchiveLongDownloadKeepsItsClaim(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *config.Config) {
		c.HTTPTimeout = 2 * time.Second // a claim of 4 s
		c.AckWait = 5 * time.Second
	})
	inv := b.invoice()
	// 64 KiB every 300 ms: about 7 s for 1.5 MiB.
	b.emu.SetDownload(inv, emulator.Download{Size: 1536 << 10, Delay: 300 * time.Millisecond})
	req := sampleSummary(b.id(), inv)
	b.submit(req)
	o := b.wait(req.ID, 60*time.Second)
	b.archived(o, inv)
	if n := b.emu.Downloads(inv); n != 1 {
		t.Errorf("%d downloads: the operation was taken over mid-download", n)
	}
	// Once the work stream's consumers hold nothing, no redelivery can come:
	// a takeover mid-download would have ended in a second event by then.
	b.workSettled(eventTimeout)
	if n := b.emu.Downloads(inv); n != 1 {
		t.Errorf("%d downloads once settled: the operation was taken over mid-download", n)
	}
	if n := len(b.events(req.ID)); n != 1 {
		t.Errorf("%d events", n)
	}
}
