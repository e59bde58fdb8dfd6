package operation

import (
	"fmt"
	"slices"
	"time"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
	"github.com/azbilling/worker/pkg/poll"
)

// PhaseArchiving is a claim: one worker is downloading the document behind
// Archiving.Event.URL into the archive store until ClaimedUntil (renewing the
// claim as it goes). A worker that dies mid-upload leaves the claim to
// expire; the operation is then archived again from the start.
const PhaseArchiving Phase = "archiving"

// Archiving is the archive of a finished operation's document, pending
// until it is stored (or given up, when the completion event goes out with
// Azure's link and an archive error).
type Archiving struct {
	// Event is the completion event of Azure's latest answer: its url is
	// the link to download; it goes out with the archive (or the archive's
	// error) once the archive has ended.
	Event messages.Completed `json:"event"`
	// NeedLink is true while a new link is asked of Azure (the last one
	// expired or was refused by storage).
	NeedLink bool `json:"needLink,omitempty"`
	// Attempts counts the downloads that ended (stored or not); Relinks the
	// new links asked of Azure.
	Attempts int `json:"attempts"`
	Relinks  int `json:"relinks,omitempty"`
	// LastError describes the last failed attempt, redacted.
	LastError string `json:"lastError,omitempty"`
}

// ArchivePolicy says whether and how a finished operation's document is
// archived. The zero value archives nothing.
type ArchivePolicy struct {
	// Store is true when the worker has an archive store.
	Store bool
	// Default is whether a request that does not say is archived.
	Default bool
	// MaxAttempts downloads that fail (resets, timeouts, 5xx) end the
	// archive with download_failed.
	MaxAttempts int
	// MaxRelinks new links asked of Azure after expired ones; one more
	// expired link ends the archive with link_expired.
	MaxRelinks int
}

// wants reports whether st's request is to be archived.
func (p ArchivePolicy) wants(req messages.Request) bool {
	if !req.Kind.ReturnsURL() {
		return false
	}
	if req.Archive != nil {
		return *req.Archive
	}
	return p.Store && p.Default
}

// archiveDue reports whether the next thing to do is to download the
// document into the archive.
func (s *State) archiveDue() bool { return s.Archiving != nil && !s.Archiving.NeedLink }

// ArchiveOutcome says what became of one archive attempt.
type ArchiveOutcome int

// The outcomes of an archive attempt.
const (
	// Archived: the store holds the document (ArchiveAnswer.Object), stored
	// now or found stored with the same content.
	Archived ArchiveOutcome = iota + 1
	// ArchiveRetry: the download broke (reset, timeout, 5xx): try again
	// after a backoff, into a fresh object.
	ArchiveRetry
	// LinkExpired: the link expired, or storage refused it (403), before
	// the download finished: ask Azure for a new one.
	LinkExpired
	// ArchiveFailed: the store failed or refused the write
	// (ArchiveAnswer.Code); no use trying again.
	ArchiveFailed
	// ArchiveLate: the deadline came before the attempt could be made.
	ArchiveLate
)

// ArchiveAnswer describes one archive attempt.
type ArchiveAnswer struct {
	Outcome ArchiveOutcome
	// Object is where the document is stored (Archived); for a report of
	// several files, its archive manifest, and Files where each file is,
	// in the event's order.
	Object *messages.Archive
	Files  []*messages.Archive
	// Code is the failure's code (ArchiveFailed).
	Code messages.ArchiveCode
	// Error describes a failure, the link's signature already removed.
	Error string
}

// done records Azure's final answer, whose completion event is ev: the
// operation completes, or, when its document is to be archived, it is
// claimed for the archive.
func (m Machine) done(st *State, ev messages.Completed, now time.Time) {
	// A document, or a report of several files (each is archived, then a
	// manifest of them).
	if (ev.URL != "" || len(ev.Files) > 1) && m.Archive.wants(st.Request) {
		if !m.Archive.Store {
			ev.Archive = &messages.Archive{Error: &messages.ArchiveError{
				Code: messages.ArchiveNotConfigured, Message: "the request asked for an archive; this worker has no archive store",
			}}
			st.Complete(ev, now)
			return
		}
		a := st.ownArchiving()
		a.Event, a.NeedLink = ev, false
		st.Failures = 0
		m.claim(st, now)
		return
	}
	st.Complete(ev, now)
}

