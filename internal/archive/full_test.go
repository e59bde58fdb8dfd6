package archive_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/natstest"
)

// A bucket that is full refuses the put at once, and nothing is visible.
func TestObjectStoreFull(t *testing.T) {
	t.Parallel()
	js := natstest.JetStream(t)
	ctx := context.Background()
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "full", MaxBytes: 300 << 10})
	if err != nil {
		t.Fatal(err)
	}
	s := archive.NewObjectStore(js, obs, "full")
	start := time.Now()
	_, err = s.Put(ctx, "big", archive.Meta{}, bytes.NewReader(content(4<<20, 9)))
	if err == nil || errors.Is(err, archive.ErrExists) {
		t.Fatalf("put into a full bucket: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	t.Logf("refused in %s: %v", time.Since(start), err)
	if _, _, err := s.Open(ctx, "big"); !errors.Is(err, archive.ErrNotFound) {
		t.Errorf("open: %v", err)
	}
	// The chunks sent were purged: the bucket takes a small object.
	if _, err := s.Put(ctx, "small", archive.Meta{}, bytes.NewReader(content(100<<10, 1))); err != nil {
		t.Errorf("small put after the refusal: %v", err)
	}
}
