package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// Child is one child of a collection, as its stored state shows it.
type Child struct {
	Index        int           `json:"index"`
	ID           string        `json:"id"`
	InvoiceName  string        `json:"invoiceName"`
	DocumentName string        `json:"documentName"`
	DocumentKind string        `json:"documentKind"`
	Kind         messages.Kind `json:"kind"`
	// Phase is the child's phase; empty when it was not requested yet (or
	// its state expired), "invalid" for a document no request could be made
	// for.
	Phase Phase `json:"phase,omitempty"`
	// LastStatus is the HTTP status of its last Azure answer (429 or 503:
	// throttled).
	LastStatus int `json:"lastStatus,omitempty"`
	// Code is a failed child's failure code.
	Code messages.Code `json:"code,omitempty"`
}

// Throttled reports whether the child is waiting after Azure throttled it.
func (c Child) Throttled() bool {
	return c.Phase == PhaseWaiting && (c.LastStatus == 429 || c.LastStatus == 503)
}

// Progress counts a collection's children.
type Progress struct {
	// Documents is the number of documents listed so far (final once the
	// phase is collecting or later).
	Documents int `json:"documents"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	// InFlight children were requested and have not ended; Waiting of them
	// wait on Azure (a 202, or a throttle), Throttled after a 429 or 503.
	InFlight  int `json:"inFlight"`
	Waiting   int `json:"waiting"`
	Throttled int `json:"throttled"`
}

// CollectionView is a collection's stored state and children.
type CollectionView struct {
	State    Operation `json:"state"`
	Progress Progress  `json:"progress"`
	// Children lists the children read: every one (Collection with all),
	// or those in flight.
	Children []Child `json:"children"`
}

// ErrNotCollection is returned by Collection for an id whose operation is
// not a collection.
var ErrNotCollection = errors.New("not a collection")

// Collection reads collection id: its state and, with all, every child's
// state (one read per child); without, only the children in flight (for a
// progress display: at most the collection window). A collection that has
// ended holds its children in its event, Completed.Collected.
func (c *Client) Collection(ctx context.Context, id string, all bool) (CollectionView, error) {
	st, err := c.state(ctx, id)
	if err != nil {
		return CollectionView{}, err
	}
	if st.Request.Kind != messages.KindCollection {
		return CollectionView{}, fmt.Errorf("%s: %w (kind %s)", id, ErrNotCollection, st.Request.Kind)
	}
	v := CollectionView{State: operationOf(st), Children: []Child{}}
	coll := st.Collection
	if coll == nil {
		if sum := collected(st); sum != nil {
			v.Progress = Progress{Documents: sum.Documents, Completed: sum.Completed, Failed: sum.Failed}
			for _, o := range sum.Children {
				ch := Child{Index: -1, ID: o.ID, InvoiceName: o.InvoiceName, DocumentName: o.DocumentName, DocumentKind: o.DocumentKind,
					Kind: o.Kind, Phase: PhaseCompleted, Code: o.Code}
				if o.Outcome == messages.OutcomeFailed {
					ch.Phase = PhaseFailed
				}
				v.Children = append(v.Children, ch)
			}
		}
		return v, nil
	}
	v.Progress = Progress{Documents: coll.Total, Completed: coll.Completed, Failed: coll.Failed, InFlight: coll.InFlight()}
	kv, err := c.bucket(ctx)
	if err != nil {
		return v, err
	}
	chunks, err := c.js.KeyValue(ctx, c.l.CollectionBucket())
	if err != nil {
		return v, err
	}
	index := 0
	for page, n := range coll.Pages {
		if !all && index >= coll.Spawned {
			break // the children in flight are all below Spawned
		}
		if !all && !anyInFlight(coll, index, min(index+n, coll.Spawned)) {
			index += n // nothing in flight on this page: not read
			continue
		}
		entry, err := chunks.Get(ctx, operation.ChunkKey(id, page))
		if err != nil {
			return v, fmt.Errorf("listed page %d: %w", page, err)
		}
		var kids []operation.Child
		if err := json.Unmarshal(entry.Value(), &kids); err != nil {
			return v, fmt.Errorf("listed page %d: %w", page, err)
		}
		for _, k := range kids {
			i := index
			index++
			req := operation.ChildRequest(st.Request, i, k)
			ch := Child{Index: i, ID: req.ID, InvoiceName: k.Invoice, DocumentName: k.Document, DocumentKind: k.DocKind, Kind: req.Kind}
			inFlight := i < coll.Spawned
			switch {
			case k.Invalid != "":
				ch.Phase, ch.Code = PhaseInvalid, messages.CodeInvalidRequest
			case all || inFlight:
				e, err := kv.Get(ctx, req.ID)
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					break
				} else if err != nil {
					return v, err
				}
				cst, err := operation.Decode(e.Value())
				if err != nil {
					break
				}
				ch.Phase, ch.LastStatus = Phase(cst.Phase), cst.LastStatus
				if cst.Failed != nil {
					ch.Code = cst.Failed.Code
				}
			}
			if !all && (!inFlight || ch.Phase.Terminal() || ch.Phase == PhaseInvalid) {
				continue
			}
			if ch.Phase == PhaseWaiting {
				v.Progress.Waiting++
			}
			if ch.Throttled() {
				v.Progress.Throttled++
			}
			v.Children = append(v.Children, ch)
		}
	}
	return v, nil
}

// anyInFlight reports whether a child in [from, to) was requested and has
// not ended.
func anyInFlight(coll *operation.Collection, from, to int) bool {
	for i := from; i < to; i++ {
		if !coll.HasEnded(i) {
			return true
		}
	}
	return false
}

func collected(st operation.State) *messages.CollectionSummary {
	if st.Completed != nil {
		return st.Completed.Collected
	}
	return nil
}
