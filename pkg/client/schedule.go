package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/pkg/messages"
)

// ErrSchedulesUnsupported is matched by the error of every schedule call
// on a server or stream that cannot hold repeating schedules.
var ErrSchedulesUnsupported = errors.New("recurring schedules are not available")

// ErrNoSchedule is matched when the schedule named does not exist.
var ErrNoSchedule = errors.New("no such schedule")

// ScheduleView is a schedule as stored, with when it fires next and how
// its latest periods ended.
type ScheduleView struct {
	// Schedule is the definition.
	Schedule messages.Schedule `json:"schedule"`
	Paused   bool              `json:"paused,omitempty"`
	// Created and Updated are when the definition was written first and
	// last; the schedule covers the fires after Created.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// LastFire is the latest fire covered (its time as the cron says; for
	// @every, when it arrived).
	LastFire time.Time `json:"lastFire,omitzero"`
	// Next is the next fire (zero when paused, or never), in the
	// schedule's zone; NextUTC the same in UTC.
	Next    time.Time
	NextUTC time.Time
	// Periods are the latest periods covered, newest first, with their
	// operations' state (Phase empty when the state is gone or not
	// stored yet).
	Periods []PeriodView
}

// PeriodView is one period a schedule covered.
type PeriodView struct {
	// Key names the period in request ids: 2026-10 for a month,
	// 2026-10-05 for a day, 2026-10-01_2026-10-15 for other ranges, the
	// fire's time in UTC (20261110T050000Z) for a schedule without a
	// period. From and To are its first and last day (YYYY-MM-DD), empty
	// without a period.
	Key  string `json:"key"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// RequestID is the request started for it, at Started; How says what
	// started it: fire, catch-up, run or backfill.
	RequestID string    `json:"requestId"`
	Started   time.Time `json:"started"`
	How       string    `json:"how"`
	Phase     Phase
	// Code is the failure code of a failed period.
	Code messages.Code
}

// schedules returns the schedules bucket, after checking that the server
// and the work stream can hold repeating schedules.
func (c *Client) schedules(ctx context.Context) (jetstream.KeyValue, error) {
	if v := c.js.Conn().ConnectedServerVersion(); !schedule.ServerSupports(v) {
		return nil, fmt.Errorf("%w: nats-server %s fires only one-shot schedules; repeating ones need 2.14 or newer", ErrSchedulesUnsupported, v)
	}
	info, err := c.js.Stream(ctx, c.l.WorkStream())
	if err != nil {
		return nil, fmt.Errorf("schedules: stream %s: %w", c.l.WorkStream(), err)
	}
	if !info.CachedInfo().Config.AllowMsgSchedules {
		return nil, fmt.Errorf("%w: stream %s does not allow message schedules (AllowMsgSchedules)", ErrSchedulesUnsupported, c.l.WorkStream())
	}
	kv, err := c.js.KeyValue(ctx, c.l.ScheduleBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w: bucket %s does not exist; a worker creates it when it starts on a server that supports schedules", ErrSchedulesUnsupported, c.l.ScheduleBucket())
	}
	return kv, err
}

func readRecord(ctx context.Context, kv jetstream.KeyValue, id string) (schedule.Record, uint64, error) {
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schedule.Record{}, 0, fmt.Errorf("%w: %q", ErrNoSchedule, id)
	}
	if err != nil {
		return schedule.Record{}, 0, fmt.Errorf("read schedule %s: %w", id, err)
	}
	var r schedule.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return schedule.Record{}, 0, fmt.Errorf("schedule %s is unreadable: %w", id, err)
	}
	return r, e.Revision(), nil
}

// update changes schedule id's record with fn under a compare-and-set,
// again from what is stored when another writer came first.
func update(ctx context.Context, kv jetstream.KeyValue, id string, fn func(*schedule.Record) error) (schedule.Record, error) {
	for range 10 {
		r, rev, err := readRecord(ctx, kv, id)
		if err != nil {
			return r, err
		}
		if err := fn(&r); err != nil {
			return r, err
		}
		data, _ := json.Marshal(r)
		_, err = kv.Update(ctx, id, data, rev)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return r, fmt.Errorf("store schedule %s: %w", id, err)
		}
	}
	return schedule.Record{}, fmt.Errorf("schedule %s kept changing", id)
}

// PutSchedule creates schedule s, or replaces the one with its id (its
// record of covered periods is kept; a paused one stays paused). Either
// way the schedule covers the fires from now on: a replaced one does not
// start the fires its new expression would have made before. Every
// replica sees the change at once: the server holds the schedule.
func (c *Client) PutSchedule(ctx context.Context, s messages.Schedule) (created bool, err error) {
	comp, err := schedule.Compile(s)
	if err != nil {
		return false, err
	}
	kv, err := c.schedules(ctx)
	if err != nil {
		return false, err
	}
	now := time.Now().UTC()
	rec := schedule.Record{Schedule: s, Created: now, Updated: now, LastFire: now}
	data, _ := json.Marshal(rec)
	if _, err = kv.Create(ctx, s.ID, data); err == nil {
		return true, c.arm(ctx, comp)
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("store schedule %s: %w", s.ID, err)
	}
	rec, err = update(ctx, kv, s.ID, func(r *schedule.Record) error {
		r.Schedule, r.Updated = s, now
		r.LastFire = latest(r.LastFire, now)
		return nil
	})
	if err != nil || rec.Paused {
		return false, err
	}
	return false, c.arm(ctx, comp)
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// arm publishes the schedule's repeating scheduled message; a new one on
// the same subject replaces the old.
func (c *Client) arm(ctx context.Context, s schedule.Compiled) error {
	m := nats.NewMsg(c.l.ScheduleSubject(s.ID))
	m.Data, _ = json.Marshal(s.Schedule)
	m.Header.Set(messages.HeaderSchedule, s.Cron.String())
	m.Header.Set(messages.HeaderScheduleTarget, c.l.ScheduleFire(s.ID))
	if s.TimeZone != "" {
		m.Header.Set(messages.HeaderScheduleTimeZone, s.TimeZone)
	}
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("schedule %s: the server refused the repeating schedule: %w", s.ID, err)
	}
	return nil
}

// disarm stops the server firing schedule id: its repeating message is
// replaced by a one-shot one due now, which fires once (a stop the
// worker ignores) and is then removed by the server. Only a publish on
// the schedule's subject is needed, no stream administration.
func (c *Client) disarm(ctx context.Context, id string) error {
	m := nats.NewMsg(c.l.ScheduleSubject(id))
	m.Header.Set(messages.HeaderSchedule, "@at "+time.Now().UTC().Format(time.RFC3339))
	m.Header.Set(messages.HeaderScheduleTarget, c.l.ScheduleFire(id))
	m.Header.Set(messages.HeaderScheduleAction, messages.ScheduleActionStop)
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("stop schedule %s: %w", id, err)
	}
	return nil
}

// PauseSchedule stops schedule id firing until ResumeSchedule; fires
// already on their way start nothing.
func (c *Client) PauseSchedule(ctx context.Context, id string) error {
	kv, err := c.schedules(ctx)
	if err != nil {
		return err
	}
	if _, err := update(ctx, kv, id, func(r *schedule.Record) error {
		r.Paused, r.Updated = true, time.Now().UTC()
		return nil
	}); err != nil {
		return err
	}
	return c.disarm(ctx, id)
}

// ResumeSchedule makes a paused schedule fire again. The fires it missed
// while paused are not caught up (BackfillSchedule starts their periods).
func (c *Client) ResumeSchedule(ctx context.Context, id string) error {
	kv, err := c.schedules(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	rec, err := update(ctx, kv, id, func(r *schedule.Record) error {
		r.Paused, r.Updated = false, now
		r.LastFire = latest(r.LastFire, now)
		return nil
	})
	if err != nil {
		return err
	}
	comp, err := schedule.Compile(rec.Schedule)
	if err != nil {
		return err
	}
	return c.arm(ctx, comp)
}

// DeleteSchedule stops schedule id and forgets it; the requests it made
// are left as they are.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	kv, err := c.schedules(ctx)
	if err != nil {
		return err
	}
	if _, _, err := readRecord(ctx, kv, id); err != nil {
		return err
	}
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("delete schedule %s: %w", id, err)
	}
	return c.disarm(ctx, id)
}

// GetSchedule returns schedule id with its next fire and latest periods.
func (c *Client) GetSchedule(ctx context.Context, id string) (ScheduleView, error) {
	kv, err := c.schedules(ctx)
	if err != nil {
		return ScheduleView{}, err
	}
	rec, _, err := readRecord(ctx, kv, id)
	if err != nil {
		return ScheduleView{}, err
	}
	return c.view(ctx, rec, time.Now()), nil
}

// Schedules returns every schedule, by id.
func (c *Client) Schedules(ctx context.Context) ([]ScheduleView, error) {
	kv, err := c.schedules(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var ids []string
	for k := range keys.Keys() {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	var out []ScheduleView
	now := time.Now()
	for _, id := range ids {
		rec, _, err := readRecord(ctx, kv, id)
		if errors.Is(err, ErrNoSchedule) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c.view(ctx, rec, now))
	}
	return out, nil
}

func (c *Client) view(ctx context.Context, rec schedule.Record, now time.Time) ScheduleView {
	v := ScheduleView{Schedule: rec.Schedule, Paused: rec.Paused, Created: rec.Created, Updated: rec.Updated, LastFire: rec.LastFire}
	if comp, err := schedule.Compile(rec.Schedule); err == nil && !rec.Paused {
		if n := comp.Cron.Next(now, comp.Location); !n.IsZero() {
			v.Next, v.NextUTC = n.In(comp.Location), n.UTC()
		}
	}
	for i := len(rec.Covered) - 1; i >= 0; i-- {
		cv := rec.Covered[i]
		p := PeriodView{Key: cv.Key, From: cv.From, To: cv.To, RequestID: cv.RequestID, Started: cv.Started, How: cv.How}
		if st, err := c.Status(ctx, p.RequestID); err == nil {
			p.Phase = st.Phase
			if st.Failed != nil {
				p.Code = st.Failed.Code
			}
		}
		v.Periods = append(v.Periods, p)
	}
	return v
}

// RunSchedule starts schedule id's request now, for the period a fire
// now would cover, or for the period named by periodKey (such as 2026-10;
// see schedule.Relative.Named). The request has the id a fire would give
// it, so running a period the schedule also covers makes one request.
func (c *Client) RunSchedule(ctx context.Context, id, periodKey string) (messages.Request, error) {
	kv, err := c.schedules(ctx)
	if err != nil {
		return messages.Request{}, err
	}
	rec, _, err := readRecord(ctx, kv, id)
	if err != nil {
		return messages.Request{}, err
	}
	comp, err := schedule.Compile(rec.Schedule)
	if err != nil {
		return messages.Request{}, err
	}
	now := time.Now().UTC()
	p := comp.Relative.Resolve(now, comp.Location)
	if periodKey != "" {
		if p, err = comp.Relative.Named(periodKey); err != nil {
			return messages.Request{}, err
		}
	}
	reqs, err := c.start(ctx, kv, comp, []schedule.Period{p}, schedule.ByRun, now)
	if err != nil {
		return messages.Request{}, err
	}
	return reqs[0], nil
}

// BackfillSchedule starts one request per period of schedule id from the
// period holding from to the one holding to (months for previous-month,
// days for previous-day), at most limit, with the ids the schedule's
// fires use: a backfill and the schedule never make a period twice.
func (c *Client) BackfillSchedule(ctx context.Context, id string, from, to time.Time, limit int) ([]messages.Request, error) {
	kv, err := c.schedules(ctx)
	if err != nil {
		return nil, err
	}
	rec, _, err := readRecord(ctx, kv, id)
	if err != nil {
		return nil, err
	}
	comp, err := schedule.Compile(rec.Schedule)
	if err != nil {
		return nil, err
	}
	periods, err := comp.Relative.Between(from, to, limit)
	if err != nil {
		return nil, err
	}
	return c.start(ctx, kv, comp, periods, schedule.ByBackfill, time.Now().UTC())
}

// start submits the requests of periods and records them as covered.
func (c *Client) start(ctx context.Context, kv jetstream.KeyValue, comp schedule.Compiled, periods []schedule.Period, how string, now time.Time) ([]messages.Request, error) {
	reqs := make([]messages.Request, len(periods))
	for i, p := range periods {
		reqs[i] = comp.Request(p)
		if _, err := c.Submit(ctx, reqs[i], nil); err != nil {
			return nil, err
		}
	}
	_, err := update(ctx, kv, comp.ID, func(r *schedule.Record) error {
		for _, p := range periods {
			r.Cover(comp, p, how, now)
		}
		return nil
	})
	return reqs, err
}

// BackfillPeriods starts one request per period from the period holding
// from to the one holding to (months when t.Period is previous-month, days
// when it is previous-day), at most limit, under the ids schedule t.ID
// makes (<t.ID>-<period key>): a backfill and the schedule never make a
// period twice, whichever comes first.
//
// When schedule t.ID exists, its own template makes the requests and the
// periods are recorded covered, so its fires skip them; t's kind, period
// and params must then be the schedule's (under one id, other params would
// be an id_conflict). When it does not exist (or the server holds no
// schedules), t is the template (t.Cron may be empty): a schedule created
// later with the same params makes the same requests, which the stream's
// duplicate check and the workers' stored state fold into these.
// fromSchedule says which of the two happened.
func (c *Client) BackfillPeriods(ctx context.Context, t messages.Schedule, from, to time.Time, limit int) (reqs []messages.Request, fromSchedule bool, err error) {
	if t.Cron == "" {
		t.Cron = "@daily" // not armed: any valid expression compiles
	}
	tc, err := schedule.Compile(t)
	if err != nil {
		return nil, false, err
	}
	periods, err := tc.Relative.Between(from, to, limit)
	if err != nil {
		return nil, false, err
	}
	kv, err := c.schedules(ctx)
	if err != nil && !errors.Is(err, ErrSchedulesUnsupported) {
		return nil, false, err
	}
	if err == nil {
		rec, _, err := readRecord(ctx, kv, t.ID)
		switch {
		case err == nil:
			comp, err := schedule.Compile(rec.Schedule)
			if err != nil {
				return nil, false, err
			}
			if err := sameTemplate(comp, tc, periods[0]); err != nil {
				return nil, false, err
			}
			reqs, err := c.start(ctx, kv, comp, periods, schedule.ByBackfill, time.Now().UTC())
			return reqs, true, err
		case !errors.Is(err, ErrNoSchedule):
			return nil, false, err
		}
	}
	reqs = make([]messages.Request, len(periods))
	for i, p := range periods {
		reqs[i] = tc.Request(p)
		if _, err := c.Submit(ctx, reqs[i], nil); err != nil {
			return reqs[:i], false, err
		}
	}
	return reqs, false, nil
}

// sameTemplate checks that the backfill's template t makes, for period p,
// the request schedule s makes: the same kind, period and params.
func sameTemplate(s, t schedule.Compiled, p schedule.Period) error {
	if s.Schedule.Request.Kind != t.Schedule.Request.Kind || s.Relative != t.Relative {
		return fmt.Errorf("backfill under schedule %s: the schedule makes %s requests for a %s period, not %s ones for a %s period",
			s.ID, s.Schedule.Request.Kind, s.Relative, t.Schedule.Request.Kind, t.Relative)
	}
	a, _ := json.Marshal(s.Request(p).Params)
	b, _ := json.Marshal(t.Request(p).Params)
	if string(a) != string(b) {
		return fmt.Errorf("backfill under schedule %s: its requests' params are %s, the backfill's %s; under one id they must be the same", s.ID, a, b)
	}
	return nil
}
