package client

import (
	"fmt"
	"net/textproto"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/pkg/messages"
)

// Human renders an event on a line or a few, for a terminal.
func (o Outcome) Human() string {
	var b strings.Builder
	switch {
	case o.Completed != nil:
		c := o.Completed
		fmt.Fprintf(&b, "COMPLETED %s %s in %s, %d Azure call(s)", c.ID, c.Kind,
			c.CompletedAt.Sub(c.AcceptedAt).Round(time.Millisecond), c.AzureCalls)
		if c.URL != "" {
			fmt.Fprintf(&b, "\n  url:        %s", c.URL)
		}
		if c.ExpiryTime != nil {
			fmt.Fprintf(&b, "\n  expires:    %s", c.ExpiryTime.Format(time.RFC3339))
		}
		if c.ValidTill != nil {
			fmt.Fprintf(&b, "\n  valid till: %s", c.ValidTill.Format(time.RFC3339))
		}
		if c.NoData {
			b.WriteString("\n  no data:    Azure found no data for the report")
		}
		if len(c.Files) > 1 {
			fmt.Fprintf(&b, "\n  files:      %d", len(c.Files))
			for i, f := range c.Files {
				if f.Archive != nil {
					fmt.Fprintf(&b, "\n  file %d:     %s (%d bytes, sha256 %s)", i+1, f.Archive.Name, f.Archive.Size, f.Archive.SHA256)
				} else {
					fmt.Fprintf(&b, "\n  file %d:     %s (%d bytes announced)", i+1, f.URL, f.ByteCount)
				}
			}
		}
		if c.SecondaryURL != "" {
			fmt.Fprintf(&b, "\n  secondary:  %s", c.SecondaryURL)
		}
		if a := c.Archive; a != nil && a.Error == nil {
			fmt.Fprintf(&b, "\n  archived:   %s %s %s (%d bytes, %s, sha256 %s)", a.Store, a.Bucket, a.Name, a.Size, a.ContentType, a.SHA256)
		} else if a != nil {
			fmt.Fprintf(&b, "\n  archive:    not archived: %s: %s", a.Error.Code, a.Error.Message)
		}
		if inv := c.Invoice; inv != nil {
			fmt.Fprintf(&b, "\n  invoice:    %s status %s", inv.Name, inv.Status)
			if a, ok := inv.Amounts["totalAmount"]; ok {
				fmt.Fprintf(&b, ", total %.2f %s", a.Value, a.Currency)
			}
			for _, d := range inv.Documents {
				fmt.Fprintf(&b, "\n  document:   %s (%s)", d.Name, d.Kind)
			}
		}
		if len(c.Invoices) > 0 {
			fmt.Fprintf(&b, "\n  invoices:   %d", len(c.Invoices))
		}
		if sum := c.Collected; sum != nil {
			fmt.Fprintf(&b, "\n  documents:  %d of %d invoices: %d completed, %d failed", sum.Documents, sum.Invoices, sum.Completed, sum.Failed)
			for _, ch := range sum.Children {
				if ch.Outcome == "failed" {
					fmt.Fprintf(&b, "\n  failed:     %s %s (%s): %s", ch.InvoiceName, ch.DocumentName, ch.Code, ch.Message)
				}
			}
			if sum.Skipped > 0 {
				fmt.Fprintf(&b, "\n  skipped:    %d of %d listed (not fetched, each with its reason)", sum.Skipped, sum.Listed)
			}
			for _, s := range sum.SkippedDocuments {
				fmt.Fprintf(&b, "\n  skipped:    %s %s (%s): %s", s.InvoiceName, s.DocumentName, s.DocumentKind, s.Reason)
			}
		}
		writeEstate(&b, c)
		if c.Collection != nil && c.Kind == messages.KindCollection {
			fmt.Fprintf(&b, "\n  estate:     %s (scope %d)", c.Collection.ID, c.Collection.Index)
		} else if c.Collection != nil {
			fmt.Fprintf(&b, "\n  collection: %s (document %d)", c.Collection.ID, c.Collection.Index)
		}
	case o.Failed != nil:
		f := o.Failed
		id := f.ID
		if id == "" {
			id = "(no id)"
		}
		fmt.Fprintf(&b, "FAILED    %s %s: %s (retryable: %v)\n  %s", id, f.Kind, f.Code, f.Retryable, f.Message)
		if f.Azure != nil {
			fmt.Fprintf(&b, "\n  azure:     %d %s: %s", f.Azure.Status, f.Azure.Code, f.Azure.Message)
		}
		if f.Collection != nil && f.Kind == messages.KindCollection {
			fmt.Fprintf(&b, "\n  estate:     %s (scope %d)", f.Collection.ID, f.Collection.Index)
		} else if f.Collection != nil {
			fmt.Fprintf(&b, "\n  collection: %s (document %d)", f.Collection.ID, f.Collection.Index)
		}
	}
	if tp := headerValue(o.Header, "traceparent"); tp != "" {
		if parts := strings.Split(tp, "-"); len(parts) == 4 {
			fmt.Fprintf(&b, "\n  trace id:   %s", parts[1])
		}
	}
	return b.String()
}

