package telemetry

import (
	"context"
	"net/textproto"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderCarrier adapts NATS message headers to OpenTelemetry propagation.
// It writes the W3C names in lower case (traceparent, tracestate, baggage),
// as clients in other languages look for them, and reads either case.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key, whatever its case.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	if v := c[textproto.CanonicalMIMEHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set writes key as given (the propagators give lower-case names),
// replacing a value under the canonical spelling.
func (c HeaderCarrier) Set(key, value string) {
	delete(c, textproto.CanonicalMIMEHeaderKey(key))
	c[key] = []string{value}
}

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx into h.
func Inject(ctx context.Context, h nats.Header) { Propagator.Inject(ctx, HeaderCarrier(h)) }

// Extract returns ctx with the trace context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return Propagator.Extract(ctx, HeaderCarrier(h))
}
