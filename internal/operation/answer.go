package operation

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// Outcome says what became of one Azure call, in the machine's terms.
type Outcome int

// The outcomes of a call.
const (
	// Done: a 200 with a usable result (Answer.Result).
	Done Outcome = iota + 1
	// Running: a 202; Answer.Location is the polling URL (empty on a poll's
	// 202 that names none: keep the old one), Answer.Header its wait.
	Running
	// Throttled: 429, or 503 with a throttle hint; wait as Answer.Header says.
	Throttled
	// Transient: another answer worth trying again (5xx, 408).
	Transient
	// Refused: Azure refused the operation (another 4xx); Answer.Azure.
	Refused
	// Denied: 401 or 403; Answer.Azure.
	Denied
	// Malformed: an answer that could not be used (Answer.Status says which).
	Malformed
	// LocationRefused: the polling URL is not one the token may go to.
	LocationRefused
	// AuthRefused: the identity provider refused the credential for good.
	// No call was sent.
	AuthRefused
	// AuthUnavailable: no token could be had this time. No call was sent.
	AuthUnavailable
	// NoAnswer: the call timed out or its connection broke; whether Azure
	// acted on it is unknown.
	NoAnswer
	// Late: the deadline had come before the call could be made; none was
	// sent.
	Late
)

// Answer is a neutral description of one Azure call's outcome.
type Answer struct {
	Outcome  Outcome
	Status   int         // the HTTP status; 0 when there was none
	Header   http.Header // the answer's headers (wait hints)
	Location string      // Running: the polling URL
	Result   *Result     // Done
	Azure    *messages.AzureError
	// Error describes a failure, credentials already removed.
	Error string
	// CutAtDeadline is true when the operation's deadline, not the call's
	// own timeout, cut the call (or the token request) short: the failure
	// says nothing about Azure, only that time ran out.
	CutAtDeadline bool
}

// Result is what a finished operation (or one page of a listing) yields.
type Result struct {
	URL                    string
	ExpiryTime             *time.Time
	ValidTill              *time.Time
	DownloadFileProperties json.RawMessage
	Invoice                *messages.Invoice
	// Invoices are one page of a listing; NextLink, when not empty, is the
	// checked URL of the next page.
	Invoices []messages.Invoice
	NextLink string
	// Items are one page of a discovery listing.
	Items []messages.Discovered
	// A cost data report's files and what Azure said of them.
	Files        []messages.ReportFile
	Manifest     *messages.ReportManifest
	SecondaryURL string
	NoData       bool
}

// sent reports whether the call reached Azure (or may have).
func (a Answer) sent() bool {
	return a.Outcome != AuthRefused && a.Outcome != AuthUnavailable && a.Outcome != Late
}

