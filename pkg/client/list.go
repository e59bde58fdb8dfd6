package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/pkg/operation"
)

// States returns the stored states of up to limit operations (limit <= 0:
// no bound), in no particular order, read with one watcher on the state
// bucket's latest values (no history, no deleted keys). complete is false
// when the bucket held more than limit. A bucket that does not exist yet
// (no worker has run) holds no operation: nil, true, nil. A stored state
// that does not decode (a newer worker's version) is skipped and counted
// in skipped.
func (c *Client) States(ctx context.Context, limit int) (states []operation.State, skipped int, complete bool, err error) {
	kv, err := c.bucket(ctx)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, 0, true, nil
	} else if err != nil {
		return nil, 0, false, fmt.Errorf("state bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, 0, false, fmt.Errorf("read states: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return states, skipped, false, ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return states, skipped, false, errors.New("read states: the watcher stopped")
			}
			if e == nil {
				return states, skipped, true, nil // every current value seen
			}
			if limit > 0 && len(states)+skipped >= limit {
				return states, skipped, false, nil
			}
			st, err := operation.Decode(e.Value())
			if err != nil {
				skipped++
				continue
			}
			states = append(states, st)
		}
	}
}

// DeadLetterCount returns how many dead letters the dead-letter stream
// keeps: 0 when it is empty or does not exist yet.
func (c *Client) DeadLetterCount(ctx context.Context) (uint64, error) {
	stream, err := c.js.Stream(ctx, c.l.DeadLetterStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
