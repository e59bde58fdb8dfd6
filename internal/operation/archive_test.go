package operation_test

import (
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

func archiving() operation.Machine {
	m := machine()
	m.Archive = operation.ArchivePolicy{Store: true, Default: true, MaxAttempts: 3, MaxRelinks: 2}
	return m
}

const link = "https://storage.example/c/G123456789_summary.pdf?sv=2023-11-03&se=x&sig=SECRET"

// inArchive is a state claimed for its archive attempt, after attempts
// ended attempts and relinks new links.
func inArchive(attempts, relinks int) func(*operation.State) {
	return func(s *operation.State) {
		exp := t0.Add(time.Hour)
		s.Location, s.Started, s.AzureCalls = "https://management.azure.com/op/1", true, 2
		s.Archiving = &operation.Archiving{Event: messages.Completed{Version: 1, ID: s.Request.ID, Kind: s.Request.Kind,
			URL: link, ExpiryTime: &exp, AcceptedAt: s.AcceptedAt, CompletedAt: t0.Add(-time.Second), AzureCalls: 2}, Attempts: attempts, Relinks: relinks}
		s.Claim(me, t0.Add(-time.Second), t0.Add(39*time.Second))
	}
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

// Azure's final answer with a link: the operation is claimed for the
// archive, or completes at once.
func TestDoneArchives(t *testing.T) {
	t.Parallel()
	expiry := t0.Add(time.Hour)
	done := operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{URL: link, ExpiryTime: &expiry}}
	noStore := machine()
	noDefault := archiving()
	noDefault.Archive.Default = false
	for _, tc := range []struct {
		name    string
		m       operation.Machine
		kind    messages.Kind
		archive *bool
		action  operation.Action
		code    messages.ArchiveCode // archive error in the completion event
	}{
		{"store, default on: claimed for the archive", archiving(), messages.KindInvoiceSummary, nil, operation.Archive, ""},
		{"store, request opts out: completed without archive", archiving(), messages.KindInvoiceSummary, no(), operation.Publish, ""},
		{"store, default off, request opts in: archive", noDefault, messages.KindInvoiceSummary, yes(), operation.Archive, ""},
		{"store, default off: completed without archive", noDefault, messages.KindInvoiceSummary, nil, operation.Publish, ""},
		{"no store, request opts in: completed with not_configured", noStore, messages.KindInvoiceSummary, yes(), operation.Publish, messages.ArchiveNotConfigured},
		{"no store: completed as before", noStore, messages.KindInvoiceSummary, nil, operation.Publish, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := state(claimed(me, "https://management.azure.com/op/1", t0.Add(30*time.Second), 0))
			st.Request.Kind, st.Request.Archive = tc.kind, tc.archive
			s := tc.m.Answer(st, done, t0)
			if s.Action != tc.action {
				t.Fatalf("action %v, want %v", s.Action, tc.action)
			}
			n := s.Next
			switch {
			case tc.action == operation.Archive:
				if n.Phase != operation.PhaseArchiving || n.ClaimedBy != me || !n.ClaimedUntil.Equal(t0.Add(40*time.Second)) ||
					n.Archiving == nil || n.Archiving.Event.URL != link || !n.Archiving.Event.CompletedAt.Equal(t0) || n.Completed != nil || n.Unanswered != 0 {
					t.Errorf("%+v %+v", n, n.Archiving)
				}
			case tc.code != "":
				if n.Completed == nil || n.Completed.Archive == nil || n.Completed.Archive.Error == nil || n.Completed.Archive.Error.Code != tc.code || n.Completed.URL != link {
					t.Errorf("%+v", n.Completed)
				}
			default:
				if n.Completed == nil || n.Completed.Archive != nil || n.Archiving != nil {
					t.Errorf("%+v", n.Completed)
				}
			}
		})
	}
}

