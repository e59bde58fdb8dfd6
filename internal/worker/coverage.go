package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// This file keeps coverage (package coverage): when a collection ends, a
// record per month of its period goes into the coverage bucket (after its
// event: a crash in between writes it on the redelivery), and its scope is
// registered; a gauge counts the known scopes whose due month is not
// complete.

// coverageRefresh is how often the coverage gauge reads the bucket again
// (a scrape in between reports what it read last).
const coverageRefresh = time.Minute

var attrCoverageStatus = attribute.Key("billing.coverage.status")

// coverageSide is the worker's side of coverage.
type coverageSide struct {
	store coverage.Store
	grace time.Duration
	mu    sync.Mutex
	read  time.Time // when the gauge last read the bucket
	late  map[coverage.Status]int
}

// ensureCoverage creates the coverage bucket.
func ensureCoverage(ctx context.Context, js jetstream.JetStream, s messages.Layout, c *Options) (*coverageSide, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.CoverageBucket(),
		Description: "Coverage: the billing scopes known, and per scope and month what its latest collection found",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.CoverageBucket(), err)
	}
	return &coverageSide{store: coverage.Store{KV: kv}, grace: c.CoverageGrace}, nil
}

// recordCoverage stores the coverage records of a collection that ended.
func (w *Worker) recordCoverage(ctx context.Context, st *operation.State) error {
	if w.cov == nil || st.Request.Kind != messages.KindCollection || st.Request.Validate() != nil {
		return nil
	}
	recs := coverage.Records(st.Request, st.Completed, st.Failed)
	if err := w.cov.store.PutRecords(ctx, recs); err != nil {
		return fmt.Errorf("coverage of %s: %w", st.Request.ID, w.m.refusedWrite(ctx, writeCollection, err))
	}
	return nil
}

// registerScopes makes the scopes an estate discovered on a page known to
// coverage (those it collects; a skipped one has no documents of its own),
// so that a scope never collected shows as such. Safe to repeat.
func (w *Worker) registerScopes(ctx context.Context, kids []operation.Child) error {
	if w.cov == nil {
		return nil
	}
	for _, k := range kids {
		if k.Scope == nil || k.Skip != "" || k.Invalid != "" {
			continue
		}
		sc := coverage.Scope{Profile: k.Scope.Profile, Kind: k.Scope.Kind, ID: k.Scope.ID, Name: k.Scope.Name, AgreementType: k.Scope.AgreementType}
		if err := w.cov.store.PutScope(ctx, sc); err != nil {
			return fmt.Errorf("estate's scopes: %w", w.m.refusedWrite(ctx, writeCollection, err))
		}
	}
	return nil
}

// observeCoverage registers billing.coverage.late: the known scopes whose
// due month (the latest month that ended coverage-grace ago) is not
// complete, by status.
func (w *Worker) observeCoverage() error {
	late, err := w.m.meter.Int64ObservableGauge("billing.coverage.late",
		metric.WithDescription("Known billing scopes whose latest month past coverage-grace is not complete, by status (partial, failed, never_collected)."),
		metric.WithUnit("{scope}"))
	if err != nil {
		return err
	}
	_, err = w.m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		counts := w.cov.lateNow(ctx, w.now())
		for _, s := range []coverage.Status{coverage.Partial, coverage.Failed, coverage.Never} {
			o.ObserveInt64(late, int64(counts[s]), metric.WithAttributes(attrCoverageStatus.String(string(s))))
		}
		return nil
	}, late)
	return err
}

// lateNow is the late counts, read again when the last read is older than
// coverageRefresh; a failed read keeps the last counts.
func (c *coverageSide) lateNow(ctx context.Context, now time.Time) map[coverage.Status]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.late != nil && now.Sub(c.read) < coverageRefresh {
		return c.late
	}
	month := coverage.DueMonth(now, c.grace)
	scopes, recs, err := c.store.LoadMonth(ctx, month)
	if err == nil {
		_, c.late = coverage.Late(scopes, recs, now, c.grace)
		c.read = now
	}
	return c.late
}