// Answer is the transition of an operation whose claimed call (st, as
// stored with the claim) got answer a: it records the call and decides
// what follows: the outcome, or a wait.
func (m Machine) Answer(st State, a Answer, now time.Time) Step {
	polling := st.Location != ""
	if a.sent() {
		st.AzureCalls++
		if polling {
			st.Polls++
		}
	}
	if !polling && a.Outcome != NoAnswer {
		st.Unanswered = max(st.Unanswered-1, 0) // its outcome is known
	}
	if a.Outcome == Late || a.CutAtDeadline || a.Outcome == NoAnswer && !now.Before(st.Deadline) {
		// The deadline came before an answer: the operation times out, and
		// the failure stored before (if any) says what kept it from ending.
		if st.LastError == "" {
			st.LastError, st.LastErrorClass = "no answer from Azure before the deadline", ClassTransport
			switch {
			case a.Error != "":
				st.LastError = a.Error
			case a.Outcome == Late:
				st.LastError = "the next call fell due at the deadline"
			}
			if a.Outcome == AuthUnavailable {
				st.LastErrorClass = ClassAuth
			}
		}
		m.timedOut(&st, "", now)
		recordCall(&st, a, polling, now)
		return m.settle(&st)
	}
	switch a.Outcome {
	case Done:
		st.Started, st.LastStatus, st.LastError, st.LastErrorClass = true, http.StatusOK, "", ""
		st.Failures, st.BadAnswers = 0, 0
		r := a.Result
		switch {
		case st.Request.Kind == messages.KindCollection:
			return m.collected(st, r, now)
		case st.Request.Kind == messages.KindEstate:
			return m.discovered(st, r, now)
		}
		var found []messages.Discovered
		if st.Request.Kind.Discovers() {
			found = slices.Concat(st.Found, r.Items)
			if len(found) > messages.MaxDiscovered {
				m.fail(&st, messages.CodeTooMany, fmt.Sprintf("the listing found more than %d items (%d after %d pages)",
					messages.MaxDiscovered, len(found), st.Polls+1), nil, false, now)
				return m.settle(&st)
			}
			if r.NextLink != "" {
				st.Found, st.Location = found, r.NextLink
				m.claim(&st, now)
				return Step{Next: &st, Action: Call}
			}
			if found == nil {
				found = []messages.Discovered{}
			}
			st.Found = nil
		}
		var listed []messages.Invoice
		if st.Request.Kind.Lists() {
			listed = slices.Concat(st.Listed, r.Invoices)
			if len(listed) > messages.MaxListedInvoices {
				m.fail(&st, messages.CodeTooMany, fmt.Sprintf("the listing found more than %d invoices (%d after %d pages); "+
					"narrow the period", messages.MaxListedInvoices, len(listed), st.Polls+1), nil, false, now)
				return m.settle(&st)
			}
			if r.NextLink != "" {
				// Another page: fetch it now, from where this one ended.
				st.Listed, st.Location = listed, r.NextLink
				m.claim(&st, now)
				return Step{Next: &st, Action: Call}
			}
			if listed == nil {
				listed = []messages.Invoice{}
			}
			st.Listed = nil
		}
		// The document is archived first, when it is to be (done).
		m.done(&st, messages.Completed{
			Version: messages.Version, ID: st.Request.ID, Kind: st.Request.Kind,
			URL: r.URL, ExpiryTime: r.ExpiryTime, ValidTill: r.ValidTill, DownloadFileProperties: r.DownloadFileProperties,
			Files: r.Files, Manifest: r.Manifest, SecondaryURL: r.SecondaryURL, NoData: r.NoData,
			Invoice: r.Invoice, Invoices: listed, Items: found,
			AcceptedAt: st.AcceptedAt, CompletedAt: now, AzureCalls: st.AzureCalls, Labels: st.Request.Labels,
		}, now)
	case Running:
		st.Started, st.LastStatus, st.LastError, st.LastErrorClass = true, a.Status, "", ""
		st.Failures, st.BadAnswers = 0, 0
		if a.Location != "" {
			st.Location = a.Location
		}
		m.wait(&st, poll.ReasonInProgress, a.Header, now)
	default:
		m.failed(&st, a, now)
	}
	recordCall(&st, a, polling, now)
	return m.settle(&st)
}

// recordCall adds the answer to st's call history, with the wait chosen
// after it (none when the operation ended).
func recordCall(st *State, a Answer, polling bool, now time.Time) {
	c := CallRecord{At: now, Poll: polling, Status: a.Status, Outcome: a.Outcome.String(), Error: redact.String(a.Error)}
	if st.Phase == PhaseWaiting {
		c.Wait, c.WaitSource = st.LastWait, st.LastWaitSource
	}
	st.record(c)
}

