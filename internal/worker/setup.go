package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/messages"
)

// Consumer names on the work stream.
const (
	RequestsConsumer = "requests"
	PollsConsumer    = "polls"
)

// Ensure creates or updates the streams, the bucket and the two durable
// consumers, so that any number of workers can start at once.
func ensure(ctx context.Context, js jetstream.JetStream, s messages.Layout, c *Options) (jetstream.KeyValue, error) {
	streams := []jetstream.StreamConfig{{
		Name:        s.WorkStream(),
		Description: "Billing download requests, pending polls and their schedules",
		Subjects:    []string{s.Requests(), s.Internal()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		// The server refuses at once, telling the publisher, what the
		// worker would reject for its size (headers count too).
		MaxMsgSize:        int32(c.MaxRequestBytes),
		AllowMsgSchedules: true,
		AllowRollup:       true,
	}, {
		Name:        s.EventsStream(),
		Description: "Billing download completion and failure events",
		Subjects:    []string{s.Events()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		MaxAge:      c.EventsMaxAge,
		// Guards a quick retry of the publish that ends an operation; a
		// later publish looks the stored event up first (publishOutcome).
		Duplicates: c.DuplicateWindow,
	}, {
		Name:        s.DeadLetterStream(),
		Description: "Rejected billing download requests, kept for inspection and replay",
		Subjects:    []string{s.DeadLetters()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		// Bounded: when full, the oldest dead letters make room (refusing
		// new ones would leave their messages redelivered for ever).
		MaxBytes: c.DeadLetterMaxBytes,
		Discard:  jetstream.DiscardOld,
	}}
	for _, cfg := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			if cfg.MaxBytes > 0 && reservationRefused(err) {
				return nil, fmt.Errorf("stream %s: its bound deadletter-max-bytes (BILLING_DEADLETTER_MAX_BYTES, %d bytes), which the server reserves, "+
					"is more than the storage the server or the account has left: lower deadletter-max-bytes, or give JetStream more storage: %w",
					cfg.Name, cfg.MaxBytes, err)
			}
			return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.StateBucket(),
		Description: "State of every billing download operation, keyed by request id",
		History:     1,
		TTL:         c.StateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.StateBucket(), err)
	}
	for _, cc := range []jetstream.ConsumerConfig{
		consumerConfig(RequestsConsumer, s.Requests(), "Download requests, shared by every worker", c),
		consumerConfig(PollsConsumer, s.Polls(), "Polls that fell due, shared by every worker", c),
	} {
		if _, err := js.CreateOrUpdateConsumer(ctx, s.WorkStream(), cc); err != nil {
			return nil, fmt.Errorf("consumer %s: %w", cc.Durable, err)
		}
	}
	return kv, nil
}

// reservationRefused reports whether err is the server refusing a
// stream whose byte limit it cannot reserve (10047, insufficient storage
// resources available; 10023 from some paths).
func reservationRefused(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == 10047 || api.ErrorCode == insufficientResources)
}

func consumerConfig(name, filter, desc string, c *Options) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   desc,
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		// The worker counts deliveries itself and dead-letters a message
		// that keeps failing, so the server never drops one silently.
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
		Replicas:      c.Replicas,
	}
}

// ensureThrottle creates or updates the shared throttle's bucket, with the
// replicas of the streams; operators' tools read it even while the
// throttle is off.
func ensureThrottle(ctx context.Context, js jetstream.JetStream, s messages.Layout, c *Options) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, throttle.BucketConfig(s, c.Replicas))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.ThrottleBucket(), err)
	}
	return kv, nil
}
