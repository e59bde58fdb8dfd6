// Package worker is the billing download worker: it takes download requests
// from a JetStream work queue, drives the Azure operation through package
// billing, keeps each operation's state in a JetStream key-value bucket,
// schedules every next poll as a JetStream scheduled message (so a waiting
// operation holds no consumer slot and no goroutine), and publishes one
// completion or failure event per request.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/archive"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/throttle"
	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// instrumentationName names the worker's tracer and meter.
const instrumentationName = "github.com/azbilling/worker/internal/worker"

// Azure is what the worker needs of an Azure client; *billing.Client is
// one.
type Azure interface {
	Start(ctx context.Context, kind messages.Kind, p messages.Params) (*billing.Response, error)
	Poll(ctx context.Context, kind messages.Kind, location string) (*billing.Response, error)
}

var _ Azure = (*billing.Client)(nil)

// Profiles maps credential profile names to Azure clients; the request's
// profile (or Default when it names none) selects one.
type Profiles struct {
	Default string
	Clients map[string]Azure
}

// Worker consumes requests and polls. Create it with New and run it with
// Run.
type Worker struct {
	cfg      Options // with defaults
	subj     messages.Layout
	nc       *nats.Conn
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	chunks   jetstream.KeyValue // the pages collections listed
	cov      *coverageSide      // coverage records of collections
	watch    *watchdog          // the watchdog of wake-ups the server never fired
	sched    *schedules         // recurring schedules; nil when the server cannot hold them
	profiles Profiles
	machine  operation.Machine
	log      *slog.Logger
	now      func() time.Time
	id       string
	tel      *telemetry.Telemetry
	tracer   trace.Tracer
	m        *instruments
	// thr is the shared throttle (nil when it is off); tm its metrics.
	thr *throttle.Throttle
	tm  *throttleInstruments
	// tidyAfter, when set (tests), replaces slotTidyEvery.
	tidyAfter time.Duration
	// archiver stores documents (nil: no archive); download sends its
	// requests.
	archiver *archive.Archiver
	download archive.Doer
	am       *archiveInstruments

	// calls holds the ids of the operations this process is calling Azure
	// for right now.
	calls acting
	// holds keeps the wake-ups that arrived before their poll is due
	// (set by Run).
	holds *holder

	ready    atomic.Bool
	draining atomic.Bool
}

// Option adjusts a Worker; for tests.
type Option func(*Worker)

// WithTelemetry makes the worker trace and measure through t (default:
// telemetry.Noop, which still passes trace context on).
func WithTelemetry(t *telemetry.Telemetry) Option { return func(w *Worker) { w.tel = t } }

// New returns a worker on the NATS connection nc, configured by o (its
// zero fields meaning their defaults).
func New(o Options, nc *nats.Conn, profiles Profiles, log *slog.Logger, opts ...Option) (*Worker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cfg := o.withDefaults()
	if _, ok := profiles.Clients[profiles.Default]; !ok {
		return nil, fmt.Errorf("worker: the default credential profile %q has no client", profiles.Default)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg: cfg, subj: messages.NewLayout(cfg.Prefix), nc: nc, js: js, profiles: profiles,
		log: slog.New(telemetry.LogHandler(log.Handler())), now: time.Now, id: instanceID(),
		tel: telemetry.Noop(),
	}
	for _, o := range opts {
		o(w)
	}
	w.machine = operation.Machine{
		Worker: w.id, ClaimFor: cfg.ClaimDuration(),
		DefaultDeadline: cfg.DefaultDeadline, MaxDeadline: cfg.MaxDeadline,
		MaxBadAnswers: cfg.MaxBadAnswers, MaxUnanswered: cfg.MaxUnanswered,
		MaxDocuments: cfg.MaxDocuments, Window: cfg.CollectionWindow, EstateWindow: cfg.EstateWindow, Slots: cfg.CollectionsInFlight,
		Policy: cfg.Policy, HoldSpread: DefaultHoldSpread, Archive: cfg.Archive.policy(),
		Wake: operation.WakePolicy{Lead: cfg.PollLead, HoldMax: cfg.PollHoldMax},
		Runner: operation.RunnerPolicy{
			CallTimeout: cfg.HTTPTimeout, AuthMargin: billing.AuthFailureMargin, SlotTolerance: slotTolerance,
			MaxDeliver: cfg.MaxDeliver, RedeliverFirst: redeliverFirst, RedeliverMax: redeliverMax, RejectRetry: deadLetterRetry,
		},
	}
	w.tracer = w.tel.TracerProvider.Tracer(instrumentationName)
	if w.m, err = newInstruments(w.tel.MeterProvider); err != nil {
		return nil, fmt.Errorf("worker: metrics: %w", err)
	}
	if w.tm, err = newThrottleInstruments(w.m.meter); err != nil {
		return nil, fmt.Errorf("worker: metrics: %w", err)
	}
	if w.am, err = newArchiveInstruments(w.tel.MeterProvider); err != nil {
		return nil, fmt.Errorf("worker: metrics: %w", err)
	}
	return w, nil
}

func instanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Ready reports whether the worker is connected, its streams exist, and it
// is not draining.
func (w *Worker) Ready() bool {
	return w.ready.Load() && !w.draining.Load() && w.nc.IsConnected()
}

// Run sets up the streams, then handles requests and polls until ctx is
// done. It then stops taking messages, lets in-flight work finish for up to
// DrainTimeout, cancels what is left (its messages are redelivered to other
// workers and resumed from the stored state) and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	// JetStream may not be ready yet (a cluster electing its leader, NATS
	// still starting): keep trying until it is, or until we are stopped.
	setup := backoff.NewExponentialBackOff(backoff.WithInitialInterval(setupRetryFirst), backoff.WithMaxInterval(setupRetryMax), backoff.WithMaxElapsedTime(0))
	var tkv jetstream.KeyValue
	kv, err := backoff.RetryNotifyWithData(func() (jetstream.KeyValue, error) {
		kv, err := ensure(ctx, w.js, w.subj, &w.cfg)
		if err == nil {
			tkv, err = ensureThrottle(ctx, w.js, w.subj, &w.cfg)
		}
		if err == nil {
			w.chunks, err = ensureCollections(ctx, w.js, w.subj, &w.cfg)
		}
		if err == nil {
			w.cov, err = ensureCoverage(ctx, w.js, w.subj, &w.cfg)
		}
		if err == nil {
			err = w.ensureArchive(ctx)
		}
		if err == nil {
			// Schedules are optional: without them (refused, no
			// permission) everything else still runs.
			if serr := w.ensureSchedules(ctx); serr != nil {
				w.log.Warn("recurring schedules are off", "error", serr)
			}
		}
		return kv, err
	}, backoff.WithContext(setup, ctx), func(err error, next time.Duration) {
		w.log.Warn("set up JetStream; retrying", "error", err, "retry_in", next.String())
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before we ever started
		}
		return fmt.Errorf("worker: set up JetStream: %w", err)
	}
	w.kv = kv
	if w.cfg.Throttle.Shared {
		w.thr = throttle.New(tkv, w.cfg.Throttle.Limits)
	}
	w.m.zeroRefused(ctx)
	if err := errors.Join(w.m.observeWaiting(w.js, w.subj), w.m.observeDeadLetters(w.js, w.subj), w.observeCoverage(), w.m.observeSlots(w)); err != nil {
		return fmt.Errorf("worker: metrics: %w", err)
	}
	if w.watch, err = w.newWatchdog(); err != nil {
		return fmt.Errorf("worker: metrics: %w", err)
	}
	// The watchdog of wake-ups runs while Run does.
	watchCtx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() { defer close(watching); w.watchWakeUps(watchCtx, w.watch) }()
	defer func() { stopWatch(); <-watching }()
	// So does the tidying of the collections' window.
	tidying := make(chan struct{})
	go func() { defer close(tidying); w.tidyLoop(watchCtx, w.tidyEvery()) }()
	defer func() { stopWatch(); <-tidying }()

	// Handlers outlive ctx by up to DrainTimeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// A fixed pool of handlers; a delivery waits for a free one, which
	// bounds the work in flight (and the messages buffered by the client).
	type job struct {
		msg    jetstream.Msg
		handle func(context.Context, jetstream.Msg)
	}
	var inflight sync.WaitGroup
	jobs := make(chan job)
	defer close(jobs)
	for range w.cfg.Concurrency {
		go func() {
			for j := range jobs {
				j.handle(work, j.msg)
				inflight.Done()
			}
		}()
	}
	// A wake-up the server fired before its poll is due waits in the
	// holder (hold.go), then goes to the pool.
	w.holds = &holder{
		w: w, stop: ctx, held: w.m.held, poll: w.limited(recovered(w.handlePoll)),
		submit: func(msg jetstream.Msg, handle func(context.Context, jetstream.Msg)) {
			if w.draining.Load() {
				_ = w.settle(msg, w.machine.Elsewhere())
				inflight.Done()
				return
			}
			jobs <- job{msg, handle}
		},
		add: func() { inflight.Add(1) }, done: inflight.Done,
	}
	dispatch := func(name string, handle func(context.Context, jetstream.Msg)) jetstream.MessageHandler {
		return func(msg jetstream.Msg) {
			if w.draining.Load() {
				_ = w.settle(msg, w.machine.Elsewhere()) // another worker takes it at once
				return
			}
			inflight.Add(1)
			if name == PollsConsumer {
				if d, ok := w.holds.arrived(msg); ok {
					w.holds.hold(msg, d, handle)
					return
				}
			}
			jobs <- job{msg, handle}
		}
	}
	var contexts []jetstream.ConsumeContext
	type consumer struct {
		name   string
		handle handler
	}
	consumers := []consumer{{RequestsConsumer, w.handleRequest}, {PollsConsumer, w.handlePoll}, {EndedConsumer, w.handleEnded}}
	if w.sched != nil {
		consumers = append(consumers, consumer{FiresConsumer, w.handleFire})
	}
	for _, c := range consumers {
		cons, err := w.js.Consumer(ctx, w.subj.WorkStream(), c.name)
		if err != nil {
			return fmt.Errorf("worker: consumer %s: %w", c.name, err)
		}
		cc, err := cons.Consume(dispatch(c.name, w.limited(recovered(c.handle))),
			jetstream.PullMaxMessages(w.cfg.Concurrency),
			// nats.go 1.55 can miss a pull when a message is handled while
			// the previous pull is still being sent (jetstream/pull.go:
			// checkPending skips while a fetch is in progress, and nothing
			// retries it); only the missing-heartbeat check pulls again, at
			// twice the heartbeat: 30 s by default, measured at concurrency 1
			// as one stall per ~30,000 requests. This bounds it to 2 s.
			jetstream.PullHeartbeat(pullHeartbeat),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				w.log.Warn("consume", "consumer", c.name, "error", err)
			}))
		if err != nil {
			return fmt.Errorf("worker: consume %s: %w", c.name, err)
		}
		contexts = append(contexts, cc)
	}
	w.ready.Store(true)
	w.log.Info("worker started", "instance", w.id, "work_stream", w.subj.WorkStream(), "concurrency", w.cfg.Concurrency)

	if err := w.waitStop(ctx); err != nil {
		// Nothing can be acknowledged any more: stop at once and let the
		// platform restart the process; the messages come back elsewhere.
		w.draining.Store(true)
		w.log.Error("NATS connection closed for good; stopping", "error", err)
		for _, cc := range contexts {
			cc.Stop()
		}
		// No delivery may reach the handler pool once it is closed.
		for _, cc := range contexts {
			select {
			case <-cc.Closed():
			case <-time.After(closeWait):
			}
		}
		cancelWork()
		inflight.Wait()
		return err
	}
	w.draining.Store(true)
	w.log.Info("draining", "timeout", w.cfg.DrainTimeout.String())
	for _, cc := range contexts {
		cc.Drain()
	}
	for _, cc := range contexts {
		<-cc.Closed()
	}
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn("drain timeout: cancelling in-flight work; it will be resumed elsewhere")
		cancelWork()
		<-done
	}
	w.log.Info("worker stopped")
	return nil
}

