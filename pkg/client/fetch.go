package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/pkg/messages"
)

// ErrNotArchived: the request's operation has not completed, or its
// document was not archived (its completion event has no archive, or an
// archive error).
var ErrNotArchived = errors.New("no archived document for this request")

// ErrDigestMismatch is matched by Fetch's error when what was read does
// not have the digest the completion event gives.
var ErrDigestMismatch = errors.New("the archived document does not match its SHA-256 digest")

// BlobOpener returns a client of an Azure Blob Storage container, for
// Fetch of documents archived there. BlobConnectionString and BlobAccount
// make one.
type BlobOpener func(name string) (*container.Client, error)

// BlobConnectionString opens containers of the storage account a
// connection string names (a local Azurite's, say).
func BlobConnectionString(conn string) BlobOpener {
	return func(name string) (*container.Client, error) {
		c, err := container.NewClientFromConnectionString(conn, name, nil)
		if err != nil {
			return nil, fmt.Errorf("blob container %s: %w", name, err)
		}
		return c, nil
	}
}

// BlobAccount opens containers of the storage account at accountURL
// (https://<account>.blob.core.windows.net/), reached with cred.
func BlobAccount(accountURL string, cred azcore.TokenCredential) BlobOpener {
	return func(name string) (*container.Client, error) {
		c, err := container.NewClient(strings.TrimSuffix(accountURL, "/")+"/"+name, cred, nil)
		if err != nil {
			return nil, fmt.Errorf("blob container %s: %w", name, err)
		}
		return c, nil
	}
}

// SetBlobOpener makes Fetch read documents archived in Azure Blob Storage
// through open.
func (c *Client) SetBlobOpener(open BlobOpener) { c.blob = open }

// Archived returns the archive of request id's document: from the stored
// state of its operation, or, when that has expired, from its completion
// event.
func (c *Client) Archived(ctx context.Context, id string) (*messages.Archive, error) {
	var completed *messages.Completed
	st, err := c.Status(ctx, id)
	switch {
	case err == nil:
		completed = st.Completed
	case errors.Is(err, ErrNoState):
		o, ok, err := c.Last(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			completed = o.Completed
		}
	default:
		return nil, err
	}
	switch {
	case completed == nil:
		return nil, fmt.Errorf("%w: %s has not completed", ErrNotArchived, id)
	case completed.Archive == nil:
		return nil, fmt.Errorf("%w: %s was not to be archived", ErrNotArchived, id)
	case completed.Archive.Error != nil:
		return nil, fmt.Errorf("%w: %s: %s: %s", ErrNotArchived, id, completed.Archive.Error.Code, completed.Archive.Error.Message)
	}
	return completed.Archive, nil
}

// Fetch writes the archived document of request id to w, streaming it from
// its store, and returns its archive. The digest is checked against the
// completion event's: when what was read does not match, the error
// matches ErrDigestMismatch, and what was written to w must not be
// used.
func (c *Client) Fetch(ctx context.Context, id string, w io.Writer) (*messages.Archive, error) {
	a, err := c.Archived(ctx, id)
	if err != nil {
		return nil, err
	}
	store, err := c.storeOf(ctx, id, a)
	if err != nil {
		return nil, err
	}
	return a, copyObject(ctx, store, a, w)
}

// storeOf opens the store an archive is in.
func (c *Client) storeOf(ctx context.Context, id string, a *messages.Archive) (archive.Store, error) {
	var store archive.Store
	switch a.Store {
	case messages.StoreNATS:
		obs, err := c.js.ObjectStore(ctx, a.Bucket)
		if err != nil {
			return nil, fmt.Errorf("object store %s: %w", a.Bucket, err)
		}
		store = archive.NewObjectStore(c.js, obs, a.Bucket)
	case messages.StoreAzureBlob:
		if c.blob == nil {
			return nil, fmt.Errorf("%s is archived in Azure Blob Storage (container %s); this client has no Blob Storage access", id, a.Bucket)
		}
		cc, err := c.blob(a.Bucket)
		if err != nil {
			return nil, err
		}
		store = archive.NewBlobStore(cc, a.Bucket)
	default:
		return nil, fmt.Errorf("%s is archived in a store this client does not know: %q", id, a.Store)
	}
	return store, nil
}