func TestArchived(t *testing.T) {
	t.Parallel()
	m := archiving()
	stored := t0.Add(-time.Millisecond)
	obj := &messages.Archive{Store: messages.StoreNATS, Bucket: "billing_archive", Name: "invoice-summary/12345678/G123456789/G123456789_summary.pdf",
		Size: 10, SHA256: strings.Repeat("a", 64), ContentType: "application/pdf", StoredAt: &stored}
	for _, tc := range []struct {
		name   string
		st     operation.State
		a      operation.ArchiveAnswer
		now    time.Time
		action operation.Action
		code   messages.ArchiveCode // the archive error in the completion event
		check  func(t *testing.T, n *operation.State)
	}{
		{"archived: completed with the object, Azure's link and answer time", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.Archived, Object: obj}, t0,
			operation.Publish, "", func(t *testing.T, n *operation.State) {
				c := n.Completed
				if c.Archive != obj || c.URL != link || !c.CompletedAt.Equal(t0.Add(-time.Second)) || c.AzureCalls != 2 || n.Archiving.Attempts != 1 {
					t.Errorf("%+v", c)
				}
			}},
		{"download reset: try again after a backoff", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveRetry, Error: "unexpected EOF"}, t0,
			operation.Schedule, "", func(t *testing.T, n *operation.State) {
				if n.Phase != operation.PhaseWaiting || n.LastWait != time.Second || n.Archiving.Attempts != 1 || n.Archiving.LastError != "unexpected EOF" || n.ClaimedBy != "" {
					t.Errorf("%+v %+v", n, n.Archiving)
				}
			}},
		{"download reset the last time allowed: completed with download_failed", state(inArchive(2, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveRetry, Error: "unexpected EOF"}, t0,
			operation.Publish, messages.ArchiveDownloadFailed, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Completed.Archive.Error.Message, "3 times; last error: unexpected EOF") {
					t.Errorf("%q", n.Completed.Archive.Error.Message)
				}
			}},
		{"link expired (403): the first Azure call again, counted", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.LinkExpired, Error: "storage answered 403 AuthenticationFailed"}, t0,
			operation.Call, "", func(t *testing.T, n *operation.State) {
				if n.Phase != operation.PhaseStarting || n.Location != "" || n.Unanswered != 1 || !n.Archiving.NeedLink || n.Archiving.Relinks != 1 || n.ClaimedBy != me {
					t.Errorf("%+v %+v", n, n.Archiving)
				}
			}},
		{"link expired after the new links allowed: completed with link_expired", state(inArchive(2, 2)), operation.ArchiveAnswer{Outcome: operation.LinkExpired, Error: "403"}, t0,
			operation.Publish, messages.ArchiveLinkExpired, nil},
		{"store write failed: completed with store_failed and Azure's link", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveFailed, Code: messages.ArchiveStoreFailed, Error: "insufficient resources"}, t0,
			operation.Publish, messages.ArchiveStoreFailed, func(t *testing.T, n *operation.State) {
				if n.Completed.URL != link || n.Completed.Archive.Error.Message != "insufficient resources" {
					t.Errorf("%+v", n.Completed)
				}
			}},
		{"another document under the name: completed with conflict", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveFailed, Code: messages.ArchiveConflict, Error: "exists"}, t0,
			operation.Publish, messages.ArchiveConflict, nil},
		{"reset at the deadline: completed with timeout", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveRetry, Error: "context deadline exceeded"}, t0.Add(time.Hour),
			operation.Publish, messages.ArchiveTimeout, func(t *testing.T, n *operation.State) {
				if !strings.Contains(n.Completed.Archive.Error.Message, "context deadline exceeded") {
					t.Errorf("%q", n.Completed.Archive.Error.Message)
				}
			}},
		{"not tried, the deadline had come: completed with timeout, no attempt counted", state(inArchive(1, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveLate}, t0.Add(time.Hour),
			operation.Publish, messages.ArchiveTimeout, func(t *testing.T, n *operation.State) {
				if n.Archiving.Attempts != 1 {
					t.Errorf("attempts %d", n.Archiving.Attempts)
				}
			}},
		{"the signature never reaches the event's error", state(inArchive(0, 0)), operation.ArchiveAnswer{Outcome: operation.ArchiveFailed, Code: messages.ArchiveStoreFailed, Error: "GET " + link + ": boom"}, t0,
			operation.Publish, messages.ArchiveStoreFailed, func(t *testing.T, n *operation.State) {
				if strings.Contains(n.Completed.Archive.Error.Message, "SECRET") || strings.Contains(n.Archiving.LastError, "SECRET") {
					t.Errorf("%q", n.Completed.Archive.Error.Message)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := m.Archived(tc.st, tc.a, tc.now)
			if s.Action != tc.action || s.Next == nil {
				t.Fatalf("action %v, want %v", s.Action, tc.action)
			}
			n := s.Next
			if tc.action == operation.Publish {
				c := n.Completed
				if c == nil || c.Archive == nil || n.Phase != operation.PhaseCompleted {
					t.Fatalf("%+v", n)
				}
				if (tc.code == "") != (c.Archive.Error == nil) || tc.code != "" && c.Archive.Error.Code != tc.code {
					t.Errorf("archive %+v, want code %q", c.Archive, tc.code)
				}
			}
			if tc.check != nil {
				tc.check(t, n)
			}
		})
	}
}

