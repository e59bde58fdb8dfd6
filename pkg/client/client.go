// Package client is the Go side of the worker's contract for upstream
// systems and tools: submit requests, watch for their events, read an
// operation's stored state, and inspect, replay or delete dead letters.
// cmd/enqueue is built on it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

// Client talks to the worker's streams under one prefix.
type Client struct {
	js jetstream.JetStream
	l  messages.Layout

	mu sync.Mutex
	kv jetstream.KeyValue // the state bucket, once found

	blob BlobOpener // Azure Blob Storage, for Fetch; nil: none
}

// New returns a client on nc for the given subject prefix (empty: the
// default).
func New(nc *nats.Conn, prefix string) (*Client, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Client{js: js, l: messages.NewLayout(prefix)}, nil
}

// Layout returns the names the client uses.
func (c *Client) Layout() messages.Layout { return c.l }

// Submit publishes a request on its kind's subject, with
// messages.DedupID(req) as Nats-Msg-Id. hdr may carry more headers (a
// traceparent). Duplicate is true when the stream had already seen the
// same request within its duplicate window, so this publish was a no-op. A
// request reusing an id with other content is not a duplicate: it reaches
// the worker, which refuses it with id_conflict.
func (c *Client) Submit(ctx context.Context, req messages.Request, hdr nats.Header) (duplicate bool, err error) {
	data, err := json.Marshal(req)
	if err != nil {
		return false, err
	}
	return c.SubmitRaw(ctx, c.l.Request(req.Kind), messages.DedupID(req), data, hdr)
}

// SubmitRaw publishes an encoded request as it is.
func (c *Client) SubmitRaw(ctx context.Context, subject, msgID string, data []byte, hdr nats.Header) (bool, error) {
	m := nats.NewMsg(subject)
	m.Data = data
	for k, v := range hdr {
		m.Header[k] = v
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := c.js.PublishMsg(ctx, m, opts...)
	if err != nil {
		return false, fmt.Errorf("publish request %s: %w", msgID, err)
	}
	return ack.Duplicate, nil
}

// Outcome is one event about a request.
type Outcome struct {
	ID        string
	Completed *messages.Completed
	Failed    *messages.Failed
	// Subject, Header and Data are the event message as published.
	Subject string
	Header  nats.Header
	Data    []byte
}

// decodeOutcome reads an event message.
func decodeOutcome(subject string, hdr nats.Header, data []byte) (Outcome, error) {
	o := Outcome{Subject: subject, Header: hdr, Data: data, ID: hdr.Get(messages.HeaderRequestID)}
	var err error
	switch hdr.Get(messages.HeaderOutcome) {
	case messages.OutcomeCompleted:
		o.Completed = new(messages.Completed)
		err = json.Unmarshal(data, o.Completed)
	case messages.OutcomeFailed:
		o.Failed = new(messages.Failed)
		err = json.Unmarshal(data, o.Failed)
	default:
		err = fmt.Errorf("event on %s has no %s header", subject, messages.HeaderOutcome)
	}
	// The header carries messages.Invalid for an id that breaks the id
	// rule; the body has the id as it was sent.
	switch {
	case err != nil:
	case o.Completed != nil:
		o.ID = o.Completed.ID
	case o.Failed != nil:
		o.ID = o.Failed.ID
	}
	return o, err
}

// Watcher delivers events published after it was created.
type Watcher struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
}

// Watch starts receiving every event published from now on. Create it
// before submitting, so no event is missed.
func (c *Client) Watch(ctx context.Context) (*Watcher, error) {
	cons, err := c.js.OrderedConsumer(ctx, c.l.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{c.l.Events()},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("watch events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("watch events: %w", err)
	}
	return &Watcher{cons: cons, it: it}, nil
}

// Next returns the next event; it stops when ctx is done.
func (w *Watcher) Next(ctx context.Context) (Outcome, error) {
	m, err := w.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return Outcome{}, err
	}
	return decodeOutcome(m.Subject(), m.Headers(), m.Data())
}

// Stop ends the watch.
func (w *Watcher) Stop() { w.it.Stop() }

