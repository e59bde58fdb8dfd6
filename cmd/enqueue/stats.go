package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/azbilling/worker/pkg/client"
)

func (a *app) statsCommand() *cobra.Command {
	var limit int
	var overdueAfter time.Duration
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count the stored operations by state, and show the oldest waiting one",
		Long: `Count the operations in the state bucket by phase: starting and polling
(a worker holds them: an Azure call is in flight), waiting (the next call is
due at a time), completed and failed (ended, kept until the bucket's TTL);
and show the oldest waiting operation: id, kind, accepted at, next wake-up;
count apart the overdue ones (waiting for a wake-up more than --overdue-after
past its time: one the NATS server did not fire, which the worker's watchdog
schedules again; see the alert BillingWakeUpsOverdue) and name the most
overdue;
then the shared throttle's scopes: rate and burst, calls free, counters,
a pause in force and the budget Azure last reported; and the global window
of collections' children: slots in use, collections waiting for one.
Reads at most --limit states.`,
		GroupID: "read",
		Args:    noArgs,
		RunE:    a.mark(func(cmd *cobra.Command, _ []string) error { return a.stats(cmd.Context(), limit, overdueAfter) }),
	}
	cmd.Flags().IntVar(&limit, "limit", 100000, "read at most this many states (0: all)")
	cmd.Flags().DurationVar(&overdueAfter, "overdue-after", client.DefaultOverdueAfter, "a waiting operation is overdue when its wake-up is this much past its time (the workers' wake-overdue-after)")
	return cmd
}

// statsReport is what stats prints with --json.
type statsReport struct {
	Total    int                  `json:"total"`
	Phases   map[client.Phase]int `json:"phases"`
	Complete bool                 `json:"complete"`          // every state was read (not cut at --limit)
	Skipped  int                  `json:"skipped,omitempty"` // states of an unknown version
	Oldest   *oldestWaiting       `json:"oldestWaiting,omitempty"`
	// Overdue counts the waiting operations whose wake-up is more than
	// --overdue-after past its time (counted among the waiting too);
	// MostOverdue is the one due first.
	Overdue     int            `json:"overdue"`
	MostOverdue *oldestWaiting `json:"mostOverdue,omitempty"`
	// Throttle is the shared throttle's scopes.
	Throttle []client.ThrottleScope `json:"throttle"`
	// Collections is the global window of collections' children.
	Collections client.CollectionsWindow `json:"collections"`
}

type oldestWaiting struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	AcceptedAt time.Time `json:"acceptedAt"`
	NextAt     time.Time `json:"nextAt"`
	Deadline   time.Time `json:"deadline"`
}

var phases = []client.Phase{client.PhaseStarting, client.PhasePolling, client.PhaseWaiting, client.PhaseCompleted, client.PhaseFailed}

func (a *app) stats(ctx context.Context, limit int, overdueAfter time.Duration) error {
	nc, c, err := a.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	states, skipped, complete, err := c.States(ctx, limit)
	if err != nil {
		return err
	}
	r := statsReport{Total: len(states), Phases: map[client.Phase]int{}, Complete: complete, Skipped: skipped}
	for _, p := range phases {
		r.Phases[p] = 0
	}
	now := time.Now()
	for _, st := range states {
		r.Phases[st.Phase]++
		if st.Overdue(now, overdueAfter) {
			r.Overdue++
			if r.MostOverdue == nil || st.NextAt.Before(r.MostOverdue.NextAt) {
				r.MostOverdue = &oldestWaiting{ID: st.Request.ID, Kind: string(st.Request.Kind), AcceptedAt: st.AcceptedAt, NextAt: st.NextAt, Deadline: st.Deadline}
			}
		}
		if st.Phase == client.PhaseWaiting && (r.Oldest == nil || st.AcceptedAt.Before(r.Oldest.AcceptedAt)) {
			r.Oldest = &oldestWaiting{ID: st.Request.ID, Kind: string(st.Request.Kind), AcceptedAt: st.AcceptedAt, NextAt: st.NextAt, Deadline: st.Deadline}
		}
	}
	if r.Throttle, err = c.Throttle(ctx); err != nil {
		return err
	}
	if r.Throttle == nil {
		r.Throttle = []client.ThrottleScope{}
	}
	if r.Collections, err = c.CollectionsWindow(ctx); err != nil {
		return err
	}
	if a.jsonOut() {
		return json.NewEncoder(a.stdout).Encode(r)
	}
	for _, p := range phases {
		fmt.Fprintf(a.stdout, "%-10s %d\n", p, r.Phases[p])
	}
	fmt.Fprintf(a.stdout, "%-10s %d\n", "total", r.Total)
	fmt.Fprintf(a.stdout, "%-10s %d (waiting, wake-up more than %s past its time)\n", "overdue", r.Overdue, overdueAfter)
	if !complete {
		fmt.Fprintf(a.stdout, "(read the first %d states only: --limit)\n", limit)
	}
	if skipped > 0 {
		fmt.Fprintf(a.stdout, "(%d states of an unknown version skipped)\n", skipped)
	}
	if o := r.Oldest; o != nil {
		fmt.Fprintf(a.stdout, "oldest waiting: %s (%s), accepted %s, next wake-up %s (in %s), deadline %s\n",
			o.ID, o.Kind, o.AcceptedAt.Format(time.RFC3339), o.NextAt.Format(time.RFC3339),
			time.Until(o.NextAt).Round(time.Second), o.Deadline.Format(time.RFC3339))
	}
	if o := r.MostOverdue; o != nil {
		fmt.Fprintf(a.stdout, "most overdue: %s (%s), wake-up due %s (%s ago), deadline %s\n",
			o.ID, o.Kind, o.NextAt.Format(time.RFC3339), now.Sub(o.NextAt).Round(time.Second), o.Deadline.Format(time.RFC3339))
	}
	fmt.Fprint(a.stdout, client.HumanThrottle(r.Throttle, time.Now()))
	fmt.Fprintf(a.stdout, "collections: %d children in flight (global window), %d collections waiting for a slot\n", r.Collections.InUse, r.Collections.Waiting)
	return nil
}
