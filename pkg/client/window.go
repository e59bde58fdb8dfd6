package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
)

// CollectionsWindow is the global window of collections' children, as
// stored: the slots in use (children in flight of every collection) and
// the collections waiting for one.
type CollectionsWindow struct {
	InUse   int `json:"inUse"`
	Waiting int `json:"waiting"`
}

// CollectionsWindow reads the global window (zero when no collection has
// used it yet).
func (c *Client) CollectionsWindow(ctx context.Context) (CollectionsWindow, error) {
	kv, err := c.js.KeyValue(ctx, c.l.CollectionBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return CollectionsWindow{}, nil
	} else if err != nil {
		return CollectionsWindow{}, fmt.Errorf("collections bucket %s: %w", c.l.CollectionBucket(), err)
	}
	entry, err := kv.Get(ctx, operation.SlotsKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return CollectionsWindow{}, nil
	} else if err != nil {
		return CollectionsWindow{}, fmt.Errorf("read the collections' window: %w", err)
	}
	var s operation.Slots
	if err := json.Unmarshal(entry.Value(), &s); err != nil {
		return CollectionsWindow{}, fmt.Errorf("read the collections' window: %w", err)
	}
	return CollectionsWindow{InUse: s.InUse(), Waiting: len(s.Waiting)}, nil
}
