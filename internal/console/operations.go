package console

import (
	"container/heap"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// The state filter's values. Accepted covers the two phases of a call in
// flight (the first one, or a poll).
const (
	FilterAccepted  = "accepted"
	FilterWaiting   = "waiting"
	FilterCompleted = "completed"
	FilterFailed    = "failed"
)

// Filters are the state filter's values, in the order the page shows them.
var Filters = []string{FilterAccepted, FilterWaiting, FilterCompleted, FilterFailed}

func matchState(filter string, p client.Phase) bool {
	switch filter {
	case "":
		return true
	case FilterAccepted:
		return p.Claimed() // a worker is at it: a call to Azure, or the archive
	default:
		return string(p) == filter
	}
}

// listQuery is the operations list's filter and page.
type listQuery struct {
	State string
	Kind  messages.Kind
	ID    string // a part of the id
	// Before is the page's cursor: operations accepted before At (or at
	// At, with a smaller id).
	Before *cursor
}

// cursor orders operations newest first: by acceptance, then by id.
type cursor struct {
	At time.Time
	ID string
}

func (c cursor) String() string { return c.At.UTC().Format(time.RFC3339Nano) + "~" + c.ID }

func parseCursor(s string) (*cursor, error) {
	at, id, ok := strings.Cut(s, "~")
	t, err := time.Parse(time.RFC3339Nano, at)
	if !ok || err != nil {
		return nil, errors.New("not a page cursor")
	}
	return &cursor{At: t, ID: id}, nil
}

// newer reports whether a comes before b, newest first.
func (a cursor) newer(b cursor) bool {
	if !a.At.Equal(b.At) {
		return a.At.After(b.At)
	}
	return a.ID > b.ID
}

// row is one operation in the list.
type row struct {
	ID         string
	Kind       messages.Kind
	Phase      client.Phase
	AcceptedAt time.Time
	UpdatedAt  time.Time
	NextAt     time.Time
	AzureCalls int
	Code       messages.Code // a failure's code
	// Progress is a collection's: documents listed, children ended.
	Progress *client.Progress
}

func rowOf(st client.Operation) row {
	r := row{ID: st.Request.ID, Kind: st.Request.Kind, Phase: st.Phase, AcceptedAt: st.AcceptedAt,
		UpdatedAt: st.UpdatedAt, NextAt: st.NextAt, AzureCalls: st.AzureCalls}
	if st.Failed != nil {
		r.Code = st.Failed.Code
	}
	if st.Request.Kind == messages.KindCollection {
		p := st.Progress()
		r.Progress = &p
	}
	return r
}

func (r row) cursor() cursor { return cursor{At: r.AcceptedAt, ID: r.ID} }

// oldestFirst is a heap whose root is the oldest row kept: the one a newer
// row replaces once the page is full.
type oldestFirst []row

func (h oldestFirst) Len() int           { return len(h) }
func (h oldestFirst) Less(i, j int) bool { return h[j].cursor().newer(h[i].cursor()) }
func (h oldestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *oldestFirst) Push(x any)        { *h = append(*h, x.(row)) }
func (h *oldestFirst) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// operationsPage is what the operations list shows.
type operationsPage struct {
	Query   listQuery
	Rows    []row
	Matched int // operations that match the filter, on every page
	Total   int // operations stored
	Skipped int
	// Next is the next page's link; empty on the last page.
	Next    string
	Kinds   []messages.Kind
	Filters []string
	Elapsed time.Duration
}

// listOperations reads the bucket once, keeping the newest size matching
// rows past the cursor (plus one, to know whether a next page exists):
// memory is bounded by the page, not by the bucket.
func (s *Server) listOperations(r *http.Request, q listQuery, size int) (*operationsPage, error) {
	start := time.Now()
	p := &operationsPage{Query: q, Kinds: messages.Kinds, Filters: Filters}
	h := make(oldestFirst, 0, size+1)
	skipped, err := s.o.Client.ScanStates(r.Context(), func(st client.Operation) error {
		p.Total++
		if !matchState(q.State, st.Phase) || q.Kind != "" && st.Request.Kind != q.Kind ||
			q.ID != "" && !strings.Contains(st.Request.ID, q.ID) {
			return nil
		}
		p.Matched++
		c := cursor{At: st.AcceptedAt, ID: st.Request.ID}
		if q.Before != nil && !q.Before.newer(c) {
			return nil
		}
		if len(h) <= size {
			heap.Push(&h, rowOf(st))
		} else if c.newer(h[0].cursor()) {
			h[0] = rowOf(st)
			heap.Fix(&h, 0)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.Skipped = skipped
	rows := []row(h)
	slices.SortFunc(rows, func(a, b row) int {
		if a.cursor().newer(b.cursor()) {
			return -1
		}
		return 1
	})
	if len(rows) > size {
		rows = rows[:size]
		v := url.Values{}
		if q.State != "" {
			v.Set("state", q.State)
		}
		if q.Kind != "" {
			v.Set("kind", string(q.Kind))
		}
		if q.ID != "" {
			v.Set("id", q.ID)
		}
		v.Set("before", rows[len(rows)-1].cursor().String())
		p.Next = "/operations?" + v.Encode()
	}
	p.Rows = rows
	p.Elapsed = time.Since(start)
	return p, nil
}

func (s *Server) handleOperations(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := listQuery{State: v.Get("state"), Kind: messages.Kind(v.Get("kind")), ID: strings.TrimSpace(v.Get("id"))}
	if q.State != "" && !slices.Contains(Filters, q.State) {
		s.refuse(w, r, http.StatusBadRequest, "Unknown state filter.")
		return
	}
	if q.Kind != "" && !q.Kind.Valid() {
		s.refuse(w, r, http.StatusBadRequest, "Unknown kind.")
		return
	}
	p, ok := s.listPage(w, r, q)
	if !ok {
		return
	}
	s.render(w, r, http.StatusOK, "operations", s.page(r, "Operations", p))
}

// listPage lists the page of q that the request's "before" cursor names;
// on an error it answers the request itself and returns false.
func (s *Server) listPage(w http.ResponseWriter, r *http.Request, q listQuery) (*operationsPage, bool) {
	if b := r.URL.Query().Get("before"); b != "" {
		c, err := parseCursor(b)
		if err != nil {
			s.refuse(w, r, http.StatusBadRequest, "That page link is not valid.")
			return nil, false
		}
		q.Before = c
	}
	p, err := s.listOperations(r, q, s.o.PageSize)
	if err != nil {
		s.refuse(w, r, http.StatusBadGateway, "Reading the stored operations failed: "+redact.String(err.Error()))
		return nil, false
	}
	return p, true
}

// detail is what an operation's page shows.
type detail struct {
	St      client.Operation
	TraceID string
	// TraceLink is the trace id's link to the tracing backend (Options.TraceURL).
	TraceLink string
	// DeadLetter is the number of the failed request's dead letter, when
	// one is kept (0: none).
	DeadLetter uint64
	// Rejected is true for a request refused before an operation began:
	// St is made from its failure event.
	Rejected bool
	// Download is true when the document can be downloaded from the
	// console (archived, and downloads on).
	Download bool
	// Link is the completed operation's link: the whole URL, or with its
	// sig hidden (Options.HideSig).
	Link      string
	LinkShown bool // the link is shown whole
	// Event is the outcome event as published, when the events stream
	// still has it.
	Event *client.Outcome
	// Calls is the history, with the first call marked.
	Calls []client.Call
	// Labels, sorted.
	Labels [][2]string
}

func (s *Server) readDetail(r *http.Request) (*detail, int, string) {
	id := r.PathValue("id")
	st, err := s.o.Client.Status(r.Context(), id)
	if errors.Is(err, client.ErrNoState) || errors.Is(err, jetstream.ErrBucketNotFound) {
		// A request rejected before an operation began (invalid, an
		// unknown profile) has no state, only its failure event and its
		// dead letter.
		o, ok, lerr := s.o.Client.Last(r.Context(), id)
		if lerr != nil || !ok || o.Failed == nil {
			return nil, http.StatusNotFound, "No operation is stored under that id (never accepted, rejected as invalid, or expired)."
		}
		d := &detail{Rejected: true, Event: &o, St: client.Operation{Phase: client.PhaseFailed, Failed: o.Failed,
			Request: messages.Request{ID: id, Kind: o.Failed.Kind, Labels: o.Failed.Labels}}}
		if dl, ok, err := s.o.Client.DeadLetterOf(r.Context(), o); err == nil && ok {
			d.DeadLetter = dl.Sequence
		}
		return d, http.StatusOK, ""
	} else if err != nil {
		return nil, http.StatusBadGateway, "Reading the operation failed: " + redact.String(err.Error())
	}
	d := &detail{St: st, TraceID: traceID(st.TraceParent), Calls: st.Calls}
	if c := st.Completed; c != nil && c.URL != "" {
		d.Link, d.LinkShown = c.URL, true
		if s.o.HideSig {
			d.Link, d.LinkShown = redact.URL(c.URL), false
		}
	}
	d.TraceLink = traceLink(s.o.TraceURL, d.TraceID)
	if c := st.Completed; c != nil && c.Archive != nil && c.Archive.Error == nil && c.Archive.Name != "" {
		d.Download = !s.o.NoDownloads
	}
	if o, ok, err := s.o.Client.Last(r.Context(), id); err == nil && ok {
		d.Event = &o
		if o.Failed != nil {
			if dl, ok, err := s.o.Client.DeadLetterOf(r.Context(), o); err == nil && ok {
				d.DeadLetter = dl.Sequence
			}
		}
	}
	for k, v := range st.Request.Labels {
		d.Labels = append(d.Labels, [2]string{k, v})
	}
	slices.SortFunc(d.Labels, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return d, http.StatusOK, ""
}

func (s *Server) handleOperation(w http.ResponseWriter, r *http.Request) {
	if !messages.ValidID(r.PathValue("id")) {
		s.refuse(w, r, http.StatusNotFound, "That is not a request id.")
		return
	}
	d, status, msg := s.readDetail(r)
	if d == nil {
		s.refuse(w, r, status, msg)
		return
	}
	s.render(w, r, http.StatusOK, "operation", s.page(r, "Operation "+d.St.Request.ID, d))
}

func (s *Server) handleOperationLive(w http.ResponseWriter, r *http.Request) {
	if !messages.ValidID(r.PathValue("id")) {
		http.NotFound(w, r)
		return
	}
	d, status, msg := s.readDetail(r)
	if d == nil {
		http.Error(w, msg, status)
		return
	}
	s.renderFragment(w, r, "operation", "operation-live", s.page(r, "Operation "+d.St.Request.ID, d))
}

// traceID is the trace id of a W3C traceparent ("" when there is none).
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
