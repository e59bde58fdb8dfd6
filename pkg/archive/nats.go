package archive

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/messages"
)

// ObjectStore keeps documents in a NATS JetStream Object Store bucket: each
// object is its chunks (messages) and a metadata message published only
// after the last chunk is stored, so a Put that fails (its chunks are
// purged) or whose process dies (its chunks stay, under no name) leaves no
// object visible.
type ObjectStore struct {
	obs    jetstream.ObjectStore
	bucket string
}

var _ Store = (*ObjectStore)(nil)

// NewObjectStore returns the store of obs, the bucket named bucket.
func NewObjectStore(obs jetstream.ObjectStore, bucket string) *ObjectStore {
	return &ObjectStore{obs: obs, bucket: bucket}
}

// Kind is messages.StoreNATS.
func (s *ObjectStore) Kind() string { return messages.StoreNATS }

// Bucket is the Object Store bucket's name.
func (s *ObjectStore) Bucket() string { return s.bucket }

// Put stores r under name unless the name is taken. The object store has no
// conditional put: the name is looked up first; the operation's claim keeps
// two workers from archiving one document at once.
func (s *ObjectStore) Put(ctx context.Context, name string, meta Meta, r io.Reader) (Object, error) {
	info, err := s.obs.GetInfo(ctx, name)
	switch {
	case err == nil:
		return sameContent(objectOf(info), r)
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return Object{}, fmt.Errorf("look up object %s: %w", name, err)
	}
	h := newHashing(r)
	info, err = s.obs.Put(ctx, jetstream.ObjectMeta{
		Name: name,
		Metadata: map[string]string{
			metaContentType: meta.ContentType, metaSource: meta.Source, metaRequestID: meta.RequestID,
		},
	}, h)
	if err != nil {
		// The client purges the chunks of a failed put, but may have
		// stored its metadata (a full stream takes the small metadata
		// message after refusing chunks): the name was free before, so
		// whatever it shows now is this failed put's.
		if _, gerr := s.obs.GetInfo(ctx, name); gerr == nil {
			_ = s.obs.Delete(ctx, name)
		}
		return Object{}, fmt.Errorf("put object %s: %w", name, err)
	}
	// The server's time of the metadata, as GetInfo reports it later (the
	// client's Put sets its own clock's).
	if stored, err := s.obs.GetInfo(ctx, name); err == nil && stored.NUID == info.NUID {
		info = stored
	}
	obj := objectOf(info)
	if obj.SHA256 != h.sum() {
		// The store hashed other bytes than were read: cannot happen.
		return Object{}, fmt.Errorf("put object %s: %w", name, ErrDigestMismatch)
	}
	return obj, nil
}

// Open reads the named object; the reader fails at its end when the
// content does not match its digest.
func (s *ObjectStore) Open(ctx context.Context, name string) (io.ReadCloser, Object, error) {
	res, err := s.obs.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, Object{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, Object{}, fmt.Errorf("get object %s: %w", name, err)
	}
	info, err := res.Info()
	if err != nil {
		_ = res.Close()
		return nil, Object{}, fmt.Errorf("get object %s: %w", name, err)
	}
	obj := objectOf(info)
	return struct {
		io.Reader
		io.Closer
	}{VerifyingReader(res, obj.SHA256), res}, obj, nil
}

// objectOf describes an Object Store object.
func objectOf(info *jetstream.ObjectInfo) Object {
	return Object{
		Name: info.Name,
		Meta: Meta{
			ContentType: info.Metadata[metaContentType], Source: info.Metadata[metaSource], RequestID: info.Metadata[metaRequestID],
		},
		Size: int64(info.Size), SHA256: digestHex(info.Digest), StoredAt: info.ModTime.UTC(),
	}
}

// digestHex turns the Object Store's digest ("SHA-256=" and URL-safe
// base64) into hex; "" when it is not one.
func digestHex(d string) string {
	b64, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return ""
	}
	b, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(b)
}

// sameContent reads r to its end and returns stored when r had the same
// content, else ErrExists.
func sameContent(stored Object, r io.Reader) (Object, error) {
	sum, n, err := drain(r)
	if err != nil {
		return Object{}, err
	}
	if sum != stored.SHA256 || n != stored.Size {
		return Object{}, fmt.Errorf("%w: %s (stored: %d bytes, SHA-256 %s; this one: %d bytes, %s)", ErrExists, stored.Name, stored.Size, stored.SHA256, n, sum)
	}
	return stored, nil
}
