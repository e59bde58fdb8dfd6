package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/azbilling/worker/pkg/messages"
)

// ArchiveFiles archives a report of several files: each file streamed
// into its own object (as Archive does), then the archive manifest
// (messages.ArchiveManifest) listing them, under the same prefix. It
// returns the manifest's archive and each file's, in order; or the first
// failure, which names the file (what was stored stays: another attempt
// finds it).
//
// A file this request stored before from the same link (an attempt cut
// off, a worker that died), with the size Azure announced, is not
// downloaded again.
func (a *Archiver) ArchiveFiles(ctx context.Context, req messages.Request, manifest *messages.ReportManifest,
	files []messages.ReportFile,
) (*messages.Archive, []*messages.Archive, error) {
	out := make([]*messages.Archive, len(files))
	m := messages.ArchiveManifest{Version: messages.Version, ID: req.ID, Kind: req.Kind, Manifest: manifest}
	for i, f := range files {
		obj := a.stored(ctx, req, f)
		if obj == nil {
			var err error
			if obj, err = a.Archive(ctx, req, f.URL); err != nil {
				return nil, nil, fileError(i, len(files), err)
			}
		}
		out[i] = obj
		m.Files = append(m.Files, messages.ArchivedFile{Name: obj.Name, Size: obj.Size, SHA256: obj.SHA256,
			ContentType: obj.ContentType, ByteCount: f.ByteCount})
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, nil, &Error{Kind: StoreFailed, Err: fmt.Errorf("archive manifest: %w", err)}
	}
	name := messages.ObjectName(req, messages.ManifestFile)
	obj, err := a.Store.Put(ctx, name, Meta{ContentType: "application/json", RequestID: req.ID}, bytes.NewReader(body))
	switch {
	case err == nil:
	case errors.Is(err, ErrExists):
		return nil, nil, &Error{Kind: Conflict, Err: fmt.Errorf("archive manifest: %w", err)}
	case transientStore(a.Store, err):
		return nil, nil, &Error{Kind: Transient, Err: fmt.Errorf("store %s in %s %s: %w", name, a.Store.Kind(), a.Store.Bucket(), err)}
	default:
		return nil, nil, &Error{Kind: StoreFailed, Err: fmt.Errorf("store %s in %s %s: %w", name, a.Store.Kind(), a.Store.Bucket(), err)}
	}
	return archiveOf(a.Store, obj), out, nil
}

// stored returns the archive of f when an object of the size Azure
// announced for it is stored under its name already.
func (a *Archiver) stored(ctx context.Context, req messages.Request, f messages.ReportFile) *messages.Archive {
	if f.ByteCount <= 0 {
		return nil
	}
	r, obj, err := a.Store.Open(ctx, messages.ObjectName(req, f.URL))
	if err != nil {
		return nil
	}
	_ = r.Close()
	if obj.Size != f.ByteCount || obj.RequestID != req.ID || obj.Source != source(f.URL) {
		// Another request's object, or one from another report of this
		// request (asked for again after a link expired: its data may
		// differ), is downloaded again and compared by content, as any
		// document is.
		return nil
	}
	return archiveOf(a.Store, obj)
}

func archiveOf(s Store, obj Object) *messages.Archive {
	stored := obj.StoredAt
	return &messages.Archive{
		Store: s.Kind(), Bucket: s.Bucket(), Name: obj.Name, Size: obj.Size, SHA256: obj.SHA256,
		ContentType: obj.ContentType, StoredAt: &stored,
	}
}

// fileError says which file of a report failed, keeping the failure's kind.
func fileError(i, n int, err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return &Error{Kind: ae.Kind, Status: ae.Status, Err: fmt.Errorf("file %d of %d: %w", i+1, n, ae.Err)}
	}
	return fmt.Errorf("file %d of %d: %w", i+1, n, err)
}