// archiveEnd completes an archiving operation: with the stored object, or
// with Azure's link and the archive error (nothing is lost).
func (m Machine) archiveEnd(st *State, obj *messages.Archive, code messages.ArchiveCode, msg string, now time.Time) {
	if obj == nil {
		obj = &messages.Archive{Error: &messages.ArchiveError{Code: code, Message: redact.String(msg)}}
	}
	ev := st.Archiving.Event
	ev.Archive, ev.AzureCalls = obj, st.AzureCalls
	st.Complete(ev, now)
}

// Archived is the transition of an operation whose claimed archive attempt
// (st, as stored with the claim) ended with answer a: the completion event
// with the archive, a new link asked of Azure, a retry after a backoff, or
// the completion event with Azure's link and an archive error.
func (m Machine) Archived(st State, a ArchiveAnswer, now time.Time) Step {
	if st.Archiving == nil || st.Phase.Terminal() {
		return Step{Action: Republish} // nothing was pending: cannot happen from a claimed state
	}
	arc := st.ownArchiving()
	if a.Outcome != ArchiveLate {
		arc.Attempts++
	}
	if a.Outcome != Archived {
		arc.LastError = redact.String(a.Error)
	}
	last := func() string {
		if arc.LastError == "" {
			return ""
		}
		return "; last error: " + arc.LastError
	}
	switch {
	case a.Outcome == Archived:
		arc.LastError = ""
		if len(a.Files) > 0 {
			files := slices.Clone(arc.Event.Files)
			for i := range min(len(files), len(a.Files)) {
				files[i].Archive = a.Files[i]
			}
			arc.Event.Files = files
		}
		m.archiveEnd(&st, a.Object, "", "", now)
	case a.Outcome == ArchiveLate || !now.Before(st.Deadline):
		m.archiveEnd(&st, nil, messages.ArchiveTimeout,
			fmt.Sprintf("the deadline %s passed before the document was archived%s", st.Deadline.Format(time.RFC3339), last()), now)
	case a.Outcome == ArchiveFailed:
		m.archiveEnd(&st, nil, a.Code, arc.LastError, now)
	case a.Outcome == LinkExpired:
		if arc.Relinks >= m.Archive.MaxRelinks {
			m.archiveEnd(&st, nil, messages.ArchiveLinkExpired,
				fmt.Sprintf("the link expired or was refused before the download finished, %d new links included%s", arc.Relinks, last()), now)
			break
		}
		// The download calls are safe to repeat: ask Azure again, from the
		// first call (the old polling URL's operation is spent).
		arc.Relinks++
		arc.NeedLink = true
		st.Location = ""
		m.claim(&st, now)
		return Step{Next: &st, Action: Call}
	default: // ArchiveRetry
		if arc.Attempts >= m.Archive.MaxAttempts {
			m.archiveEnd(&st, nil, messages.ArchiveDownloadFailed,
				fmt.Sprintf("the download failed %d times%s", arc.Attempts, last()), now)
			break
		}
		st.Failures++
		d := m.Policy.Next(poll.Input{Now: now, Deadline: st.Deadline, Reason: poll.ReasonTransient, Failures: st.Failures, Rand: m.Rand})
		if d.GiveUp {
			m.archiveEnd(&st, nil, messages.ArchiveTimeout,
				fmt.Sprintf("the deadline %s came before the download could be tried again%s", st.Deadline.Format(time.RFC3339), last()), now)
			break
		}
		st.Wait(d, now)
		return Step{Next: &st, Action: Schedule}
	}
	return Step{Next: &st, Action: Publish}
}

// ownArchiving replaces s.Archiving by a copy (a new one if nil) and
// returns it, so that a transition never changes the state it was given.
func (s *State) ownArchiving() *Archiving {
	a := &Archiving{}
	if s.Archiving != nil {
		*a = *s.Archiving
	}
	s.Archiving = a
	return a
}

// action is what a claimed state is claimed for.
func (s *State) action() Action {
	if s.Phase == PhaseArchiving {
		return Archive
	}
	return Call
}
