package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
)

// Doer sends an HTTP request; *http.Client and azcore's policy.Transporter
// are Doers.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Archiver downloads documents from their links into a Store.
type Archiver struct {
	Store Store
	// HTTP sends the downloads (nil: http.DefaultClient).
	HTTP Doer
	// IdleTimeout cuts a download whose answer or body yields nothing for
	// this long (0: never; the caller's context still bounds it).
	IdleTimeout time.Duration
}

// FailureKind classifies a failed archive.
type FailureKind int

// The kinds of failure.
const (
	// Transient: the download broke (reset, timeout, 5xx, 408, 429); a new
	// attempt may succeed.
	Transient FailureKind = iota + 1
	// Expired: storage refused the link (403: expired, or its signature
	// not valid); a new link is needed.
	Expired
	// Refused: storage refused the download for good (another 4xx).
	Refused
	// StoreFailed: the archive store failed the write.
	StoreFailed
	// Conflict: another document is stored under the name (ErrExists).
	Conflict
)

// Error is a failed archive. Its text holds no signature.
type Error struct {
	Kind FailureKind
	// Status is the download's HTTP status, when it had one.
	Status int
	Err    error
}

func (e *Error) Error() string { return redact.String(e.Err.Error()) }
func (e *Error) Unwrap() error { return e.Err }

// readError marks a failure to read the download's body, as opposed to a
// failure of the store.
type readError struct{ err error }

func (e *readError) Error() string { return "read the document: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// Archive downloads the document of req behind link and stores it under
// messages.ObjectName(req, link), streaming: the body goes to the store as
// it arrives, hashed on the way. The error is an *Error.
func (a *Archiver) Archive(ctx context.Context, req messages.Request, link string) (*messages.Archive, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := newIdle(a.IdleTimeout, cancel)
	defer idle.stop()

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, &Error{Kind: Refused, Err: fmt.Errorf("download link %s: %w", redact.URL(link), err)}
	}
	hc := a.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return nil, &Error{Kind: Transient, Err: fmt.Errorf("download %s: %w", source(link), cause(ctx, err))}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		e := &Error{Kind: Refused, Status: resp.StatusCode, Err: fmt.Errorf("download %s: storage answered %s", source(link), resp.Status)}
		switch {
		case resp.StatusCode == http.StatusForbidden:
			e.Kind = Expired
		case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
			e.Kind = Transient
		}
		return nil, e
	}
	ctype := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ctype); err == nil {
		ctype = mt
	}
	name := messages.ObjectName(req, link)
	body := &bodyReader{r: resp.Body, idle: idle}
	obj, err := a.Store.Put(ctx, name, Meta{ContentType: ctype, Source: source(link), RequestID: req.ID}, body)
	var re *readError
	switch {
	case err == nil:
	case body.err != nil || errors.As(err, &re):
		return nil, &Error{Kind: Transient, Status: resp.StatusCode, Err: fmt.Errorf("download %s: %w", source(link), cause(ctx, body.errOr(err)))}
	case errors.Is(err, ErrExists):
		return nil, &Error{Kind: Conflict, Err: err}
	case transientStore(a.Store, err):
		return nil, &Error{Kind: Transient, Err: fmt.Errorf("store %s in %s %s: %w", name, a.Store.Kind(), a.Store.Bucket(), err)}
	default:
		return nil, &Error{Kind: StoreFailed, Err: fmt.Errorf("store %s in %s %s: %w", name, a.Store.Kind(), a.Store.Bucket(), err)}
	}
	stored := obj.StoredAt
	return &messages.Archive{
		Store: a.Store.Kind(), Bucket: a.Store.Bucket(), Name: obj.Name, Size: obj.Size, SHA256: obj.SHA256,
		ContentType: obj.ContentType, StoredAt: &stored,
	}, nil
}

// transientStore reports whether the store's failure is worth another
// attempt (the store is busy or did not answer in time).
func transientStore(s Store, err error) bool {
	t, ok := s.(interface{ transient(error) bool })
	return ok && t.transient(err)
}

// source is link without its query and fragment (the signature): what the
// archive records as the document's source.
func source(link string) string {
	u, err := url.Parse(link)
	if err != nil {
		return redact.String(link)
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// cause prefers the reason ctx was cancelled with (the idle timeout) to the
// bare "context canceled" an interrupted read reports.
func cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w (%w)", err, c)
	}
	return err
}

// bodyReader reads the download's body, telling the idle timer of progress
// and keeping the first read error.
type bodyReader struct {
	r    io.Reader
	idle *idle
	err  error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.idle.reset()
	}
	if err != nil && err != io.EOF {
		b.err = err
		return n, &readError{err}
	}
	return n, err
}

func (b *bodyReader) errOr(err error) error {
	if b.err != nil {
		return b.err
	}
	return err
}

// errIdle is why a download that yielded nothing for a while is cut.
var errIdle = errors.New("no data for the idle timeout")

// idle cancels a download when it makes no progress for a while.
type idle struct {
	d time.Duration
	t *time.Timer
}

func newIdle(d time.Duration, cancel context.CancelCauseFunc) *idle {
	i := &idle{d: d}
	if d > 0 {
		i.t = time.AfterFunc(d, func() { cancel(fmt.Errorf("%w (%s)", errIdle, d)) })
	}
	return i
}

func (i *idle) reset() {
	if i.t != nil {
		i.t.Reset(i.d)
	}
}

func (i *idle) stop() {
	if i.t != nil {
		i.t.Stop()
	}
}
