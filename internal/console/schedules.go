package console

import (
	"errors"
	"net/http"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// schedulesPage is what the Schedules page shows: every recurring
// schedule, or why there are none.
type schedulesPage struct {
	Rows []scheduleRow
	// Unsupported says why the server holds no schedules (an older
	// nats-server, a stream without message schedules).
	Unsupported string
}

// scheduleRow is one schedule with its latest periods.
type scheduleRow struct {
	ID, Cron, Zone, Period string
	Kind                   messages.Kind
	Paused                 bool
	// Next and NextUTC are the next fire in the schedule's zone and in
	// UTC (zero when paused or never).
	Next, NextUTC time.Time
	Periods       []periodRow
}

// periodRow is a period a schedule covered, linked to its request's page.
type periodRow struct {
	Key, RequestID, Link, How string
	Started                   time.Time
	// Outcome is completed, failed, running or unknown (state gone);
	// Phase and Code the stored ones.
	Outcome string
	Phase   client.Phase
	Code    messages.Code
}

// shownPeriods bounds the periods listed per schedule.
const shownPeriods = 12

func (s *Server) handleSchedules(w http.ResponseWriter, r *http.Request) {
	vs, err := s.o.Client.Schedules(r.Context())
	p := &schedulesPage{}
	switch {
	case errors.Is(err, client.ErrSchedulesUnsupported):
		p.Unsupported = redact.String(err.Error())
	case err != nil:
		s.refuse(w, r, http.StatusBadGateway, "Reading the schedules failed: "+redact.String(err.Error()))
		return
	}
	for _, v := range vs {
		row := scheduleRow{ID: v.Schedule.ID, Cron: v.Schedule.Cron, Zone: v.Schedule.TimeZone, Period: v.Schedule.Period,
			Kind: v.Schedule.Request.Kind, Paused: v.Paused, Next: v.Next, NextUTC: v.NextUTC}
		if row.Zone == "" {
			row.Zone = "UTC"
		}
		for _, pv := range v.Periods[:min(shownPeriods, len(v.Periods))] {
			row.Periods = append(row.Periods, periodRow{Key: pv.Key, RequestID: pv.RequestID, Link: requestLink(row.Kind, pv.RequestID),
				How: pv.How, Started: pv.Started, Outcome: outcome(pv.Phase), Phase: pv.Phase, Code: pv.Code})
		}
		p.Rows = append(p.Rows, row)
	}
	s.render(w, r, http.StatusOK, "schedules", s.page(r, "Schedules", p))
}

// requestLink is the console's page of a schedule's request: a
// collection's own page, else the operation's.
func requestLink(kind messages.Kind, id string) string {
	if kind == messages.KindCollection {
		return "/collections/" + id
	}
	return "/operations/" + id
}

// outcome sums a period's phase up: completed, failed, running, or
// unknown when no state is stored (not taken yet, or past state-ttl).
func outcome(p client.Phase) string {
	switch p {
	case "":
		return "unknown"
	case client.PhaseCompleted:
		return "completed"
	case client.PhaseFailed, client.PhaseInvalid:
		return "failed"
	}
	return "running"
}

// zoneTime formats t in its own zone, with the zone's abbreviation.
func zoneTime(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") }
