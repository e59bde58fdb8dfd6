package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
)

// errConflict: the operation's stored state changed under this worker (or
// the entry it meant to create already exists). It is never taken as proof
// that another worker owns the operation: the caller decides again from
// the entry that is stored now.
var errConflict = errors.New("the operation's state changed under this worker")

// errBadState: a stored state that does not decode, or whose version this
// worker does not know.
var errBadState = errors.New("stored state is unusable")

// Timings of the store's retries: a write is retried for up to ack-wait
// (after that the message comes back anyway; an answer of Azure's that the
// store refuses for lack of storage is retried until the deadline, its
// message kept: putKept), starting at storeRetryFirst
// and backing off to storeRetryMax between attempts.
const (
	storeRetryFirst = 100 * time.Millisecond
	storeRetryMax   = 2 * time.Second
)

// put writes st under its request id: over revision rev, or as a new entry
// when rev is 0, and returns the new revision.
//
// A write whose reply was lost (NATS went away, the request timed out) may
// still have been applied: the client keeps it in its reconnect buffer and
// sends it when the server is back. So after any failure put reads the
// entry back: a stored value equal to its own is its own write; the old
// revision still stored means the write did not land, and it is tried
// again; anything else is errConflict, returned with the entry found
// (nil if the entry is gone). Other failures are retried for up to
// ack-wait.
func (w *Worker) put(ctx context.Context, st *operation.State, rev uint64) (uint64, jetstream.KeyValueEntry, error) {
	return w.putKept(ctx, st, rev, nil)
}

// putKept is put for a state that holds an answer of Azure's, which a
// redelivery could only get by calling Azure again: while the store
// refuses the write for lack of storage (10023), keep (which keeps the
// message from being redelivered) is called before each new try, and the
// tries go on past ack-wait, until the operation's deadline. A claim and
// the answer's state differ in size: a nearly full store can take the
// first and refuse the second, and handing the message back would then
// call Azure again on every redelivery.
func (w *Worker) putKept(ctx context.Context, st *operation.State, rev uint64, keep func()) (uint64, jetstream.KeyValueEntry, error) {
	key, value := st.Request.ID, operation.Encode(st)
	var found jetstream.KeyValueEntry
	start := time.Now()
	write := func() (uint64, error) {
		var next uint64
		var err error
		if rev == 0 {
			next, err = w.kv.Create(ctx, key, value)
		} else {
			next, err = w.kv.Update(ctx, key, value, rev)
		}
		if err == nil {
			return next, nil
		}
		_ = w.m.refusedWrite(ctx, writeState, err)
		entry, gerr := w.kv.Get(ctx, key)
		switch {
		case gerr == nil && bytes.Equal(entry.Value(), value):
			return entry.Revision(), nil // our own write, applied after all
		case gerr == nil && entry.Revision() != rev:
			found = entry
			return 0, backoff.Permanent(errConflict)
		case errors.Is(gerr, jetstream.ErrKeyNotFound) && rev != 0:
			return 0, backoff.Permanent(errConflict) // the entry is gone
		}
		switch {
		case keep != nil && storeFull(err) && w.now().Before(st.Deadline):
			keep() // the answer is kept, and so is the message
		case time.Since(start) >= w.cfg.AckWait:
			return 0, backoff.Permanent(err) // the message comes back anyway
		}
		return 0, err // not applied (or not known yet): write again
	}
	policy := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(storeRetryFirst),
		backoff.WithMaxInterval(storeRetryMax),
		backoff.WithMaxElapsedTime(0)) // bounded in write
	next, err := backoff.RetryWithData(write, backoff.WithContext(policy, ctx))
	if err != nil {
		return 0, found, fmt.Errorf("store the state of %s: %w", key, err)
	}
	return next, nil, nil
}

// decode reads a stored state.
func decode(entry jetstream.KeyValueEntry) (operation.State, error) {
	st, err := operation.Decode(entry.Value())
	if err != nil {
		return st, fmt.Errorf("%w: %s: %w", errBadState, entry.Key(), err)
	}
	return st, nil
}
