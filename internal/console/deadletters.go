package console

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
)

// previewBytes is how much of a payload the dead-letter list shows.
const previewBytes = 160

// letter is a dead letter as the console shows it: the payload as text,
// with credentials masked (a request carries none; a rejected message may
// carry anything).
type letter struct {
	client.DeadLetter
	Text    string
	Preview string
	Binary  bool
	Headers [][2]string
}

func letterOf(dl client.DeadLetter) letter {
	l := letter{DeadLetter: dl, Binary: !utf8.Valid(dl.Data)}
	l.Text = redact.String(strings.ToValidUTF8(string(dl.Data), "\uFFFD"))
	l.Preview = l.Text
	if len(l.Preview) > previewBytes {
		l.Preview = strings.ToValidUTF8(l.Preview[:previewBytes], "") + "…"
	}
	for k, vs := range dl.Header {
		for _, v := range vs {
			l.Headers = append(l.Headers, [2]string{k, redact.String(v)})
		}
	}
	slices.SortFunc(l.Headers, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return l
}

// lettersPage is what the dead-letter list shows.
type lettersPage struct {
	Letters []letter
	Count   uint64
	Next    string
}

func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	var from uint64
	if f := r.URL.Query().Get("from"); f != "" {
		var err error
		if from, err = strconv.ParseUint(f, 10, 64); err != nil {
			s.refuse(w, r, http.StatusBadRequest, "That page link is not valid.")
			return
		}
	}
	ctx := r.Context()
	n, err := s.o.Client.DeadLetterCount(ctx)
	if err != nil {
		s.refuse(w, r, http.StatusBadGateway, "Reading the dead letters failed: "+redact.String(err.Error()))
		return
	}
	p := &lettersPage{Count: n}
	if n > 0 {
		dls, err := s.o.Client.DeadLetters(ctx, from, s.o.PageSize+1)
		if err != nil {
			s.refuse(w, r, http.StatusBadGateway, "Reading the dead letters failed: "+redact.String(err.Error()))
			return
		}
		if len(dls) > s.o.PageSize {
			p.Next = "/deadletters?from=" + strconv.FormatUint(dls[s.o.PageSize].Sequence, 10)
			dls = dls[:s.o.PageSize]
		}
		for _, dl := range dls {
			p.Letters = append(p.Letters, letterOf(dl))
		}
	}
	s.render(w, r, http.StatusOK, "deadletters", s.page(r, "Dead letters", p))
}

// readLetter reads the dead letter the path names, or answers with an
// error page.
func (s *Server) readLetter(w http.ResponseWriter, r *http.Request) (letter, bool) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		s.refuse(w, r, http.StatusNotFound, "That is not a dead letter's number.")
		return letter{}, false
	}
	dl, err := s.o.Client.DeadLetter(r.Context(), seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		s.refuse(w, r, http.StatusNotFound, "No dead letter is kept under that number (deleted, or made room for newer ones).")
		return letter{}, false
	} else if err != nil {
		s.refuse(w, r, http.StatusBadGateway, "Reading the dead letter failed: "+redact.String(err.Error()))
		return letter{}, false
	}
	return letterOf(dl), true
}

func (s *Server) handleDeadLetter(w http.ResponseWriter, r *http.Request) {
	l, ok := s.readLetter(w, r)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "deadletter", s.page(r, "Dead letter "+strconv.FormatUint(l.Sequence, 10), &confirm{Letter: l}))
}

// confirm is a dead letter's page, or the confirmation of an action on it.
type confirm struct {
	Letter letter
	// Action is "replay" or "delete" when asking for confirmation.
	Action string
	// Edited is the payload to replay instead of the stored one (a
	// replay as edited); Changed is true when it differs.
	Edited  string
	Changed bool
	// Done says what was done.
	Done string
}

func (s *Server) handleReplay(w http.ResponseWriter, r *http.Request) {
	l, ok := s.readLetter(w, r)
	if !ok {
		return
	}
	c := &confirm{Letter: l, Action: "replay"}
	var data []byte // nil: as it is
	if r.PostFormValue("mode") == "edited" {
		c.Edited = strings.ReplaceAll(r.PostFormValue("payload"), "\r\n", "\n")
		c.Changed = c.Edited != l.Text
		data = []byte(c.Edited)
	}
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, http.StatusOK, "confirm", s.page(r, "Replay dead letter "+strconv.FormatUint(l.Sequence, 10)+"?", c))
		return
	}
	if err := s.o.Client.Replay(r.Context(), l.Sequence, data); err != nil {
		s.refuse(w, r, http.StatusBadGateway, "The replay failed: "+redact.String(err.Error()))
		return
	}
	how := "as it was"
	if data != nil {
		how = "edited"
	}
	s.o.Logger.InfoContext(r.Context(), "console: dead letter replayed", "seq", l.Sequence, "how", how, "by", s.writer(r))
	c.Action, c.Done = "", "Replayed "+how+" on "+l.OriginalSubject+". The dead letter is kept until you delete it."
	s.render(w, r, http.StatusOK, "deadletter", s.page(r, "Dead letter "+strconv.FormatUint(l.Sequence, 10), c))
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	l, ok := s.readLetter(w, r)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, http.StatusOK, "confirm", s.page(r, "Delete dead letter "+strconv.FormatUint(l.Sequence, 10)+"?",
			&confirm{Letter: l, Action: "delete"}))
		return
	}
	if err := s.o.Client.DeleteDeadLetter(r.Context(), l.Sequence); err != nil {
		s.refuse(w, r, http.StatusBadGateway, "The delete failed: "+redact.String(err.Error()))
		return
	}
	s.o.Logger.InfoContext(r.Context(), "console: dead letter deleted", "seq", l.Sequence, "by", s.writer(r))
	http.Redirect(w, r, "/deadletters?deleted="+strconv.FormatUint(l.Sequence, 10), http.StatusSeeOther)
}