// copyObject streams the object a describes to w, its size and digest
// checked against a's.
func copyObject(ctx context.Context, store archive.Store, a *messages.Archive, w io.Writer) error {
	r, obj, err := store.Open(ctx, a.Name)
	if errors.Is(err, archive.ErrDigestMismatch) { // a blob without its digest
		return fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	if obj.SHA256 != a.SHA256 || obj.Size != a.Size {
		return fmt.Errorf("%w: %s %s holds %d bytes with SHA-256 %s; the event says %d bytes, %s",
			ErrDigestMismatch, a.Store, a.Name, obj.Size, obj.SHA256, a.Size, a.SHA256)
	}
	n, err := io.Copy(w, archive.VerifyingReader(r, a.SHA256))
	if err == nil && n != a.Size {
		err = fmt.Errorf("%w: read %d bytes, the event says %d", ErrDigestMismatch, n, a.Size)
	}
	if !errors.Is(err, ErrDigestMismatch) && (errors.Is(err, jetstream.ErrDigestMismatch) || errors.Is(err, archive.ErrDigestMismatch)) {
		err = fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	if err != nil {
		return fmt.Errorf("read %s %s: %w", a.Store, a.Name, err)
	}
	return nil
}

// FetchFile writes the archived document of request id to the file path:
// to a temporary file beside it, renamed to path only once the digest
// checked out. On any error no file is left at path (an existing one is
// left as it was).
func (c *Client) FetchFile(ctx context.Context, id, path string) (*messages.Archive, error) {
	var a *messages.Archive
	err := writeFile(path, func(w io.Writer) error {
		var err error
		a, err = c.Fetch(ctx, id, w)
		return err
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// FetchDir writes every archived file of request id into the directory
// dir (made if missing), each under the last segment of its object's
// name, and returns the paths written. For a report of several files
// (its archive is an archive manifest, messages.ManifestFile), that is
// each file, then the manifest; for any other request, its one document.
// Every digest is checked; a file whose digest does not match is not left
// at its path.
func (c *Client) FetchDir(ctx context.Context, id, dir string) ([]string, error) {
	a, err := c.Archived(ctx, id)
	if err != nil {
		return nil, err
	}
	store, err := c.storeOf(ctx, id, a)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	if pathpkg.Base(a.Name) == messages.ManifestFile {
		var buf bytes.Buffer
		if err := copyObject(ctx, store, a, &buf); err != nil {
			return nil, err
		}
		var m messages.ArchiveManifest
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("archive manifest %s: %w", a.Name, err)
		}
		for _, f := range m.Files {
			fa := &messages.Archive{Store: a.Store, Bucket: a.Bucket, Name: f.Name, Size: f.Size, SHA256: f.SHA256}
			base := pathpkg.Base(f.Name)
			if base == "." || base == ".." || base == "/" || strings.ContainsAny(base, `/\`) {
				return paths, fmt.Errorf("archive manifest %s names a file %q that is not a plain file name", a.Name, f.Name)
			}
			p := filepath.Join(dir, base)
			if err := writeFile(p, func(w io.Writer) error { return copyObject(ctx, store, fa, w) }); err != nil {
				return paths, err
			}
			paths = append(paths, p)
		}
	}
	p := filepath.Join(dir, pathpkg.Base(a.Name))
	if err := writeFile(p, func(w io.Writer) error { return copyObject(ctx, store, a, w) }); err != nil {
		return paths, err
	}
	return append(paths, p), nil
}

// writeFile writes path with write: to a temporary file beside it,
// renamed to path only once write succeeded.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	err = write(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
