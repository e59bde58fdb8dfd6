package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// This file carries out a collection's steps (see package operation,
// collection.go): the listed pages' chunks, the children's requests, the
// notices of their ends, and the gathering of their outcomes at the end.

// EndedConsumer is the consumer of the notices that a collection's child
// ended.
const EndedConsumer = "ended"

// endedNotice is the body of a notice on Layout.ChildrenEnded.
type endedNotice struct {
	Collection string `json:"collection"`
	Index      int    `json:"index"`
	ID         string `json:"id"`
	Failed     bool   `json:"failed"`
	// Slot: no child ended; the global window has a slot for the
	// collection (Index is -1).
	Slot bool `json:"slot,omitempty"`
}

// ensureCollections creates the bucket of listed pages and the consumer of
// the children's end notices.
func ensureCollections(ctx context.Context, js jetstream.JetStream, s messages.Layout, c *Options) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.CollectionBucket(),
		Description: "The documents each billing collection listed, one entry per listed page",
		History:     1,
		TTL:         c.StateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", s.CollectionBucket(), err)
	}
	cc := consumerConfig(EndedConsumer, s.ChildrenEnded(), "Notices that a collection's child ended, shared by every worker", c)
	if _, err := js.CreateOrUpdateConsumer(ctx, s.WorkStream(), cc); err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cc.Durable, err)
	}
	return kv, nil
}

// prepare does what a step needs done before its state is stored: a
// listed page's chunk is written, and children are requested. Both are
// safe to repeat.
func (w *Worker) prepare(ctx context.Context, step operation.Step) error {
	if c := step.Chunk; c != nil {
		data, _ := json.Marshal(c.Children)
		if _, err := w.chunks.Put(ctx, c.Key, data); err != nil {
			return fmt.Errorf("store the listed page %s: %w", c.Key, w.m.refusedWrite(ctx, writeCollection, err))
		}
		if c.SkippedKey != "" {
			data, _ := json.Marshal(c.Skipped)
			if _, err := w.chunks.Put(ctx, c.SkippedKey, data); err != nil {
				return fmt.Errorf("store the skipped documents %s: %w", c.SkippedKey, w.m.refusedWrite(ctx, writeCollection, err))
			}
		}
		if err := w.registerScopes(ctx, c.Children); err != nil {
			return err
		}
	}
	if step.Spawn != nil && step.Next != nil {
		return w.spawn(ctx, step.Next, *step.Spawn)
	}
	return nil
}

// chunkCache reads a collection's chunks once each.
type chunkCache struct {
	w     *Worker
	id    string
	pages map[int][]operation.Child
}

func (c *chunkCache) child(ctx context.Context, coll *operation.Collection, i int) (operation.Child, error) {
	page, at, ok := coll.Locate(i)
	if !ok {
		return operation.Child{}, fmt.Errorf("collection %s has no child %d", c.id, i)
	}
	kids, ok := c.pages[page]
	if !ok {
		entry, err := c.w.chunks.Get(ctx, operation.ChunkKey(c.id, page))
		if err != nil {
			return operation.Child{}, fmt.Errorf("read the listed page %d of %s: %w", page, c.id, err)
		}
		if err := json.Unmarshal(entry.Value(), &kids); err != nil {
			return operation.Child{}, fmt.Errorf("%w: listed page %d of %s: %w", errBadState, page, c.id, err)
		}
		if c.pages == nil {
			c.pages = map[int][]operation.Child{}
		}
		c.pages[page] = kids
	}
	if at >= len(kids) {
		return operation.Child{}, fmt.Errorf("%w: listed page %d of %s has %d documents, not %d", errBadState, page, c.id, len(kids), at+1)
	}
	return kids[at], nil
}

// spawn publishes the requests of the children r of collection st, with
// their ids as message ids: a child published twice (after a crash) is
// dropped by the stream, or found stored by the worker, never made twice.
func (w *Worker) spawn(ctx context.Context, st *operation.State, r operation.Range) error {
	cache := chunkCache{w: w, id: st.Request.ID}
	ctx = withStoredTrace(ctx, st)
	for i := r.From; i < r.To; i++ {
		kid, err := cache.child(ctx, st.Collection, i)
		if err != nil {
			return err
		}
		if kid.Invalid != "" || kid.Skip != "" {
			continue // ended from the start: nothing to request
		}
		req := operation.ChildRequest(st.Request, i, kid)
		m := nats.NewMsg(w.subj.Request(req.Kind))
		m.Data, _ = json.Marshal(req)
		telemetry.Inject(ctx, m.Header)
		if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID(messages.DedupID(req))); err != nil {
			return fmt.Errorf("request child %d of %s: %w", i, st.Request.ID, w.m.refusedWrite(ctx, writeRequest, err))
		}
	}
	return nil
}

