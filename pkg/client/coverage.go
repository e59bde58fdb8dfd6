package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/pkg/messages"
)

// ErrNoCoverage is matched when the coverage bucket does not exist yet (a
// worker creates it when it starts).
var ErrNoCoverage = errors.New("no coverage bucket")

// The statuses of a coverage cell.
const (
	CoverageComplete = "complete"        // collected, no document failed
	CoveragePartial  = "partial"         // some documents archived, some failed
	CoverageFailed   = "failed"          // the collection failed, or every document did
	CoverageNever    = "never_collected" // a known scope with no collection of the month
)

// CoverageScope is a billing scope coverage knows of: a billing account
// or a billing subscription, collected with a credential profile.
type CoverageScope struct {
	Profile string `json:"profile,omitempty"`
	// Kind is "account" or "subscription"; ID the billing account's name
	// or the subscription's id.
	Kind          string `json:"kind"`
	ID            string `json:"id"`
	Name          string `json:"name,omitempty"`
	AgreementType string `json:"agreementType,omitempty"`
}

// CoverageCell is one scope's month.
type CoverageCell struct {
	// Month is YYYY-MM; Status one of the Coverage* statuses.
	Month  string `json:"month"`
	Status string `json:"status"`
	// The rest is empty when never collected: the collection whose
	// record it is, when it ended, its failure (when the collection itself
	// failed), and the month's documents: listed, archived, failed and
	// skipped (by reason), with the first failed ones.
	Collection  string            `json:"collection,omitempty"`
	CollectedAt time.Time         `json:"collectedAt,omitzero"`
	Code        messages.Code     `json:"code,omitempty"`
	Message     string            `json:"message,omitempty"`
	Listed      int               `json:"listed"`
	Archived    int               `json:"archived"`
	Failed      int               `json:"failed"`
	Skipped     int               `json:"skipped"`
	Reasons     map[string]int    `json:"reasons,omitempty"`
	Failures    []CoverageFailure `json:"failures,omitempty"`
}

// CoverageFailure is a failed document of a month: the child request that
// fetched it (its own failure event says more).
type CoverageFailure struct {
	Child        string        `json:"child"`
	InvoiceName  string        `json:"invoiceName"`
	DocumentName string        `json:"documentName,omitempty"`
	Code         messages.Code `json:"code"`
}

// CoverageRow is one scope's months.
type CoverageRow struct {
	Scope CoverageScope  `json:"scope"`
	Cells []CoverageCell `json:"cells"`
}

// CoverageGrid is the known scopes by months, from its first month to its
// last.
type CoverageGrid struct {
	Months []string      `json:"months"`
	Rows   []CoverageRow `json:"rows"`
	// Totals counts the cells by status.
	Totals map[string]int `json:"totals"`
}

func (c *Client) coverage(ctx context.Context) (coverage.Store, error) {
	kv, err := c.js.KeyValue(ctx, c.l.CoverageBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return coverage.Store{}, fmt.Errorf("%w: bucket %s does not exist; a worker creates it when it starts", ErrNoCoverage, c.l.CoverageBucket())
	}
	if err != nil {
		return coverage.Store{}, fmt.Errorf("coverage bucket %s: %w", c.l.CoverageBucket(), err)
	}
	return coverage.Store{KV: kv}, nil
}

// Coverage draws the grid of every known scope (registered, or collected
// at least once) by the months from to to (YYYY-MM, at most 120).
func (c *Client) Coverage(ctx context.Context, from, to string) (CoverageGrid, error) {
	months, err := coverage.ParseRange(from, to)
	if err != nil {
		return CoverageGrid{}, err
	}
	st, err := c.coverage(ctx)
	if err != nil {
		return CoverageGrid{}, err
	}
	scopes, recs, err := st.Load(ctx)
	if err != nil {
		return CoverageGrid{}, err
	}
	g := CoverageGrid{Months: months, Rows: []CoverageRow{}, Totals: map[string]int{}}
	for _, s := range coverage.Statuses {
		g.Totals[string(s)] = 0
	}
	for _, row := range coverage.Grid(scopes, recs, months) {
		s := row.Scope
		r := CoverageRow{Scope: CoverageScope{Profile: s.Profile, Kind: s.Kind, ID: s.ID, Name: s.Name, AgreementType: s.AgreementType}}
		for _, cell := range row.Cells {
			out := CoverageCell{Month: cell.Month, Status: string(cell.Status)}
			if rec := cell.Record; rec != nil {
				out.Collection, out.CollectedAt, out.Code, out.Message = rec.Collection, rec.CollectedAt, rec.Code, rec.Message
				out.Listed, out.Archived, out.Failed, out.Skipped, out.Reasons = rec.Listed, rec.Archived, rec.Failed, rec.Skipped, rec.Reasons
				for _, f := range rec.Failures {
					out.Failures = append(out.Failures, CoverageFailure{Child: f.Child, InvoiceName: f.InvoiceName, DocumentName: f.DocumentName, Code: f.Code})
				}
			}
			g.Totals[out.Status]++
			r.Cells = append(r.Cells, out)
		}
		g.Rows = append(g.Rows, r)
	}
	return g, nil
}

// PutScope registers a billing scope, so that the grid shows it (never
// collected until a collection of it ends); registering it again
// replaces its name and agreement type.
func (c *Client) PutScope(ctx context.Context, s CoverageScope) error {
	st, err := c.coverage(ctx)
	if err != nil {
		return err
	}
	return st.PutScope(ctx, coverage.Scope{Profile: s.Profile, Kind: s.Kind, ID: s.ID, Name: s.Name, AgreementType: s.AgreementType})
}