// Last returns the most recent event about a request, if one is kept.
func (c *Client) Last(ctx context.Context, id string) (Outcome, bool, error) {
	stream, err := c.js.Stream(ctx, c.l.EventsStream())
	if err != nil {
		return Outcome{}, false, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, c.l.EventsFor(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Outcome{}, false, nil
	} else if err != nil {
		return Outcome{}, false, err
	}
	o, err := decodeOutcome(m.Subject, m.Header, m.Data)
	return o, err == nil, err
}

// ErrNoState is returned by Status for a request id with no stored state.
var ErrNoState = errors.New("no stored state for this request id")

// Status returns the stored state of a request's operation.
func (c *Client) Status(ctx context.Context, id string) (Operation, error) {
	st, err := c.state(ctx, id)
	if err != nil {
		return Operation{}, err
	}
	return operationOf(st), nil
}

// state reads and decodes the stored state of request id.
func (c *Client) state(ctx context.Context, id string) (operation.State, error) {
	kv, err := c.bucket(ctx)
	if err != nil {
		return operation.State{}, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return operation.State{}, ErrNoState
	} else if err != nil {
		return operation.State{}, err
	}
	return operation.Decode(e.Value())
}

// Outcome returns the outcome of req's operation from its stored state,
// once the operation has ended: the event the worker published for it (or
// is about to), whenever it ended and whether or not the events stream
// still holds it. A waiter that submits a request whose id may have ended
// before (a resubmission) asks here after submitting, as well as watching
// for new events (Watch, created before submitting). false when the id has
// no state (not yet accepted, rejected as invalid, or expired), when the
// operation has not ended, or when the id holds another request's
// operation (other kind, profile or params): the worker answers req with
// an id_conflict failure event then, a new event.
func (c *Client) Outcome(ctx context.Context, req messages.Request) (Outcome, bool, error) {
	st, err := c.Status(ctx, req.ID)
	if errors.Is(err, ErrNoState) {
		return Outcome{}, false, nil
	} else if err != nil {
		return Outcome{}, false, err
	}
	if !messages.SameOperation(st.Request, req) {
		return Outcome{}, false, nil
	}
	o, ok := c.OutcomeOf(st)
	return o, ok, nil
}

// OutcomeOf returns the event an operation's stored state holds, as the
// worker publishes it (subject, body, the Billing-* and CloudEvents
// headers; traceparent carries the request's trace), or false when the
// operation has not ended.
func (c *Client) OutcomeOf(st Operation) (Outcome, bool) {
	o := Outcome{ID: st.Request.ID, Completed: st.Completed, Failed: st.Failed}
	outcome, ev := messages.OutcomeCompleted, any(st.Completed)
	switch {
	case !st.Phase.Terminal():
		return Outcome{}, false
	case st.Failed != nil:
		outcome, ev, o.Completed = messages.OutcomeFailed, st.Failed, nil
	case st.Completed == nil:
		return Outcome{}, false
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return Outcome{}, false
	}
	o.Subject, o.Data = c.l.Event(outcome, st.Request.Kind, st.Request.ID), data
	o.Header = nats.Header{}
	at := st.UpdatedAt
	if st.Completed != nil {
		at = st.Completed.CompletedAt
	} else if st.Failed != nil {
		at = st.Failed.FailedAt
	}
	for k, v := range c.l.EventHeaders(outcome, st.Request.Kind, st.Request.ID, messages.OutcomeMsgID(st.Request.ID), at) {
		o.Header.Set(k, v)
	}
	if st.TraceParent != "" {
		o.Header.Set("traceparent", st.TraceParent)
		if st.TraceState != "" {
			o.Header.Set("tracestate", st.TraceState)
		}
	}
	return o, true
}

// bucket returns the state bucket, looked up once (a waiter asks for the
// state of every request it sent).
func (c *Client) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv == nil {
		kv, err := c.js.KeyValue(ctx, c.l.StateBucket())
		if err != nil {
			return nil, err
		}
		c.kv = kv
	}
	return c.kv, nil
}

// DeadLetter is one rejected request kept in the dead-letter stream.
type DeadLetter struct {
	Sequence uint64
	Time     time.Time
	Subject  string
	Header   nats.Header
	Data     []byte
	// Code and Error say why it was rejected; OriginalSubject is where it
	// was published.
	Code, Error, OriginalSubject string
}

