package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/azurite"
	"github.com/azbilling/worker/internal/natstest"
	"github.com/azbilling/worker/pkg/messages"
)

func natsStore(t *testing.T) *archive.ObjectStore {
	t.Helper()
	js := natstest.JetStream(t)
	obs, err := js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: "test_archive"})
	if err != nil {
		t.Fatal(err)
	}
	return archive.NewObjectStore(js, obs, "test_archive")
}

func blobStore(t *testing.T) (*archive.BlobStore, string) {
	t.Helper()
	conn := azurite.Start(t)
	s, err := archive.NewBlobStoreFromConnectionString(conn, "test-archive", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(context.Background()); err != nil { // a second time: exists already
		t.Fatal(err)
	}
	return s, conn
}

func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// failing yields n bytes of r, then fails: a download that broke.
type failing struct {
	r io.Reader
	n int
}

var errBroke = errors.New("connection reset by peer")

func (f *failing) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBroke
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// conformance holds a Store to the package's promises.
func conformance(t *testing.T, s archive.Store, kind string) {
	ctx := context.Background()
	meta := archive.Meta{ContentType: "application/pdf", Source: "https://storage.example/c/doc.pdf", RequestID: "req-1"}
	doc := content(5<<20+3, 1) // more than one blob block, many object chunks
	const name = "invoice-summary/12345678/G123456789/G123456789_summary.pdf"
	if s.Kind() != kind {
		t.Errorf("kind %q", s.Kind())
	}

	obj, err := s.Put(ctx, name, meta, bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if obj.Name != name || obj.Size != int64(len(doc)) || obj.SHA256 != digest(doc) || obj.ContentType != meta.ContentType || obj.StoredAt.IsZero() {
		t.Errorf("put: %+v", obj)
	}

	t.Run("read back, digest checked", func(t *testing.T) {
		r, got, err := s.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		data, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(data, doc) {
			t.Fatalf("read %d bytes: %v", len(data), err)
		}
		if got.SHA256 != obj.SHA256 || got.Size != obj.Size || got.Source != meta.Source || got.RequestID != "req-1" || got.ContentType != meta.ContentType {
			t.Errorf("open: %+v", got)
		}
	})
	t.Run("same content again: done, the first object", func(t *testing.T) {
		again, err := s.Put(ctx, name, meta, bytes.NewReader(doc))
		if err != nil || again.SHA256 != obj.SHA256 || !again.StoredAt.Equal(obj.StoredAt) {
			t.Fatalf("%+v %v", again, err)
		}
	})
	t.Run("other content: refused, never overwritten", func(t *testing.T) {
		other := content(1<<20, 2)
		if _, err := s.Put(ctx, name, meta, bytes.NewReader(other)); !errors.Is(err, archive.ErrExists) {
			t.Fatalf("%v, want ErrExists", err)
		}
		r, _, err := s.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(data, doc) {
			t.Error("the stored document changed")
		}
	})
	t.Run("a put that breaks leaves nothing visible", func(t *testing.T) {
		const broken = "invoice-summary/12345678/G000000001/broken.pdf"
		_, err := s.Put(ctx, broken, meta, &failing{r: bytes.NewReader(doc), n: 2<<20 + 5})
		if !errors.Is(err, errBroke) {
			t.Fatalf("%v, want the read's error", err)
		}
		if _, _, err := s.Open(ctx, broken); !errors.Is(err, archive.ErrNotFound) {
			t.Fatalf("%v, want ErrNotFound", err)
		}
		// And the name is free for the next attempt.
		if _, err := s.Put(ctx, broken, meta, bytes.NewReader(doc[:1000])); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("empty document", func(t *testing.T) {
		o, err := s.Put(ctx, "empty/doc", meta, bytes.NewReader(nil))
		if err != nil || o.Size != 0 || o.SHA256 != digest(nil) {
			t.Fatalf("%+v %v", o, err)
		}
		r, _, err := s.Open(ctx, "empty/doc")
		if err != nil {
			t.Fatal(err)
		}
		if data, err := io.ReadAll(r); err != nil || len(data) != 0 {
			t.Fatalf("%d bytes, %v", len(data), err)
		}
		r.Close()
	})
}

func TestObjectStore(t *testing.T) {
	t.Parallel()
	conformance(t, natsStore(t), messages.StoreNATS)
}

func TestBlobStore(t *testing.T) {
	t.Parallel()
	s, conn := blobStore(t)
	conformance(t, s, messages.StoreAzureBlob)

	// A blob replaced behind the store's back (its recorded digest kept)
	// fails at the end of the read.
	ctx := context.Background()
	c, err := container.NewClientFromConnectionString(conn, "test-archive", nil)
	if err != nil {
		t.Fatal(err)
	}
	const name = "tampered/doc.pdf"
	doc := content(100<<10, 3)
	if _, err := s.Put(ctx, name, archive.Meta{ContentType: "application/pdf"}, bytes.NewReader(doc)); err != nil {
		t.Fatal(err)
	}
	sum := digest(doc)
	doc[10] ^= 1
	if _, err := c.NewBlockBlobClient(name).UploadBuffer(ctx, doc, &blockblob.UploadBufferOptions{Metadata: map[string]*string{"sha256": &sum}}); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); !errors.Is(err, archive.ErrDigestMismatch) {
		t.Errorf("tampered blob: %v", err)
	}
}