// What a redelivery, a wake-up or a renewed link does with an archive
// pending.
func TestArchiveResumes(t *testing.T) {
	t.Parallel()
	m := archiving()
	req := request()
	expiry := t0.Add(time.Hour)
	newLink := link + "2"
	relinking := state(func(s *operation.State) {
		inArchive(1, 1)(s)
		s.Archiving.NeedLink, s.Location = true, ""
		s.Claim(me, t0.Add(-time.Second), t0.Add(39*time.Second))
	})
	waitingArchive := state(func(s *operation.State) {
		inArchive(1, 0)(s)
		s.Phase, s.Wake, s.NextAt, s.ClaimedBy = operation.PhaseWaiting, 3, t0, ""
	})
	for _, tc := range []struct {
		name   string
		run    func() operation.Step
		action operation.Action
		check  func(t *testing.T, n *operation.State)
	}{
		{"worker died mid-upload (claim expired): archive again", func() operation.Step {
			st := state(inArchive(0, 0))
			st.ClaimedBy, st.ClaimedUntil = "worker-b", t0.Add(-time.Second)
			return m.Resume(st, operation.Delivery{Request: &req}, t0)
		}, operation.Archive, func(t *testing.T, n *operation.State) {
			if n.Phase != operation.PhaseArchiving || n.ClaimedBy != me || n.Unanswered != 0 {
				t.Errorf("%+v", n)
			}
		}},
		{"live archive claim of another worker: come back when it expires", func() operation.Step {
			st := state(inArchive(0, 0))
			st.ClaimedBy = "worker-b"
			return m.Resume(st, operation.Delivery{Request: &req}, t0)
		}, operation.Retry, nil},
		{"wake-up after a reset's backoff: archive again", func() operation.Step {
			return m.Resume(waitingArchive, operation.Delivery{Wake: 3}, t0)
		}, operation.Archive, nil},
		{"renewing the claim during a long upload keeps the archive phase", func() operation.Step {
			return m.Reclaim(state(inArchive(0, 0)), t0)
		}, operation.Archive, func(t *testing.T, n *operation.State) {
			if !n.ClaimedUntil.Equal(t0.Add(40 * time.Second)) {
				t.Errorf("until %s", n.ClaimedUntil)
			}
		}},
		{"a new link from Azure: archive it", func() operation.Step {
			return m.Answer(relinking, operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{URL: newLink, ExpiryTime: &expiry}}, t0)
		}, operation.Archive, func(t *testing.T, n *operation.State) {
			if n.Archiving.Event.URL != newLink || n.Archiving.NeedLink || n.Archiving.Relinks != 1 || n.AzureCalls != 3 || n.Phase != operation.PhaseArchiving {
				t.Errorf("%+v %+v", n, n.Archiving)
			}
		}},
		{"the new link's call is refused: completed with the old link and link_expired", func() operation.Step {
			return m.Answer(relinking, operation.Answer{Outcome: operation.Refused, Status: 400, Azure: &messages.AzureError{Status: 400}, Error: "azure answered 400"}, t0)
		}, operation.Publish, func(t *testing.T, n *operation.State) {
			c := n.Completed
			if n.Failed != nil || c == nil || c.URL != link || c.Archive.Error.Code != messages.ArchiveLinkExpired || !strings.Contains(c.Archive.Error.Message, "400") {
				t.Errorf("%+v failed %+v", c, n.Failed)
			}
		}},
		{"handling keeps failing while archiving: completed with internal_error, the link kept", func() operation.Step {
			st := state(inArchive(0, 0))
			return m.Abandon(&st, nil, "handling failed 10 times", operation.Trace{}, t0)
		}, operation.Publish, func(t *testing.T, n *operation.State) {
			c := n.Completed
			if c == nil || c.URL != link || c.Archive.Error.Code != messages.ArchiveInternal {
				t.Errorf("%+v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.run()
			if s.Action != tc.action {
				t.Fatalf("action %v, want %v (next %+v)", s.Action, tc.action, s.Next)
			}
			if tc.check != nil {
				tc.check(t, s.Next)
			}
		})
	}
}

// A cost data report: several files are archived (each, then the
// manifest), and the event gets every file's archive; a report without
// data has nothing to archive; a failed attempt leaves no file's archive.
func TestReportOfSeveralFilesArchives(t *testing.T) {
	expiry := t0.Add(time.Hour)
	files := []messages.ReportFile{{URL: "https://s/1.csv?sig=a", ByteCount: 10, ExpiryTime: &expiry}, {URL: "https://s/2.csv?sig=b", ByteCount: 20, ExpiryTime: &expiry}}
	cost := func() operation.State {
		st := state(claimed(me, "https://management.azure.com/op/1", t0.Add(30*time.Second), 0))
		st.Request.Kind = messages.KindCostDetails
		return st
	}
	m := archiving()
	s := m.Answer(cost(), operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{
		Files: files, ExpiryTime: &expiry, Manifest: &messages.ReportManifest{BlobCount: 2, ByteCount: 30}}}, t0)
	if s.Action != operation.Archive || s.Next.Archiving == nil || len(s.Next.Archiving.Event.Files) != 2 || s.Next.Archiving.Event.Manifest == nil {
		t.Fatalf("several files: action %v, %+v", s.Action, s.Next.Archiving)
	}
	claimedArchive := *s.Next
	stored := []*messages.Archive{{Store: "nats", Name: "cost-details/x/1.csv", Size: 10}, {Store: "nats", Name: "cost-details/x/2.csv", Size: 20}}
	end := m.Archived(claimedArchive, operation.ArchiveAnswer{Outcome: operation.Archived,
		Object: &messages.Archive{Store: "nats", Name: "cost-details/x/manifest.json", Size: 300}, Files: stored}, t0.Add(time.Second))
	c := end.Next.Completed
	if end.Action != operation.Publish || c == nil || c.Archive == nil || c.Archive.Name != "cost-details/x/manifest.json" ||
		c.Files[0].Archive != stored[0] || c.Files[1].Archive != stored[1] {
		t.Fatalf("archived: %v %+v", end.Action, c)
	}
	if claimedArchive.Archiving.Event.Files[0].Archive != nil {
		t.Error("the transition changed the state it was given")
	}
	failed := m.Archived(claimedArchive, operation.ArchiveAnswer{Outcome: operation.ArchiveFailed, Code: messages.ArchiveStoreFailed,
		Error: "file 2 of 2: store refused"}, t0.Add(time.Second))
	if c := failed.Next.Completed; c == nil || c.Archive.Error == nil || !strings.Contains(c.Archive.Error.Message, "file 2 of 2") ||
		c.Files[0].Archive != nil || c.Files[0].URL != files[0].URL {
		t.Errorf("failed: %+v", failed.Next.Completed)
	}
	noData := m.Answer(cost(), operation.Answer{Outcome: operation.Done, Status: 200, Result: &operation.Result{NoData: true}}, t0)
	if noData.Action != operation.Publish || noData.Next.Completed == nil || !noData.Next.Completed.NoData || noData.Next.Completed.Archive != nil {
		t.Errorf("no data: %v %+v", noData.Action, noData.Next.Completed)
	}
}
