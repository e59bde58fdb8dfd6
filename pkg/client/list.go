package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
)

// States returns the stored states of up to limit operations (limit <= 0:
// no bound), in no particular order, read with one watcher on the state
// bucket's latest values (no history, no deleted keys). complete is false
// when the bucket held more than limit. A bucket that does not exist yet
// (no worker has run) holds no operation: nil, true, nil. A stored state
// that does not decode (a newer worker's version) is skipped and counted
// in skipped.
func (c *Client) States(ctx context.Context, limit int) (states []Operation, skipped int, complete bool, err error) {
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
	defer func() { _ = w.Stop() }()
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
			states = append(states, operationOf(st))
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

// ErrStopScan, returned by a ScanStates callback, ends the scan early
// without an error.
var ErrStopScan = errors.New("client: stop the scan")

// scanBatch is how many stored states ScanStates has in flight at most.
const scanBatch = 256

// ScanStates calls fn with every stored operation state, one at a time,
// in no particular order: the state bucket's latest value of each key,
// read with an ordered pull consumer that fetches scanBatch at a time, so
// a caller that keeps what it needs (a page, counts) reads a bucket of any
// size in bounded memory. A bucket that does not exist yet holds no
// operation. A stored state that does not decode (a newer worker's
// version) is skipped and counted in skipped. An error from fn ends the
// scan and is returned, except ErrStopScan.
func (c *Client) ScanStates(ctx context.Context, fn func(Operation) error) (skipped int, err error) {
	name := "KV_" + c.l.StateBucket()
	stream, err := c.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("state bucket: %w", err)
	}
	if info := stream.CachedInfo(); info != nil && info.State.Msgs == 0 {
		return 0, nil
	}
	cons, err := c.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + c.l.StateBucket() + ".>"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("read states: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return 0, fmt.Errorf("read states: %w", err)
	}
	defer it.Stop()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return 0, nil // emptied since
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return skipped, fmt.Errorf("read states: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return skipped, fmt.Errorf("read states: %w", err)
		}
		// A deleted or purged key leaves a marker with KV-Operation set.
		if m.Headers().Get("KV-Operation") == "" {
			st, err := operation.Decode(m.Data())
			if err != nil {
				skipped++
			} else if err := fn(operationOf(st)); errors.Is(err, ErrStopScan) {
				return skipped, nil
			} else if err != nil {
				return skipped, err
			}
		}
		if md.NumPending == 0 {
			return skipped, nil // every current value seen
		}
	}
}

// ConsumerStat is one durable consumer's backlog on the work stream.
type ConsumerStat struct {
	Name string
	// Pending is the messages not yet delivered; AckPending those
	// delivered and not yet acknowledged (or handed back with a delay);
	// Redelivered those delivered more than once and still unacknowledged;
	// Waiting the pull requests waiting for messages.
	Pending, AckPending, Redelivered, Waiting uint64
}

// StreamStat is one stream's size.
type StreamStat struct {
	Name     string
	Messages uint64
	Bytes    uint64
	// LastSeq counts every message the stream ever took.
	LastSeq  uint64
	LastTime time.Time
}

// Backlog returns the work stream's consumers (the worker's requests and
// polls consumers, and any other) and the size of the work, events and
// dead-letter streams; a stream that does not exist yet is left out.
func (c *Client) Backlog(ctx context.Context) ([]ConsumerStat, []StreamStat, error) {
	var consumers []ConsumerStat
	var streams []StreamStat
	for _, name := range []string{c.l.WorkStream(), c.l.EventsStream(), c.l.DeadLetterStream()} {
		stream, err := c.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		} else if err != nil {
			return nil, nil, err
		}
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, nil, err
		}
		streams = append(streams, StreamStat{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			LastSeq: info.State.LastSeq, LastTime: info.State.LastTime})
		if name != c.l.WorkStream() {
			continue
		}
		lister := stream.ListConsumers(ctx)
		for ci := range lister.Info() {
			consumers = append(consumers, ConsumerStat{Name: ci.Name, Pending: ci.NumPending,
				AckPending: uint64(ci.NumAckPending), Redelivered: uint64(ci.NumRedelivered), Waiting: uint64(ci.NumWaiting)})
		}
		if err := lister.Err(); err != nil {
			return nil, nil, err
		}
	}
	return consumers, streams, nil
}

// DeadLettersSince calls fn with the time of every dead letter kept since
// since, oldest first, reading headers only with an ordered pull consumer
// (scanBatch in flight). A dead-letter stream that does not exist yet
// holds none. An error from fn ends the read and is returned, except
// ErrStopScan.
func (c *Client) DeadLettersSince(ctx context.Context, since time.Time, fn func(time.Time) error) error {
	name := c.l.DeadLetterStream()
	stream, err := c.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if info := stream.CachedInfo(); info != nil && (info.State.Msgs == 0 || info.State.LastTime.Before(since)) {
		return nil
	}
	cons, err := c.js.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since, HeadersOnly: true,
	})
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return fmt.Errorf("read dead letters: %w", err)
	}
	defer it.Stop()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("read dead letters: %w", err)
		}
		if err := fn(md.Timestamp); errors.Is(err, ErrStopScan) {
			return nil
		} else if err != nil {
			return err
		}
		if md.NumPending == 0 {
			return nil
		}
	}
}
