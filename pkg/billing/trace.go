package billing

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/redact"
)

// tracePolicy makes an OpenTelemetry HTTP client span of every call, with
// the semantic conventions' attributes and the URL redacted (no SAS
// signature, no user info). The token never appears: headers are not
// recorded.
type tracePolicy struct{ tracer trace.Tracer }

func (p tracePolicy) Do(req *policy.Request) (*http.Response, error) {
	raw := req.Raw()
	port, _ := strconv.Atoi(effectivePort(raw.URL))
	ctx, span := p.tracer.Start(raw.Context(), raw.Method,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(raw.Method),
			semconv.URLFull(redact.URLOf(raw.URL)),
			semconv.ServerAddress(raw.URL.Hostname()),
			semconv.ServerPort(port),
		))
	defer span.End()
	resp, err := req.WithContext(ctx).Next()
	if err != nil {
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.SetStatus(codes.Error, redact.String(err.Error()))
		return resp, err
	}
	span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
	if resp.StatusCode >= 400 {
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}

// errorType names a transport failure for error.type.
func errorType(err error) string {
	if errors.Is(err, ErrAuth) {
		return "no_token"
	}
	return "transport"
}