// String names an outcome in snake_case, as the call history stores it.
func (o Outcome) String() string {
	switch o {
	case Done:
		return "done"
	case Running:
		return "running"
	case Throttled:
		return "throttled"
	case Transient:
		return "transient"
	case Refused:
		return "refused"
	case Denied:
		return "denied"
	case Malformed:
		return "malformed"
	case LocationRefused:
		return "location_refused"
	case AuthRefused:
		return "auth_refused"
	case AuthUnavailable:
		return "auth_unavailable"
	case NoAnswer:
		return "no_answer"
	case Late:
		return "late"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// settle is the step after an answer was recorded in st.
func (m Machine) settle(st *State) Step {
	if st.Phase == PhaseWaiting {
		return Step{Next: st, Action: Schedule}
	}
	if st.Phase == PhaseArchiving {
		return Step{Next: st, Action: Archive}
	}
	if st.Phase == PhaseFailed && st.Archiving != nil {
		// A new link was asked of Azure for the archive, and the call
		// failed: the operation still completes, with the link it had.
		msg := "a new link was asked of Azure after the last one expired, and that failed: " + st.Failed.Message
		st.Failed = nil
		m.archiveEnd(st, nil, messages.ArchiveLinkExpired, msg, st.UpdatedAt)
	}
	return Step{Next: st, Action: Publish}
}

// failed records a failed call: a wait, or the end.
func (m Machine) failed(st *State, a Answer, now time.Time) {
	st.LastError, st.LastStatus = a.Error, a.Status
	switch a.Outcome {
	case AuthRefused:
		st.LastErrorClass = ClassAuth
		m.fail(st, messages.CodeAuthFailed, a.Error, nil, false, now)
	case AuthUnavailable:
		st.LastErrorClass = ClassAuth
		st.Failures++
		m.wait(st, poll.ReasonTransient, nil, now)
	case Throttled, Transient:
		st.LastErrorClass = ClassAzure
		st.Failures++
		reason := poll.ReasonTransient
		if a.Outcome == Throttled {
			reason = poll.ReasonThrottled
		}
		m.wait(st, reason, a.Header, now)
	case Denied:
		st.LastErrorClass = ClassAzure
		m.fail(st, messages.CodeAccessDenied, a.Error, a.Azure, false, now)
	case Refused:
		st.LastErrorClass = ClassAzure
		m.fail(st, messages.CodeAzureError, a.Error, a.Azure, false, now)
	case LocationRefused:
		st.LastErrorClass = ClassLocation
		m.fail(st, messages.CodeLocationRejected, a.Error, nil, false, now)
	case Malformed:
		st.LastErrorClass = ClassMalformed
		st.BadAnswers++
		if a.Status == http.StatusAccepted || st.BadAnswers >= m.MaxBadAnswers {
			m.fail(st, messages.CodeBadResponse, a.Error, nil, true, now)
			return
		}
		st.Failures++
		m.wait(st, poll.ReasonTransient, nil, now)
	default: // NoAnswer
		st.LastErrorClass = ClassTransport
		st.Failures++
		m.wait(st, poll.ReasonTransient, nil, now)
	}
}

// wait asks the policy when to call again, or ends the operation when its
// deadline cannot be met.
func (m Machine) wait(st *State, reason poll.Reason, header http.Header, now time.Time) {
	d := m.Policy.Next(poll.Input{
		Now: now, Deadline: st.Deadline, Reason: reason, Header: header, Failures: st.Failures, Rand: m.Rand,
	})
	if !d.GiveUp {
		st.Wait(d, now)
		return
	}
	m.timedOut(st, d.Source, now)
}

// timedOut ends the operation at its deadline: with timeout, or with
// auth_unavailable when getting a token is what kept failing. source is the
// wait hint that would have crossed the deadline, if that is why.
func (m Machine) timedOut(st *State, source string, now time.Time) {
	code, msg := messages.CodeTimeout, fmt.Sprintf("the deadline %s passed before the operation finished", st.Deadline.Format(time.RFC3339))
	if source != "" && source != poll.SourceBackoff && source != poll.SourceDefault {
		msg = fmt.Sprintf("Azure asked to wait (%s) past the deadline %s", source, st.Deadline.Format(time.RFC3339))
	}
	if st.LastError != "" {
		msg += "; last error: " + st.LastError
		if st.LastErrorClass == ClassAuth {
			code = messages.CodeAuthUnavailable
		}
	}
	m.fail(st, code, msg, nil, true, now)
}