// DeadLetters lists up to limit dead letters from sequence from on (0: the
// first kept).
func (c *Client) DeadLetters(ctx context.Context, from uint64, limit int) ([]DeadLetter, error) {
	stream, err := c.js.Stream(ctx, c.l.DeadLetterStream())
	if err != nil {
		return nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return nil, nil // FirstSeq is past LastSeq, or both 0 for a new stream
	}
	seq := max(from, info.State.FirstSeq)
	for ; seq <= info.State.LastSeq && len(out) < limit; seq++ {
		dl, err := c.DeadLetter(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		} else if err != nil {
			return out, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// DeadLetter returns the dead letter at seq.
func (c *Client) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	stream, err := c.js.Stream(ctx, c.l.DeadLetterStream())
	if err != nil {
		return DeadLetter{}, err
	}
	m, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	return DeadLetter{
		Sequence: m.Sequence, Time: m.Time, Subject: m.Subject, Header: m.Header, Data: m.Data,
		Code: m.Header.Get(messages.HeaderErrorCode), Error: m.Header.Get(messages.HeaderError),
		OriginalSubject: m.Header.Get(messages.HeaderOrigSubject),
	}, nil
}

// DeadLetterOf returns the dead letter of a failure event's request, when
// one is kept: the worker keeps a copy of every request it rejected (an
// invalid one, or one that failed max-deliver times), and that failure
// event's message id names it (rejected.<sequence in the work stream>).
// ok is false for a failure with no dead letter, or one since deleted.
func (c *Client) DeadLetterOf(ctx context.Context, o Outcome) (dl DeadLetter, ok bool, err error) {
	seq, found := strings.CutPrefix(o.Header.Get(nats.MsgIdHdr), "rejected.")
	n, perr := strconv.ParseUint(seq, 10, 64)
	if o.Failed == nil || !found || perr != nil {
		return DeadLetter{}, false, nil
	}
	stream, err := c.js.Stream(ctx, c.l.DeadLetterStream())
	if err != nil {
		return DeadLetter{}, false, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, c.l.DeadLetter(o.Failed.Kind, n))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, false, nil
	} else if err != nil {
		return DeadLetter{}, false, err
	}
	return DeadLetter{
		Sequence: m.Sequence, Time: m.Time, Subject: m.Subject, Header: m.Header, Data: m.Data,
		Code: m.Header.Get(messages.HeaderErrorCode), Error: m.Header.Get(messages.HeaderError),
		OriginalSubject: m.Header.Get(messages.HeaderOrigSubject),
	}, true, nil
}

// Replay submits a dead letter again on its original subject, with its
// original headers, and with data instead of its payload when data is not
// nil (a corrected request). The dead letter is kept; delete it with
// DeleteDeadLetter. A schedule's fire is not replayed (an error says
// how its periods are started).
func (c *Client) Replay(ctx context.Context, seq uint64, data []byte) error {
	dl, err := c.DeadLetter(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	if c.l.IsScheduleFire(dl.OriginalSubject) {
		id := dl.OriginalSubject[strings.LastIndexByte(dl.OriginalSubject, '.')+1:]
		return fmt.Errorf("dead letter %d is a fire of schedule %s, not a request: its periods are started by the schedule's next fire; to start one now, enqueue schedule run %s [--period P]", seq, id, id)
	}
	hdr := nats.Header{}
	for k, v := range dl.Header {
		if strings.HasPrefix(k, "Billing-") || strings.HasPrefix(k, "Nats-") {
			continue
		}
		hdr[k] = v
	}
	if data == nil {
		data = dl.Data
	}
	subject := dl.OriginalSubject
	if subject == "" || !strings.HasPrefix(subject, c.l.Prefix+".requests.") {
		subject = c.l.Request(messages.Invalid)
	}
	// A message id of its own: the original id may still be inside the
	// duplicate window.
	msgID := "replay." + strconv.FormatUint(seq, 10) + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, err = c.SubmitRaw(ctx, subject, msgID, data, hdr)
	return err
}

// DeleteDeadLetter removes one dead letter.
func (c *Client) DeleteDeadLetter(ctx context.Context, seq uint64) error {
	stream, err := c.js.Stream(ctx, c.l.DeadLetterStream())
	if err != nil {
		return err
	}
	return stream.DeleteMsg(ctx, seq)
}
