package devstack

import (
	"context"
	"fmt"
	"io"

	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// DevScheduleID is dev mode's sample recurring schedule: an invoice
// summary every 10 seconds, so that a schedule is seen firing.
const DevScheduleID = "dev-every-10s"

// addDevSchedule adds dev mode's sample schedule and says so on out. It
// reports whether it was added (the embedded server holds repeating
// schedules; a refusal is printed, and dev mode goes on without it).
func addDevSchedule(ctx context.Context, c *client.Client, out io.Writer) bool {
	s := messages.Schedule{
		Version: messages.Version, ID: DevScheduleID, Cron: "*/10 * * * * *",
		Request: messages.ScheduledRequest{
			Kind:   messages.KindInvoiceSummary,
			Params: messages.Params{BillingAccountName: SampleBillingAccount, InvoiceName: InvoiceName("SCH", 1)},
			Labels: map[string]string{"source": "dev-mode"},
		},
	}
	if _, err := c.PutSchedule(ctx, s); err != nil {
		fmt.Fprintf(out, "schedule  %s not added: %v\n", s.ID, err)
		return false
	}
	fmt.Fprintf(out, "schedule  %s: an invoice summary every 10 s (cron %s), request ids %s-<fire time>; see enqueue schedule list\n", s.ID, s.Cron, s.ID)
	return true
}

// devScheduleFire reports the period (the fire's time) of an event of a
// request the sample schedule started.
func devScheduleFire(ev client.Outcome) (string, bool) {
	var labels map[string]string
	switch {
	case ev.Completed != nil:
		labels = ev.Completed.Labels
	case ev.Failed != nil:
		labels = ev.Failed.Labels
	}
	if labels[messages.LabelSchedule] != DevScheduleID {
		return "", false
	}
	return labels[messages.LabelPeriod], true
}
