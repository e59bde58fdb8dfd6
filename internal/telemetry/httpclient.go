package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/semconv/v1.37.0/httpconv"
)

// ClientDurationBuckets are the boundaries (seconds) of
// http.client.request.duration: the semantic conventions' advice, extended
// to the HTTP timeout (Azure's billing APIs can take tens of seconds).
var ClientDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 15, 30, 60}

// ClientDuration records the semantic conventions' HTTP client latency
// histogram, http.client.request.duration (seconds), with
// http.request.method, server.address, server.port,
// http.response.status_code and, for a failure, error.type (the status
// code of a 4xx or 5xx, "timeout" or "transport" when there was no answer),
// plus the caller's attributes (billing.kind).
type ClientDuration struct {
	h httpconv.ClientRequestDuration
}

// NewClientDuration creates the histogram on mp's meter named scope.
func NewClientDuration(mp metric.MeterProvider, scope string) (*ClientDuration, error) {
	h, err := httpconv.NewClientRequestDuration(mp.Meter(scope), metric.WithExplicitBucketBoundaries(ClientDurationBuckets...))
	if err != nil {
		return nil, err
	}
	return &ClientDuration{h: h}, nil
}

// Record records one request sent at start that ended with resp or err.
func (d *ClientDuration) Record(ctx context.Context, start time.Time, req *http.Request, resp *http.Response, err error, attrs ...attribute.KeyValue) {
	port := req.URL.Port()
	if port == "" {
		port = "443"
		if req.URL.Scheme == "http" {
			port = "80"
		}
	}
	p, _ := strconv.Atoi(port)
	switch {
	case resp != nil:
		attrs = append(attrs, semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.StatusCode >= 400 {
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		}
	case err != nil:
		attrs = append(attrs, semconv.ErrorTypeKey.String(transportError(err)))
	}
	method := httpconv.RequestMethodAttr(req.Method)
	d.h.Record(ctx, time.Since(start).Seconds(), method, req.URL.Hostname(), p, attrs...)
}

// transportError names a request that got no answer, for error.type: a
// short, fixed set (the error's text would make a series per message).
func transportError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "transport"
}
