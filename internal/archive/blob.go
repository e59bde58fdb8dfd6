package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/azbilling/worker/pkg/messages"
)

// BlockSize is the size of the blocks BlobStore stages: one is held in
// memory per upload.
const BlockSize = 4 << 20

// BlobStore keeps documents as block blobs in an Azure Blob Storage
// container. Put stages the body block by block as it arrives and commits
// the block list at the end, conditionally (If-None-Match: *), with the
// SHA-256 computed on the way in the blob's metadata: until the commit
// nothing is visible under the name, and an existing blob is never
// overwritten.
type BlobStore struct {
	c    *container.Client
	name string
}

var _ Store = (*BlobStore)(nil)

// NewBlobStore returns the store of container c, named name.
func NewBlobStore(c *container.Client, name string) *BlobStore { return &BlobStore{c: c, name: name} }

// NewBlobStoreFromURL returns the store of container name in the account
// at accountURL (https://<account>.blob.core.windows.net/), reached with
// cred.
func NewBlobStoreFromURL(accountURL, name string, cred azcore.TokenCredential, o *container.ClientOptions) (*BlobStore, error) {
	c, err := container.NewClient(strings.TrimSuffix(accountURL, "/")+"/"+name, cred, o)
	if err != nil {
		return nil, fmt.Errorf("blob container %s: %w", name, err)
	}
	return NewBlobStore(c, name), nil
}

// NewBlobStoreFromConnectionString returns the store of container name in
// the account a connection string names (a local Azurite's, say).
func NewBlobStoreFromConnectionString(conn, name string, o *container.ClientOptions) (*BlobStore, error) {
	c, err := container.NewClientFromConnectionString(conn, name, o)
	if err != nil {
		return nil, fmt.Errorf("blob container %s: %w", name, err)
	}
	return NewBlobStore(c, name), nil
}

// Kind is messages.StoreAzureBlob.
func (s *BlobStore) Kind() string { return messages.StoreAzureBlob }

// Bucket is the container's name.
func (s *BlobStore) Bucket() string { return s.name }

// Ensure creates the container if it does not exist.
func (s *BlobStore) Ensure(ctx context.Context) error {
	_, err := s.c.Create(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("create blob container %s: %w", s.name, err)
	}
	return nil
}

// Put stages r as blocks of BlockSize and commits them under name unless a
// blob exists there; then the existing blob is the result when its
// SHA-256 and size are those of r, and ErrExists otherwise.
func (s *BlobStore) Put(ctx context.Context, name string, meta Meta, r io.Reader) (Object, error) {
	bb := s.c.NewBlockBlobClient(name)
	h := newHashing(r)
	prefix := make([]byte, 8)
	_, _ = rand.Read(prefix)
	var ids []string
	buf := make([]byte, BlockSize)
	for {
		n, err := io.ReadFull(h, buf)
		if n > 0 {
			// Block ids of one blob must all have the same length.
			id := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%x-%06d", prefix, len(ids)))
			if _, serr := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(buf[:n])), nil); serr != nil {
				return Object{}, fmt.Errorf("stage block %d of %s: %w", len(ids), name, serr)
			}
			ids = append(ids, id)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return Object{}, err // the read's error, as it is (see Archiver)
		}
	}
	sum := h.sum()
	resp, err := bb.CommitBlockList(ctx, ids, &blockblob.CommitBlockListOptions{
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: &meta.ContentType},
		Metadata: map[string]*string{
			metaSHA256: &sum, metaSource: &meta.Source, metaRequestID: &meta.RequestID, metaContentType: &meta.ContentType,
		},
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}},
	})
	switch {
	case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet):
		stored, gerr := s.describe(ctx, name)
		if gerr != nil {
			return Object{}, gerr
		}
		if stored.SHA256 != sum || stored.Size != h.n {
			return Object{}, fmt.Errorf("%w: %s (stored: %d bytes, SHA-256 %s; this one: %d bytes, %s)", ErrExists, name, stored.Size, stored.SHA256, h.n, sum)
		}
		return stored, nil
	case err != nil:
		return Object{}, fmt.Errorf("commit %s: %w", name, err)
	}
	stored := time.Now().UTC()
	if resp.LastModified != nil {
		stored = resp.LastModified.UTC()
	}
	return Object{Name: name, Meta: meta, Size: h.n, SHA256: sum, StoredAt: stored}, nil
}

// describe reads a blob's properties.
func (s *BlobStore) describe(ctx context.Context, name string) (Object, error) {
	p, err := s.c.NewBlockBlobClient(name).GetProperties(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return Object{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Object{}, fmt.Errorf("blob %s: %w", name, err)
	}
	return blobObject(name, p.Metadata, p.ContentLength, p.ContentType, p.LastModified), nil
}

// Open reads the named blob; the reader fails at its end when the content
// does not match the SHA-256 recorded at its commit.
func (s *BlobStore) Open(ctx context.Context, name string) (io.ReadCloser, Object, error) {
	resp, err := s.c.NewBlockBlobClient(name).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil, Object{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, Object{}, fmt.Errorf("blob %s: %w", name, err)
	}
	obj := blobObject(name, resp.Metadata, resp.ContentLength, resp.ContentType, resp.LastModified)
	if _, err := hex.DecodeString(obj.SHA256); err != nil || len(obj.SHA256) != 64 {
		_ = resp.Body.Close()
		return nil, Object{}, fmt.Errorf("%w: blob %s has no SHA-256 in its metadata", ErrDigestMismatch, name)
	}
	return struct {
		io.Reader
		io.Closer
	}{VerifyingReader(resp.Body, obj.SHA256), resp.Body}, obj, nil
}

func blobObject(name string, md map[string]*string, size *int64, ctype *string, modified *time.Time) Object {
	get := func(k string) string {
		for mk, v := range md {
			if strings.EqualFold(mk, k) && v != nil {
				return *v
			}
		}
		return ""
	}
	o := Object{Name: name, SHA256: get(metaSHA256), Meta: Meta{Source: get(metaSource), RequestID: get(metaRequestID), ContentType: get(metaContentType)}}
	if size != nil {
		o.Size = *size
	}
	if o.ContentType == "" && ctype != nil {
		o.ContentType = *ctype
	}
	if modified != nil {
		o.StoredAt = modified.UTC()
	}
	return o
}

func to[T any](v T) *T { return &v }

// transient: Blob Storage was busy or failing (the client already retried
// these; another attempt later may succeed).
func (s *BlobStore) transient(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return errors.Is(err, context.DeadlineExceeded)
}