// headerValue returns the first value of header key, whatever its case
// (the worker writes the W3C trace headers in lower case; other
// publishers may not).
func headerValue(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	if v := h[textproto.CanonicalMIMEHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// HumanState renders an operation's stored state.
func HumanState(st Operation) string {
	var b strings.Builder
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-13s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	row("request", "%s (%s)", st.Request.ID, st.Request.Kind)
	row("phase", "%s", st.Phase)
	row("accepted", "%s", st.AcceptedAt.Format(time.RFC3339))
	row("deadline", "%s", st.Deadline.Format(time.RFC3339))
	row("azure calls", "%d (%d polls)", st.AzureCalls, st.Polls)
	if st.LastStatus != 0 {
		row("last status", "%d", st.LastStatus)
	}
	if st.LastError != "" {
		row("last error", "%s", st.LastError)
	}
	if !st.NextAt.IsZero() {
		row("next poll", "%s (in %s, %s)", st.NextAt.Format(time.RFC3339Nano), time.Until(st.NextAt).Round(time.Millisecond), st.LastWaitSource)
	}
	if h := st.Throttled; h != nil && st.Phase == PhaseWaiting {
		why := "waiting for a slot of its budget"
		if !h.PausedUntil.IsZero() {
			why = "paused by Azure until " + h.PausedUntil.Format(time.RFC3339Nano)
		}
		row("throttled", "until %s (in %s): scope %s, %s", h.Until.Format(time.RFC3339Nano), time.Until(h.Until).Round(time.Millisecond), h.Scope, why)
	}
	if st.Phase.Claimed() {
		row("claimed by", "%s until %s", st.ClaimedBy, st.ClaimedUntil.Format(time.RFC3339))
	}
	if c := st.Completed; c != nil {
		row("url", "%s", c.URL)
		if c.ExpiryTime != nil {
			row("expires", "%s", c.ExpiryTime.Format(time.RFC3339))
		}
	}
	if f := st.Failed; f != nil {
		row("error", "%s: %s", f.Code, f.Message)
	}
	if c := st.Completed; c != nil && c.Archive != nil {
		if a := c.Archive; a.Error == nil {
			row("archived", "%s %s %s (%d bytes, sha256 %s)", a.Store, a.Bucket, a.Name, a.Size, a.SHA256)
		} else {
			row("archive", "not archived: %s: %s", a.Error.Code, a.Error.Message)
		}
	} else if a := st.Archiving; a != nil {
		what := "downloading the document into the archive"
		if a.NeedLink {
			what = "asking Azure for a new link (the last one expired)"
		}
		row("archive", "%s; %d attempt(s) ended, %d new link(s)", what, a.Attempts, a.Relinks)
		if a.LastError != "" {
			row("archive error", "%s", a.LastError)
		}
	}
	if len(st.Request.Labels) > 0 {
		keys := make([]string, 0, len(st.Request.Labels))
		for k := range st.Request.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("label", "%s=%s", k, st.Request.Labels[k])
		}
	}
	return b.String()
}

// LearnedText says what a scope of the shared throttle learned of Azure's
// budget: "learned 5.02/s burst 10 (from remaining)", or "learning" before
// its first answer.
func LearnedText(s ThrottleScope) string {
	if s.Learned == nil {
		return "learning (first call)"
	}
	rate, burst := s.Enforced()
	from := s.Learned.Source
	if from == "" {
		from = "no report yet"
	} else {
		from = "from " + from
	}
	return fmt.Sprintf("learned %s/s burst %d (%s)", strconv.FormatFloat(rate, 'f', 2, 64), burst, from)
}

// HumanThrottle renders the shared throttle's scopes (Client.Throttle) for
// a terminal: one line per scope.
func HumanThrottle(scopes []ThrottleScope, now time.Time) string {
	if len(scopes) == 0 {
		return "throttle: no scope yet\n"
	}
	var b strings.Builder
	for _, s := range scopes {
		fmt.Fprintf(&b, "throttle %s: configured %s burst %d; %s; %.0f free; %d calls, %d deferred, %d throttled, %d pauses (%.0fs), %d in flight at a pause",
			s.Scope, s.Rate, s.Burst, LearnedText(s), s.Tokens, s.Calls, s.Deferred, s.Throttled, s.Pauses, s.PausedSeconds, s.InFlightAtPause)
		if s.Paused(now) {
			fmt.Fprintf(&b, "; PAUSED until %s (%s)", s.PausedUntil.Format(time.RFC3339), s.PauseSource)
		}
		if r := s.Remaining; r != nil {
			fmt.Fprintf(&b, "; Azure reported %d left (%s, %s ago)", r.Value, r.Header, now.Sub(r.At).Round(time.Second))
		}
		b.WriteString("\n")
	}
	return b.String()
}
