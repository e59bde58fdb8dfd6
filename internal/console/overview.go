package console

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// Minutes is how many recent minutes the overview counts requests over.
const Minutes = 15

// overviewTimeout bounds one reading of the bucket and the streams.
const overviewTimeout = 30 * time.Second

// overview is one reading of the worker's state, for the overview page.
type overview struct {
	At time.Time
	// Phases counts the stored operations by phase; Total all of them;
	// Skipped those that did not decode.
	Phases  map[client.Phase]int
	Total   int
	Skipped int
	// Minutes are the last Minutes minutes, newest first; Recent sums them.
	Minutes []minute
	Recent  minute
	// NextWake is the waiting operation due first; Oldest the one waiting
	// since the longest time.
	NextWake, Oldest *waiter
	// Throttled counts the waiting operations whose last answer was a 429
	// or a 503 (Azure throttling them), and ThrottledUntil is when the
	// last of them calls again.
	Throttled      int
	ThrottledUntil time.Time
	// Overdue counts the waiting operations whose wake-up is more than
	// client.DefaultOverdueAfter past its time (one the NATS server did
	// not fire); MostOverdue is the one due first.
	Overdue     int
	MostOverdue *waiter
	// Consumers and Streams are the work stream's backlog and the
	// streams' sizes.
	Consumers []client.ConsumerStat
	Streams   []client.StreamStat
	// DeadLetters is how many the dead-letter stream keeps.
	DeadLetters uint64
	// Collections counts the collections running, and Docs their
	// documents listed and ended so far.
	Collections     int
	Docs, DocsEnded int
	// Scopes are the shared throttle's scopes (none when it is off), and
	// Paused how many of them Azure has paused now.
	Scopes []client.ThrottleScope
	Paused int
	// Err is what could not be read (the page shows the rest).
	Err string
}

// minute counts what happened in one minute. Received counts the
// operations accepted and the requests rejected (dead letters, which get
// a failure event too, so they count in Failed as well as in Rejected).
type minute struct {
	Start                                 time.Time
	Received, Completed, Failed, Rejected int
	// Max is the busiest minute's count, the scale of the bars.
	Max int
}

// waiter is a waiting operation.
type waiter struct {
	ID     string
	Kind   messages.Kind
	NextAt time.Time
	Since  time.Time
	Source string
}

// readOverview reads the bucket once (bounded memory: counts, not
// states) and the streams.
func (s *Server) readOverview(ctx context.Context) *overview {
	now := s.o.Now()
	ov := &overview{At: now, Phases: map[client.Phase]int{}, Minutes: make([]minute, Minutes)}
	top := now.Truncate(time.Minute)
	for i := range ov.Minutes {
		ov.Minutes[i].Start = top.Add(-time.Duration(i) * time.Minute)
	}
	slot := func(t time.Time) *minute {
		if t.IsZero() || t.After(now) {
			return nil
		}
		i := int(top.Sub(t.Truncate(time.Minute)) / time.Minute)
		if i < 0 || i >= Minutes {
			return nil
		}
		return &ov.Minutes[i]
	}
	skipped, err := s.o.Client.ScanStates(ctx, func(st client.Operation) error {
		ov.Total++
		ov.Phases[st.Phase]++
		if m := slot(st.AcceptedAt); m != nil {
			m.Received++
		}
		if st.Completed != nil {
			if m := slot(st.Completed.CompletedAt); m != nil {
				m.Completed++
			}
		}
		if st.Failed != nil {
			if m := slot(st.Failed.FailedAt); m != nil {
				m.Failed++
			}
		}
		if st.Request.Kind == messages.KindCollection && !st.Phase.Terminal() {
			p := st.Progress()
			ov.Collections++
			ov.Docs += p.Documents
			ov.DocsEnded += p.Completed + p.Failed
		}
		if st.Phase == client.PhaseWaiting && (st.LastStatus == http.StatusTooManyRequests || st.LastStatus == http.StatusServiceUnavailable) {
			ov.Throttled++
			if st.NextAt.After(ov.ThrottledUntil) {
				ov.ThrottledUntil = st.NextAt
			}
		}
		if st.Phase == client.PhaseWaiting {
			w := &waiter{ID: st.Request.ID, Kind: st.Request.Kind, NextAt: st.NextAt, Since: st.AcceptedAt, Source: st.LastWaitSource}
			if ov.NextWake == nil || st.NextAt.Before(ov.NextWake.NextAt) {
				ov.NextWake = w
			}
			if ov.Oldest == nil || st.AcceptedAt.Before(ov.Oldest.Since) {
				ov.Oldest = w
			}
			if st.Overdue(ov.At, 0) {
				ov.Overdue++
				if ov.MostOverdue == nil || st.NextAt.Before(ov.MostOverdue.NextAt) {
					ov.MostOverdue = w
				}
			}
		}
		return nil
	})
	ov.Skipped = skipped
	if err != nil {
		ov.Err = "reading the state bucket: " + redact.String(err.Error())
	}
	err = s.o.Client.DeadLettersSince(ctx, ov.Minutes[Minutes-1].Start, func(at time.Time) error {
		if m := slot(at); m != nil {
			m.Rejected++
			m.Received++
			m.Failed++
		}
		return nil
	})
	if err != nil && ov.Err == "" {
		ov.Err = "reading the dead letters: " + redact.String(err.Error())
	}
	most := 1
	for _, m := range ov.Minutes {
		most = max(most, m.Received, m.Completed, m.Failed)
		ov.Recent.Received += m.Received
		ov.Recent.Completed += m.Completed
		ov.Recent.Failed += m.Failed
		ov.Recent.Rejected += m.Rejected
	}
	for i := range ov.Minutes {
		ov.Minutes[i].Max = most
	}
	consumers, streams, err := s.o.Client.Backlog(ctx)
	if err != nil && ov.Err == "" {
		ov.Err = "reading the streams: " + redact.String(err.Error())
	}
	sort.Slice(consumers, func(i, j int) bool { return consumers[i].Name < consumers[j].Name })
	ov.Consumers, ov.Streams = consumers, streams
	for _, st := range streams {
		if st.Name == s.o.Client.Layout().DeadLetterStream() {
			ov.DeadLetters = st.Messages
		}
	}
	scopes, err := s.o.Client.Throttle(ctx)
	if err != nil && ov.Err == "" {
		ov.Err = "reading the throttle: " + redact.String(err.Error())
	}
	ov.Scopes = scopes
	for i := range scopes {
		if scopes[i].Paused(now) {
			ov.Paused++
		}
	}
	return ov
}

// currentOverview returns a reading no older than OverviewCache, so that
// many viewers refreshing read the bucket once.
func (s *Server) currentOverview(ctx context.Context) *overview {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overview == nil || s.o.Now().Sub(s.overview.At) >= s.o.OverviewCache {
		// Shared by every viewer: not cut short when this one goes away.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overviewTimeout)
		defer cancel()
		s.overview = s.readOverview(rctx)
	}
	return s.overview
}

// The phases, in the order the overview shows them.
var phases = []client.Phase{client.PhaseStarting, client.PhasePolling, client.PhaseWaiting,
	client.PhaseArchiving, client.PhaseCompleted, client.PhaseFailed}

func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "overview", s.page(r, "Overview", s.currentOverview(r.Context())))
}

func (s *Server) handleOverviewLive(w http.ResponseWriter, r *http.Request) {
	s.renderFragment(w, r, "overview", "overview-live", s.page(r, "Overview", s.currentOverview(r.Context())))
}
