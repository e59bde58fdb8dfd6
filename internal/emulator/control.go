package emulator

import (
	"encoding/json"
	"net/http"
)

// controlPrefix is where the control API lives.
const controlPrefix = "/_emulator/"

// controlRoutes registers the control API (see the package documentation): the Go API over
// HTTP, without auth, for other processes.
func (s *Server) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT "+controlPrefix+"scripts/{invoiceName}", func(w http.ResponseWriter, r *http.Request) {
		if replies, ok := decodeReplies(w, r); ok {
			s.Script(r.PathValue("invoiceName"), replies...)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("PUT "+controlPrefix+"default", func(w http.ResponseWriter, r *http.Request) {
		if replies, ok := decodeReplies(w, r); ok {
			s.SetDefault(replies...)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET "+controlPrefix+"calls", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Has("invoiceName") {
			writeJSON(w, http.StatusOK, s.CallsFor(q.Get("invoiceName")))
			return
		}
		writeJSON(w, http.StatusOK, s.Calls())
	})
	mux.HandleFunc("PUT "+controlPrefix+"listing", func(w http.ResponseWriter, r *http.Request) {
		var body listingSettings
		if decodeBody(w, r, &body) {
			s.SetListing(body.PageSize, body.InvoicesPerMonth)
			s.SetUnnamedDocuments(body.Unnamed)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET "+controlPrefix+"token-requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.TokenRequests())
	})
	mux.HandleFunc("POST "+controlPrefix+"reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT "+controlPrefix+"token-failure", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Mode TokenFailure `json:"mode"`
		}
		if decodeBody(w, r, &body) {
			s.SetTokenFailure(body.Mode)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("PUT "+controlPrefix+"budget", func(w http.ResponseWriter, r *http.Request) {
		var b Budget
		if decodeBody(w, r, &b) {
			s.SetBudget(b)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET "+controlPrefix+"budget", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.BudgetStats())
	})
	mux.HandleFunc("GET "+controlPrefix+"token", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		tenant, audience := q.Get("tenant"), q.Get("audience")
		if tenant == "" {
			tenant = "emulator"
		}
		if audience == "" {
			audience = s.opts.Audience
		}
		n := s.expiresIn()
		writeJSON(w, http.StatusOK, tokenResponse{TokenType: "Bearer", ExpiresIn: n, ExtExpiresIn: n, AccessToken: s.IssueToken(tenant, audience)})
	})
}

// decodeReplies reads a script; it answers 400 itself when the body is not one.
func decodeReplies(w http.ResponseWriter, r *http.Request) ([]Reply, bool) {
	var replies []Reply
	if !decodeBody(w, r, &replies) {
		return nil, false
	}
	for _, rep := range replies {
		if err := rep.validate(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil, false
		}
	}
	return replies, true
}

// decodeBody reads a JSON body strictly (unknown fields are typos in a script); it answers 400
// itself on failure.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, "emulator: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}
