package console

import (
	"errors"
	"net/http"
	"time"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
)

// coveragePage is what the Coverage page shows: the known scopes by
// months, each cell coloured by its status and linked to its collection
// and its failures.
type coveragePage struct {
	From, To string
	Grid     client.CoverageGrid
	// Missing says why there is no grid (no coverage bucket yet).
	Missing string
}

// coverageMonths is the default span of the page: the six months up to
// last month.
const coverageMonths = 6

func (s *Server) handleCoverage(w http.ResponseWriter, r *http.Request) {
	now := s.o.Now().UTC()
	last := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	p := &coveragePage{From: last.AddDate(0, 1-coverageMonths, 0).Format("2006-01"), To: last.Format("2006-01")}
	if v := r.URL.Query().Get("from"); v != "" {
		p.From = v
	}
	if v := r.URL.Query().Get("to"); v != "" {
		p.To = v
	}
	if _, err := coverage.ParseRange(p.From, p.To); err != nil {
		s.refuse(w, r, http.StatusBadRequest, "The months are not readable: "+err.Error())
		return
	}
	g, err := s.o.Client.Coverage(r.Context(), p.From, p.To)
	switch {
	case errors.Is(err, client.ErrNoCoverage):
		p.Missing = redact.String(err.Error())
	case err != nil:
		s.refuse(w, r, http.StatusBadGateway, "Reading the coverage failed: "+redact.String(err.Error()))
		return
	}
	p.Grid = g
	s.render(w, r, http.StatusOK, "coverage", s.page(r, "Coverage", p))
}
