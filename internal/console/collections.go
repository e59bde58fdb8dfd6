package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// allChildrenUpTo is the largest collection whose page reads every
// child's state by default (one read each); a larger one shows the
// children in flight unless asked for all.
const allChildrenUpTo = 500

func (s *Server) handleCollections(w http.ResponseWriter, r *http.Request) {
	q := listQuery{Kind: messages.KindCollection, ID: strings.TrimSpace(r.URL.Query().Get("id"))}
	p, ok := s.listPage(w, r, q)
	if !ok {
		return
	}
	p.Next = strings.Replace(p.Next, "/operations?", "/collections?", 1)
	s.render(w, r, http.StatusOK, "collections", s.page(r, "Collections", p))
}

// collectionPage is what a collection's page shows.
type collectionPage struct {
	View client.CollectionView
	// All is true when every child was read; Partial when only those in
	// flight were (a large collection), with AllLink to read them all.
	All     bool
	AllLink string
	Pct     int // children ended, in percent of the documents listed
}

func (s *Server) handleCollection(w http.ResponseWriter, r *http.Request) {
	s.collection(w, r, false)
}

func (s *Server) handleCollectionLive(w http.ResponseWriter, r *http.Request) {
	s.collection(w, r, true)
}

// collection renders a collection's page, or its live part.
func (s *Server) collection(w http.ResponseWriter, r *http.Request, live bool) {
	id := r.PathValue("id")
	if !messages.ValidID(id) {
		s.refuse(w, r, http.StatusNotFound, "That is not a request id.")
		return
	}
	st, err := s.o.Client.Status(r.Context(), id)
	if errors.Is(err, client.ErrNoState) || errors.Is(err, jetstream.ErrBucketNotFound) {
		s.refuse(w, r, http.StatusNotFound, "No operation is stored under that id.")
		return
	} else if err != nil {
		s.refuse(w, r, http.StatusBadGateway, "Reading the collection failed: "+redact.String(err.Error()))
		return
	}
	if st.Request.Kind != messages.KindCollection {
		http.Redirect(w, r, "/operations/"+id, http.StatusSeeOther)
		return
	}
	all := r.URL.Query().Get("all") == "1" || st.Progress().Documents <= allChildrenUpTo
	v, err := s.o.Client.Collection(r.Context(), id, all)
	if err != nil {
		s.refuse(w, r, http.StatusBadGateway, "Reading the collection's children failed: "+redact.String(err.Error()))
		return
	}
	p := &collectionPage{View: v, All: all}
	if !all {
		p.AllLink = "/collections/" + id + "?all=1"
	}
	if d := v.Progress.Documents; d > 0 {
		p.Pct = 100 * (v.Progress.Completed + v.Progress.Failed) / d
	}
	if live {
		s.renderFragment(w, r, "collection", "collection-live", s.page(r, "Collection "+id, p))
		return
	}
	s.render(w, r, http.StatusOK, "collection", s.page(r, "Collection "+id, p))
}
