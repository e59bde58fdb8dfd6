package coverage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Keys: scope.<profile>.<kind>.<id> for a registered scope, and
// record.<profile>.<kind>.<id>.<YYYY-MM> for a record, each name escaped
// (Escape): an MCA billing account's name (GUID:GUID_YYYY-MM-DD) has
// characters no key may hold.

// Escape makes s a key token: letters, digits and '-' stay; every other
// byte is '_' and two upper-case hex digits; the empty string is "_".
// Different strings never share a token.
func Escape(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

func refKey(r Ref) string { return Escape(r.Profile) + "." + Escape(r.Kind) + "." + Escape(r.ID) }

// ScopeKey is the key of a registered scope.
func ScopeKey(r Ref) string { return "scope." + refKey(r) }

// RecordKey is the key of a scope's record of month.
func RecordKey(r Ref, month string) string { return "record." + refKey(r) + "." + Escape(month) }

// Store keeps scopes and records in a key-value bucket.
type Store struct{ KV jetstream.KeyValue }

// PutScope registers a scope (again: its name and agreement type are
// replaced), so that the grid shows it, never collected until a
// collection of it ends.
func (s Store) PutScope(ctx context.Context, sc Scope) error {
	if err := sc.Check(); err != nil {
		return err
	}
	data, _ := json.Marshal(sc)
	if _, err := s.KV.Put(ctx, ScopeKey(sc.Ref()), data); err != nil {
		return fmt.Errorf("register scope %s %s: %w", sc.Kind, sc.ID, err)
	}
	return nil
}

// ensureScope registers a scope unless it is registered already (whose
// name and agreement type, which a collection does not know, stay).
func (s Store) ensureScope(ctx context.Context, sc Scope) error {
	data, _ := json.Marshal(sc)
	_, err := s.KV.Create(ctx, ScopeKey(sc.Ref()), data)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("register scope %s %s: %w", sc.Kind, sc.ID, err)
	}
	return nil
}

// maxConflicts bounds the compare-and-set retries of one record.
const maxConflicts = 10

// PutRecords registers the records' scope and stores each record, unless
// a record of a collection accepted later is stored for its month (a
// collection that ends after a newer one of the same scope and month
// does not take its place).
func (s Store) PutRecords(ctx context.Context, recs []Record) error {
	for i, r := range recs {
		if i == 0 {
			if err := s.ensureScope(ctx, r.Scope); err != nil {
				return err
			}
		}
		if err := s.putRecord(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (s Store) putRecord(ctx context.Context, r Record) error {
	key := RecordKey(r.Scope.Ref(), r.Month)
	data, _ := json.Marshal(r)
	for range maxConflicts {
		e, err := s.KV.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.KV.Create(ctx, key, data)
		case err != nil:
			return fmt.Errorf("read coverage %s: %w", key, err)
		default:
			var old Record
			if json.Unmarshal(e.Value(), &old) == nil && !r.Newer(old) {
				return nil // a newer collection's record stays
			}
			_, err = s.KV.Update(ctx, key, data, e.Revision())
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("store coverage %s: %w", key, err)
		}
	}
	return fmt.Errorf("store coverage %s: changed under %d attempts", key, maxConflicts)
}

// Load reads every scope and record (one pass over the bucket).
func (s Store) Load(ctx context.Context) ([]Scope, []Record, error) {
	return s.load(ctx, ">")
}

func (s Store) load(ctx context.Context, filters ...string) ([]Scope, []Record, error) {
	w, err := s.KV.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, fmt.Errorf("read coverage: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var scopes []Scope
	var recs []Record
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("read coverage: %w", ctx.Err())
		}
		if e == nil {
			return scopes, recs, nil // every stored entry read
		}
		switch key := e.Key(); {
		case strings.HasPrefix(key, "scope."):
			var sc Scope
			if json.Unmarshal(e.Value(), &sc) == nil {
				scopes = append(scopes, sc)
			}
		case strings.HasPrefix(key, "record."):
			var r Record
			if json.Unmarshal(e.Value(), &r) == nil {
				recs = append(recs, r)
			}
		}
	}
}

// LoadMonth reads every scope and the records of one month only.
func (s Store) LoadMonth(ctx context.Context, month string) ([]Scope, []Record, error) {
	return s.load(ctx, "scope.>", "record.*.*.*."+Escape(month))
}