// Retry timings of the worker's own failures (not Azure's: those follow
// the operation's policy).
const (
	// setupRetryFirst and setupRetryMax pace the retries of the JetStream
	// set-up at start (a cluster electing its leader).
	setupRetryFirst = 200 * time.Millisecond
	setupRetryMax   = 5 * time.Second
	// redeliverFirst doubles with each delivery of a message whose handling
	// failed (NATS unavailable, a panic), up to redeliverMax.
	redeliverFirst = time.Second
	redeliverMax   = time.Minute
	// deadLetterRetry is the redelivery delay when dead-lettering itself
	// failed.
	deadLetterRetry = 5 * time.Second
	// closeWait bounds the wait for a consumer to stop once the connection
	// has closed.
	closeWait = 5 * time.Second
	// pullHeartbeat is the server's heartbeat on the consumers' pulls; a
	// pull the client missed is made again after two of them.
	pullHeartbeat = time.Second
)

// ErrConnectionClosed is returned by Run when the NATS connection closed
// for good (the client gave up reconnecting, or the server closed it for a
// protocol error): the process should exit so that it is restarted.
var ErrConnectionClosed = errors.New("worker: the NATS connection is closed")

// waitStop returns nil when ctx is done, or ErrConnectionClosed when the
// connection closes first.
func (w *Worker) waitStop(ctx context.Context) error {
	closed := w.nc.StatusChanged(nats.CLOSED)
	defer w.nc.RemoveStatusListener(closed)
	for !w.nc.IsClosed() {
		select {
		case <-ctx.Done():
			return nil
		case <-closed:
		}
	}
	return ErrConnectionClosed
}

// Alive reports whether the worker can still work: false once its NATS
// connection has closed for good.
func (w *Worker) Alive() bool { return !w.nc.IsClosed() }
