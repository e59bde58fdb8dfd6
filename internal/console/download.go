package console

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// handleDocument streams an operation's archived document from its store
// (pkg/client's Fetch: the stored object's size and digest must be the
// completion event's, and what is read is hashed as it goes). The
// response's length is the archive's; the last bytes are held back until
// the digest checked out, so a document whose content does not match is
// cut short (the browser reports a failed download) rather than handed
// out whole.
func (s *Server) handleDocument(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch {
	case !messages.ValidID(id):
		s.refuse(w, r, http.StatusNotFound, "That is not a request id.")
		return
	case s.o.NoDownloads:
		s.refuse(w, r, http.StatusForbidden, "Downloads of archived documents are off in this console (console-downloads).")
		return
	}
	a, err := s.o.Client.Archived(r.Context(), id)
	if err != nil {
		s.documentError(w, r, id, err, false)
		return
	}
	hw := &holdback{w: w, start: func() {
		h := w.Header()
		h.Set("Content-Type", contentType(a.ContentType))
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fileName(a.Name)}))
		h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
		h.Set("Cache-Control", "no-store")
		if sum, err := hex.DecodeString(a.SHA256); err == nil {
			h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
		}
		w.WriteHeader(http.StatusOK)
	}}
	if a.Size == 0 {
		hw.begin()
	}
	if _, err := s.o.Client.Fetch(r.Context(), id, hw); err != nil {
		s.documentError(w, r, id, err, hw.started)
		return
	}
	if err := hw.flush(); err != nil {
		s.o.Logger.InfoContext(r.Context(), "console: download cut", "request_id", id, "error", err)
		return
	}
	s.o.Logger.InfoContext(r.Context(), "console: document downloaded", "request_id", id, "store", a.Store,
		"bucket", a.Bucket, "name", a.Name, "size", a.Size, "remote", r.RemoteAddr)
}

// documentError answers a download that failed: an error page when
// nothing was sent yet, else the connection is cut (the response is
// shorter than its Content-Length, which the client sees as a failure).
func (s *Server) documentError(w http.ResponseWriter, r *http.Request, id string, err error, started bool) {
	msg := redact.String(err.Error())
	mismatch := errors.Is(err, client.ErrDigestMismatch)
	if mismatch {
		s.o.Logger.WarnContext(r.Context(), "console: archived document refused: its digest does not match", "request_id", id, "error", msg)
	}
	if started {
		panic(http.ErrAbortHandler)
	}
	switch {
	case errors.Is(err, client.ErrNotArchived), errors.Is(err, client.ErrNoState):
		s.refuse(w, r, http.StatusNotFound, "No archived document: "+msg)
	case errors.Is(err, archive.ErrNotFound):
		s.refuse(w, r, http.StatusNotFound, "The archived document is no longer in its store: "+msg)
	case mismatch:
		s.refuse(w, r, http.StatusBadGateway, "The stored document does not match the digest of its completion event, so it is not handed out: "+msg)
	default:
		s.refuse(w, r, http.StatusBadGateway, "Reading the archived document failed: "+msg)
	}
}

// holdbackBytes are kept back from the client until the digest is
// checked: enough that a refused document never arrives complete.
const holdbackBytes = 4 << 10

// holdback writes through to w all but the last holdbackBytes it was
// given, sending the response's header at the first write.
type holdback struct {
	w       http.ResponseWriter
	start   func()
	started bool
	held    []byte
}

func (h *holdback) begin() {
	if !h.started {
		h.started = true
		h.start()
	}
}

func (h *holdback) Write(p []byte) (int, error) {
	h.begin()
	h.held = append(h.held, p...)
	if over := len(h.held) - holdbackBytes; over > 0 {
		if _, err := h.w.Write(h.held[:over]); err != nil {
			return 0, err
		}
		h.held = append(h.held[:0], h.held[over:]...)
	}
	return len(p), nil
}

// flush sends what was held back.
func (h *holdback) flush() error {
	h.begin()
	_, err := h.w.Write(h.held)
	h.held = nil
	return err
}

// contentType is the archive's content type when it is a valid media
// type, else application/octet-stream.
func contentType(ct string) string {
	if _, _, err := mime.ParseMediaType(ct); err != nil || ct == "" {
		return "application/octet-stream"
	}
	return ct
}

// fileName is the download's file name: the object name's last segment.
func fileName(object string) string {
	name := path.Base(strings.ReplaceAll(object, "\\", "/"))
	if name == "." || name == "/" || name == "" {
		return "document"
	}
	return name
}
