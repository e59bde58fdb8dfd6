package worker

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// Metric attribute keys.
const (
	attrKind    = attribute.Key("billing.kind")
	attrOutcome = attribute.Key("billing.outcome")
	attrCode    = attribute.Key("billing.code")
	// attrScheduleID is the recurring schedule a period's request belongs to.
	attrScheduleID = attribute.Key("billing.schedule.id")
	attrStatus     = attribute.Key("http.response.status_code")
	attrError      = attribute.Key("error.type")
	attrWrite      = attribute.Key("billing.write")
)

// What a write refused for lack of storage was (billing.write).
const (
	writeState      = "state"
	writeEvent      = "event"
	writeSchedule   = "schedule"
	writeDeadLetter = "deadletter"
	writeArchive    = "archive"
	writeCollection = "collection"
	writeRequest    = "request"
	writeEnded      = "ended"
)

// writeKinds lists them, for the counter's series at 0 from the start (a
// rate or increase sees the first refusal then).
var writeKinds = []string{writeState, writeEvent, writeSchedule, writeDeadLetter, writeArchive, writeCollection, writeRequest, writeEnded}

// insufficientResources is JetStream's error code for a write refused
// because the server's storage (max_file_store, an account's or a
// stream's reservation) is used up.
const insufficientResources = 10023

// storeFull reports whether err is a write JetStream refused for lack of
// storage.
func storeFull(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == insufficientResources
}

// refused counts err when it is a write of what that JetStream refused
// for lack of storage, and returns err.
func (in *instruments) refusedWrite(ctx context.Context, what string, err error) error {
	if storeFull(err) {
		in.refused.Add(ctx, 1, metric.WithAttributes(attrWrite.String(what)))
	}
	return err
}

// zeroRefused starts the refused-writes series at 0.
func (in *instruments) zeroRefused(ctx context.Context) {
	for _, what := range writeKinds {
		in.refused.Add(ctx, 0, metric.WithAttributes(attrWrite.String(what)))
	}
}

