// Package archive keeps the documents behind Azure's short-lived download
// links: Archiver streams a document from its link into a Store, hashing
// it on the way (memory does not grow with the document), and Store has
// two implementations, the NATS JetStream Object Store (ObjectStore) and
// Azure Blob Storage (BlobStore).
//
// A Store never overwrites a different document: Put under a name that is
// taken succeeds only when the stored content has the same SHA-256 (a
// second archive of the same document is done already), and fails with
// ErrExists otherwise. A Put that fails, or whose process dies, leaves no
// object visible under the name.
package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"time"
)

// Store keeps documents by name.
type Store interface {
	// Put stores what r yields under name, unless name is taken: then it
	// reads r to its end and returns the stored object when its digest is
	// the same, or an error matching ErrExists.
	Put(ctx context.Context, name string, meta Meta, r io.Reader) (Object, error)
	// Open returns a reader of the named object and its description. The
	// reader fails at its end (ErrDigestMismatch) when what it yielded
	// does not have the object's digest.
	Open(ctx context.Context, name string) (io.ReadCloser, Object, error)
	// Kind is the store's name in events: messages.StoreNATS or
	// messages.StoreAzureBlob.
	Kind() string
	// Bucket is the Object Store bucket or the Blob Storage container.
	Bucket() string
}

// Meta describes a document being stored.
type Meta struct {
	// ContentType is the document's media type.
	ContentType string
	// Source is the link the document came from, without its query (which
	// holds the signature).
	Source string
	// RequestID is the request whose document it is.
	RequestID string
}

// Object describes a stored document.
type Object struct {
	Name string
	Meta
	// Size in bytes, and the lower-case hex SHA-256 digest.
	Size   int64
	SHA256 string
	// StoredAt is when the store committed it.
	StoredAt time.Time
}

// Errors of the stores.
var (
	// ErrExists: another document is stored under the name.
	ErrExists = errors.New("archive: another document is stored under that name")
	// ErrNotFound: nothing is stored under the name.
	ErrNotFound = errors.New("archive: no such object")
	// ErrDigestMismatch: what was read does not have the expected digest.
	ErrDigestMismatch = errors.New("archive: the content does not match its SHA-256 digest")
)

// Metadata keys the stores record with an object (Blob Storage metadata
// names must be C# identifiers, so no dashes).
const (
	metaSHA256      = "sha256"
	metaSource      = "source"
	metaRequestID   = "requestid"
	metaContentType = "contenttype"
)

// hashing counts and hashes what is read through it.
type hashing struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashing(r io.Reader) *hashing { return &hashing{r: r, h: sha256.New()} }

func (h *hashing) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashing) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// drain reads r to its end, hashing it, and returns its digest.
func drain(r io.Reader) (string, int64, error) {
	h := newHashing(r)
	_, err := io.Copy(io.Discard, h)
	return h.sum(), h.n, err
}

// VerifyingReader returns a reader of r that fails at its end with
// ErrDigestMismatch unless what it yielded has the hex SHA-256 digest want.
func VerifyingReader(r io.Reader, want string) io.Reader {
	return &verifying{hashing: newHashing(r), want: want}
}

type verifying struct {
	*hashing
	want string
}

func (v *verifying) Read(p []byte) (int, error) {
	n, err := v.hashing.Read(p)
	if errors.Is(err, io.EOF) && v.sum() != v.want {
		return n, ErrDigestMismatch
	}
	return n, err
}
