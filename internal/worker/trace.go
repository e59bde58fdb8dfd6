package worker

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// Span attribute keys of the worker's own.
const (
	attrRequestID  = attribute.Key("billing.request.id")
	attrAttempt    = attribute.Key("billing.poll.attempt")
	attrAzureCalls = attribute.Key("billing.azure.calls")
	attrPhase      = attribute.Key("billing.phase")
	attrWait       = attribute.Key("billing.retry_after.seconds")
	attrWaitSource = attribute.Key("billing.retry_after.source")
	attrNextAt     = attribute.Key("billing.next_poll_at")
	attrAzureCode  = attribute.Key("azure.error.code")
	attrAzureHTTP  = attribute.Key("azure.response.status_code")
)

var natsSystem = semconv.MessagingSystemKey.String("nats")

// startProcess starts the consumer span of a message, continuing the trace
// its headers carry.
func (w *Worker) startProcess(ctx context.Context, msg jetstream.Msg, consumer string) (context.Context, trace.Span) {
	ctx = telemetry.Extract(ctx, msg.Headers())
	// Span names carry the subject without the request id (low cardinality).
	name := "process " + w.subj.Requests()
	switch consumer {
	case PollsConsumer:
		name = "process " + w.subj.Polls()
	case EndedConsumer:
		name = "process " + w.subj.ChildrenEnded()
	}
	ctx, span := w.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer))
	if !span.IsRecording() {
		return ctx, span // telemetry off: build nothing
	}
	span.SetAttributes(
		natsSystem,
		semconv.MessagingDestinationName(msg.Subject()),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingConsumerGroupName(consumer),
	)
	if meta, err := msg.Metadata(); err == nil {
		span.SetAttributes(
			semconv.MessagingMessageID(strconv.FormatUint(meta.Sequence.Stream, 10)),
			attribute.Int("messaging.nats.delivery_count", int(meta.NumDelivered)))
	}
	return ctx, span
}

// startSend starts the producer span of a publish to subject, named after
// its pattern.
func (w *Worker) startSend(ctx context.Context, pattern, subject string) (context.Context, trace.Span) {
	ctx, span := w.tracer.Start(ctx, "send "+pattern, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			natsSystem,
			semconv.MessagingDestinationName(subject),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
		)
	}
	return ctx, span
}

// withStoredTrace returns ctx continuing the trace stored in st.
func withStoredTrace(ctx context.Context, st *operation.State) context.Context {
	if st.TraceParent == "" {
		return ctx
	}
	return telemetry.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": st.TraceParent, "tracestate": st.TraceState})
}

// annotate records on the current span what an attempt did and decided.
func annotate(ctx context.Context, st *operation.State) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(
		attrRequestID.String(st.Request.ID), kindAttr(st.Request.Kind),
		attrAttempt.Int(st.Polls), attrAzureCalls.Int(st.AzureCalls), attrPhase.String(string(st.Phase)),
	)
	if st.LastStatus != 0 {
		span.SetAttributes(attrAzureHTTP.Int(st.LastStatus))
	}
	switch {
	case st.Phase == operation.PhaseWaiting:
		span.SetAttributes(attrWait.Float64(st.LastWait.Seconds()), attrWaitSource.String(st.LastWaitSource),
			attrNextAt.String(st.NextAt.UTC().Format(time.RFC3339Nano)))
	case st.Failed != nil:
		span.SetAttributes(attrCode.String(string(st.Failed.Code)), semconv.ErrorTypeKey.String(string(st.Failed.Code)))
		if st.Failed.Azure != nil && st.Failed.Azure.Code != "" {
			span.SetAttributes(attrAzureCode.String(st.Failed.Azure.Code))
		}
		span.SetStatus(codes.Error, string(st.Failed.Code))
	}
}

// failSpan marks the current span failed with a code, for rejected
// requests.
func failSpan(ctx context.Context, code messages.Code) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrCode.String(string(code)), semconv.ErrorTypeKey.String(string(code)))
	span.SetStatus(codes.Error, string(code))
}

// traceOf returns the W3C trace context of ctx's span as the operation
// stores it.
func traceOf(ctx context.Context) operation.Trace {
	c := propagation.MapCarrier{}
	telemetry.Propagator.Inject(ctx, c)
	return operation.Trace{Parent: c["traceparent"], State: c["tracestate"]}
}