// instruments are the worker's metrics (README.md lists them).
type instruments struct {
	received    metric.Int64Counter
	outcomes    metric.Int64Counter
	azureCalls  metric.Int64Counter
	throttled   metric.Int64Counter
	polls       metric.Int64Histogram
	duration    metric.Float64Histogram
	deadLetters metric.Int64Counter
	refused     metric.Int64Counter
	meter       metric.Meter
	// schedulePeriods counts the ended requests of schedules' periods.
	schedulePeriods metric.Int64Counter
	// held measures the holds of wake-ups that arrived before their poll
	// was due (hold.go).
	held metric.Float64Histogram
	// late measures how long after its due time a call that waited was
	// sent.
	late metric.Float64Histogram
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	m := mp.Meter(instrumentationName)
	in := &instruments{meter: m}
	var err, e error
	in.received, e = m.Int64Counter("billing.requests.received", metric.WithDescription("Download requests taken from the queue, by kind (duplicates and redeliveries included)."), metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	in.schedulePeriods, e = m.Int64Counter("billing.schedule.periods", metric.WithDescription("Requests of recurring schedules' periods ended, by schedule id and outcome (completed, failed)."), metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	in.outcomes, e = m.Int64Counter("billing.requests.outcomes", metric.WithDescription("Requests ended, by kind, outcome (completed, failed) and failure code."), metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	in.azureCalls, e = m.Int64Counter("billing.azure.calls", metric.WithDescription("HTTP calls to Azure, by kind and response status (error.type when there was no answer)."), metric.WithUnit("{call}"))
	err = errors.Join(err, e)
	in.throttled, e = m.Int64Counter("billing.azure.throttled", metric.WithDescription("Throttled Azure answers (429, 503), by kind and status."), metric.WithUnit("{call}"))
	err = errors.Join(err, e)
	in.polls, e = m.Int64Histogram("billing.operation.polls", metric.WithDescription("Polls of the Location per ended operation."), metric.WithUnit("{poll}"),
		metric.WithExplicitBucketBoundaries(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89))
	err = errors.Join(err, e)
	in.duration, e = m.Float64Histogram("billing.operation.duration", metric.WithDescription("Time from acceptance to the end of an operation."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
	err = errors.Join(err, e)
	in.deadLetters, e = m.Int64Counter("billing.deadletters", metric.WithDescription("Requests put in the dead-letter stream, by kind and code."), metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	in.refused, e = m.Int64Counter("billing.nats.writes.refused", metric.WithDescription(
		"Writes JetStream refused for lack of storage (error 10023, insufficient resources), by what was written (billing.write: state, event, schedule, deadletter, archive, collection, request, ended)."),
		metric.WithUnit("{write}"))
	err = errors.Join(err, e)
	in.held, e = m.Float64Histogram("billing.poll.hold", metric.WithDescription(
		"How long a wake-up that arrived before its poll was due was held in the worker until due (at most poll-hold-max, plus the timer's own latency)."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5))
	err = errors.Join(err, e)
	in.late, e = m.Float64Histogram("billing.call.lateness", metric.WithDescription(
		"How long after its due time (the end of the wait Azure or the throttle asked for) a call that waited was sent; never negative."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	err = errors.Join(err, e)
	return in, err
}

func kindAttr(k messages.Kind) attribute.KeyValue {
	if !k.Valid() {
		return attrKind.String("unknown")
	}
	return attrKind.String(string(k))
}

// kindOptions holds the measurement option of each kind, built once: the
// hot path then allocates no attribute set for it.
var kindOptions = func() map[messages.Kind]metric.MeasurementOption {
	m := map[messages.Kind]metric.MeasurementOption{}
	for _, k := range append([]messages.Kind{""}, messages.Kinds...) {
		m[k] = metric.WithAttributeSet(attribute.NewSet(kindAttr(k)))
	}
	return m
}()

func kindOption(k messages.Kind) metric.MeasurementOption {
	if o, ok := kindOptions[k]; ok {
		return o
	}
	return kindOptions[""]
}

// call records one Azure call's result.
func (in *instruments) call(ctx context.Context, k messages.Kind, status int, err error) {
	kind := kindAttr(k)
	switch {
	case errors.Is(err, billing.ErrAuth):
		return // nothing was sent
	case status == 0:
		in.azureCalls.Add(ctx, 1, metric.WithAttributes(kind, attrError.String("transport")))
	default:
		in.azureCalls.Add(ctx, 1, metric.WithAttributes(kind, attrStatus.Int(status)))
		if status == 429 || status == 503 {
			in.throttled.Add(ctx, 1, metric.WithAttributes(kind, attrStatus.Int(status)))
		}
	}
}

// ended records an operation that reached its end.
func (in *instruments) ended(ctx context.Context, st *operation.State) {
	outcome, code := messages.OutcomeCompleted, ""
	end := st.UpdatedAt
	if st.Failed != nil {
		outcome, code = messages.OutcomeFailed, string(st.Failed.Code)
	}
	attrs := metric.WithAttributes(kindAttr(st.Request.Kind), attrOutcome.String(outcome))
	in.outcomes.Add(ctx, 1, metric.WithAttributes(kindAttr(st.Request.Kind), attrOutcome.String(outcome), attrCode.String(code)))
	if id := st.Request.Labels[messages.LabelSchedule]; id != "" {
		in.schedulePeriods.Add(ctx, 1, metric.WithAttributes(attrScheduleID.String(id), attrOutcome.String(outcome)))
	}
	in.polls.Record(ctx, int64(st.Polls), attrs)
	in.duration.Record(ctx, end.Sub(st.AcceptedAt).Seconds(), attrs)
}

// rejected records a request rejected before it had an operation.
func (in *instruments) rejected(ctx context.Context, k messages.Kind, code messages.Code) {
	in.outcomes.Add(ctx, 1, metric.WithAttributes(kindAttr(k), attrOutcome.String(messages.OutcomeFailed), attrCode.String(string(code))))
}

// observeWaiting registers billing.operations.waiting: the operations
// whose next call is scheduled, counted on the server (every pending
// wake-up is one subject of the work stream), so every replica reports the
// same cluster-wide number.
func (in *instruments) observeWaiting(js jetstream.JetStream, l messages.Layout) error {
	_, err := in.meter.Int64ObservableGauge("billing.operations.waiting",
		metric.WithDescription("Operations waiting for their next Azure call (pending wake-ups in the work stream)."),
		metric.WithUnit("{operation}"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			n, err := waiting(ctx, js, l)
			if err == nil {
				o.Observe(n)
			}
			return nil // a missed observation is not worth an error log per scrape
		}))
	return err
}

// observeDeadLetters registers the dead-letter stream's fill:
// billing.deadletter.stored (messages), billing.deadletter.size and
// billing.deadletter.limit (bytes), read from the server, so an alert can
// fire before the oldest dead letters start making room for new ones.
func (in *instruments) observeDeadLetters(js jetstream.JetStream, l messages.Layout) error {
	stored, err := in.meter.Int64ObservableGauge("billing.deadletter.stored",
		metric.WithDescription("Dead letters kept in the dead-letter stream."), metric.WithUnit("{message}"))
	if err != nil {
		return err
	}
	size, err := in.meter.Int64ObservableGauge("billing.deadletter.size",
		metric.WithDescription("Bytes the dead-letter stream holds."), metric.WithUnit("By"))
	if err != nil {
		return err
	}
	limit, err := in.meter.Int64ObservableGauge("billing.deadletter.limit",
		metric.WithDescription("Bytes the dead-letter stream may hold before the oldest dead letters make room (deadletter-max-bytes)."), metric.WithUnit("By"))
	if err != nil {
		return err
	}
	_, err = in.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		s, err := js.Stream(ctx, l.DeadLetterStream())
		if err != nil {
			return nil
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil // a missed observation is not worth an error log per scrape
		}
		o.ObserveInt64(stored, int64(info.State.Msgs))
		o.ObserveInt64(size, int64(info.State.Bytes))
		o.ObserveInt64(limit, info.Config.MaxBytes)
		return nil
	}, stored, size, limit)
	return err
}

// waiting counts the distinct schedule subjects: the work stream's subject
// count less its request and poll subjects (asking for the schedule
// subjects themselves would list every one of them).
func waiting(ctx context.Context, js jetstream.JetStream, l messages.Layout) (int64, error) {
	s, err := js.Stream(ctx, l.WorkStream())
	if err != nil {
		return 0, err
	}
	all, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	others, err := s.Info(ctx, jetstream.WithSubjectFilter(l.Requests()))
	if err != nil {
		return 0, err
	}
	polls, err := s.Info(ctx, jetstream.WithSubjectFilter(l.Polls()))
	if err != nil {
		return 0, err
	}
	return max(int64(all.State.NumSubjects)-int64(len(others.State.Subjects))-int64(len(polls.State.Subjects)), 0), nil
}
