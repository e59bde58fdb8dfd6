package coverage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/coverage"
	"github.com/azbilling/worker/internal/natstest"
)

// BenchmarkLoadAndGrid reads a bucket of 500 scopes with a year of records
// each (6,500 entries) and draws the grid: what enqueue coverage and the
// Coverage page do; LoadMonth is what the gauge reads once a minute.
func BenchmarkLoadAndGrid(b *testing.B) {
	js := natstest.JetStream(b)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_coverage"})
	if err != nil {
		b.Fatal(err)
	}
	st := coverage.Store{KV: kv}
	months := coverage.Months("2026-01-01", "2026-12-31")
	t0 := time.Date(2027, 1, 10, 0, 0, 0, 0, time.UTC)
	for i := range 500 {
		sc := coverage.Scope{Kind: coverage.ScopeAccount, ID: fmt.Sprintf("%08d", 10000000+i), Name: "scope"}
		if err := st.PutScope(ctx, sc); err != nil {
			b.Fatal(err)
		}
		var recs []coverage.Record
		for _, m := range months {
			recs = append(recs, coverage.Record{Scope: sc, Month: m, Collection: sc.ID + "-" + m, AcceptedAt: t0, Listed: 10, Archived: 9, Failed: i % 2})
		}
		if err := st.PutRecords(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Load+Grid", func(b *testing.B) {
		for b.Loop() {
			scopes, recs, err := st.Load(ctx)
			if err != nil || len(recs) != 6000 {
				b.Fatal(err, len(recs))
			}
			if rows := coverage.Grid(scopes, recs, months); len(rows) != 500 {
				b.Fatal(len(rows))
			}
		}
	})
	b.Run("LoadMonth+Late", func(b *testing.B) {
		for b.Loop() {
			scopes, recs, err := st.LoadMonth(ctx, "2026-12")
			if err != nil || len(recs) != 500 {
				b.Fatal(err, len(recs))
			}
			coverage.Late(scopes, recs, t0.AddDate(0, 0, 10), 5*24*time.Hour)
		}
	})
}