// notifyEnded tells the collection of req (a child that ended) that it
// did; once per child within the duplicate window, and counted once
// however often it is told.
func (w *Worker) notifyEnded(ctx context.Context, req messages.Request, failed bool) error {
	c := req.Collection
	body, _ := json.Marshal(endedNotice{Collection: c.ID, Index: c.Index, ID: req.ID, Failed: failed})
	m := nats.NewMsg(w.subj.ChildrenEnded())
	m.Data = body
	telemetry.Inject(ctx, m.Header)
	if _, err := w.js.PublishMsg(ctx, m, jetstream.WithMsgID("ended."+req.ID)); err != nil {
		return fmt.Errorf("tell collection %s that %s ended: %w", c.ID, req.ID, w.m.refusedWrite(ctx, writeEnded, err))
	}
	return nil
}

// maxEndedConflicts bounds how often one notice is counted again after
// finding the collection's state changed under it (other children ending
// at the same time), before it comes back later.
const maxEndedConflicts = 20

// handleEnded takes the notice that a collection's child ended.
func (w *Worker) handleEnded(ctx context.Context, msg jetstream.Msg) error {
	ctx, span := w.startProcess(ctx, msg, EndedConsumer)
	defer span.End()
	var err error
	for range maxEndedConflicts {
		if err = w.countEnded(ctx, msg); !errors.Is(err, errConflict) {
			return err
		}
	}
	return err
}

func (w *Worker) countEnded(ctx context.Context, msg jetstream.Msg) error {
	var n endedNotice
	if err := json.Unmarshal(msg.Data(), &n); err != nil || !messages.ValidID(n.Collection) {
		w.log.ErrorContext(ctx, "dropping an unreadable notice", "subject", msg.Subject(), "error", err)
		_ = w.settle(msg, w.machine.Stray(false))
		return nil
	}
	log := w.log.With("request_id", n.Collection, "child", n.ID)
	entry, err := w.kv.Get(ctx, n.Collection)
	if n.Slot {
		// A slot notice: the collection asks the window again (one that
		// is gone gives back what it held).
		var st operation.State
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			st.Request.ID = n.Collection
		case err != nil:
			return fmt.Errorf("load state: %w", err)
		default:
			if st, err = decode(entry); err != nil {
				return err
			}
			rev = entry.Revision()
		}
		d := operation.Delivery{Slot: true}
		return w.carry(ctx, msg, st, w.machine.Resume(st, d, w.now()), rev, d, log)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		log.WarnContext(ctx, "notice for a collection with no state (expired?)")
		_ = w.settle(msg, w.machine.Stray(true))
		return nil
	case err != nil:
		return fmt.Errorf("load state: %w", err)
	}
	st, err := decode(entry)
	if err != nil {
		return err
	}
	d := operation.Delivery{Child: &operation.ChildNotice{Index: n.Index, Failed: n.Failed, ID: n.ID}}
	if st.Collection != nil && n.Index >= 0 && n.Index < st.Collection.Total {
		// The document listed at that place, for the machine to check that
		// the notice is from the child made for it.
		cache := chunkCache{w: w, id: n.Collection}
		kid, err := cache.child(ctx, st.Collection, n.Index)
		if err != nil {
			return err
		}
		d.Child.Listed = &kid
	}
	return w.carry(ctx, msg, st, w.machine.Resume(st, d, w.now()), entry.Revision(), d, log)
}

// gather reads the outcome of every child of collection st, and the
// listed documents it skipped, for its finish.
func (w *Worker) gather(ctx context.Context, st *operation.State) ([]operation.ChildEnd, []operation.Skipped, error) {
	coll := st.Collection
	var skipped []operation.Skipped
	for page, n := range coll.Skipped {
		if n == 0 {
			continue
		}
		entry, err := w.chunks.Get(ctx, operation.SkippedKey(st.Request.ID, page))
		if err != nil {
			return nil, nil, fmt.Errorf("read the skipped documents of page %d of %s: %w", page, st.Request.ID, err)
		}
		var more []operation.Skipped
		if err := json.Unmarshal(entry.Value(), &more); err != nil {
			return nil, nil, fmt.Errorf("%w: skipped documents of page %d of %s: %w", errBadState, page, st.Request.ID, err)
		}
		skipped = append(skipped, more...)
	}
	cache := chunkCache{w: w, id: st.Request.ID}
	ends := make([]operation.ChildEnd, coll.Total)
	for i := range ends {
		kid, err := cache.child(ctx, coll, i)
		if err != nil {
			return nil, nil, err
		}
		ends[i].Child = kid
		if kid.Invalid != "" || kid.Skip != "" {
			continue
		}
		entry, err := w.kv.Get(ctx, operation.ChildRequest(st.Request, i, kid).ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return nil, nil, fmt.Errorf("read child %d: %w", i, err)
		}
		cst, err := decode(entry)
		if err != nil {
			continue // an unusable state: reported as not found
		}
		ends[i].Completed, ends[i].Failed, ends[i].Request = cst.Completed, cst.Failed, &cst.Request
	}
	return ends, skipped, nil
}
