// Package telemetry sets up OpenTelemetry for the worker and its tools from
// the standard OTEL_* environment variables, carries W3C trace context in
// NATS headers, adds trace ids to slog lines, sends the slog lines over
// OTLP too when logs are exported, and defines the Azure call latency
// histogram (http.client.request.duration).
//
// Telemetry is off unless configured: with no OTEL_*_EXPORTER and no OTLP
// endpoint set, the providers are OpenTelemetry's no-op ones, which cost
// next to nothing and print nothing.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/azbilling/worker/internal/version"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Telemetry holds the providers one process uses.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Propagator reads and writes W3C traceparent/tracestate and baggage.
	Propagator propagation.TextMapPropagator
	// Metrics serves the Prometheus exposition format when
	// OTEL_METRICS_EXPORTER includes "prometheus"; nil otherwise.
	Metrics http.Handler
	// LoggerProvider receives the slog lines (LogHandler) when
	// OTEL_LOGS_EXPORTER is otlp; nil otherwise.
	LoggerProvider otellog.LoggerProvider

	service string
	tracing bool

	shutdown []func(context.Context) error
}

// Propagator is the propagator every process uses: W3C trace context and
// baggage.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Noop returns telemetry that records nothing but still propagates trace
// context it receives.
func Noop() *Telemetry {
	return &Telemetry{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: metricnoop.NewMeterProvider(), Propagator: Propagator}
}

// Setup configures telemetry from the environment (read through getenv):
//
//	OTEL_TRACES_EXPORTER   otlp, console or none; default otlp when an OTLP
//	                       endpoint is set, none otherwise
//	OTEL_METRICS_EXPORTER  comma-separated otlp, prometheus, console, none;
//	                       same default
//	OTEL_LOGS_EXPORTER     otlp or none; same default (the lines always go
//	                       to the process's own log as well: LogHandler)
//	OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT,
//	OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or grpc; default http/protobuf),
//	OTEL_EXPORTER_OTLP_HEADERS ... as the OTLP exporters read them
//	OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES   the resource
//	OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG  the sampler (SDK default:
//	                       parentbased_always_on)
//	OTEL_METRIC_EXPORT_INTERVAL                   the OTLP push interval
//
// service names the service when OTEL_SERVICE_NAME does not.
func Setup(ctx context.Context, service string, getenv func(string) string) (*Telemetry, error) {
	t := Noop()
	t.service = service
	traces := exporters(getenv, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	metrics := exporters(getenv, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
	logs := exporters(getenv, "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
	if len(traces) == 0 && len(metrics) == 0 && len(logs) == 0 {
		return t, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version.String())),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	protocol := func(signal string) string {
		if p := getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"); p != "" {
			return p
		}
		if p := getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" {
			return p
		}
		return "http/protobuf"
	}

	if len(traces) > 0 {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
		for _, name := range traces {
			var exp sdktrace.SpanExporter
			switch name {
			case "otlp":
				if protocol("TRACES") == "grpc" {
					exp, err = otlptracegrpc.New(ctx)
				} else {
					exp, err = otlptracehttp.New(ctx)
				}
			case "console":
				exp, err = stdouttrace.New()
			default:
				err = fmt.Errorf("OTEL_TRACES_EXPORTER %q is not otlp, console or none", name)
			}
			if err != nil {
				return nil, fmt.Errorf("trace exporter: %w", err)
			}
			opts = append(opts, sdktrace.WithBatcher(exp))
		}
		tp := sdktrace.NewTracerProvider(opts...) // the sampler comes from OTEL_TRACES_SAMPLER
		t.TracerProvider = tp
		t.tracing = true
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}

	if len(metrics) > 0 {
		opts := []sdkmetric.Option{sdkmetric.WithResource(res)}
		for _, name := range metrics {
			switch name {
			case "otlp":
				var exp sdkmetric.Exporter
				if protocol("METRICS") == "grpc" {
					exp, err = otlpmetricgrpc.New(ctx)
				} else {
					exp, err = otlpmetrichttp.New(ctx)
				}
				if err != nil {
					return nil, fmt.Errorf("metric exporter: %w", err)
				}
				opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
			case "console":
				exp, err := stdoutmetric.New()
				if err != nil {
					return nil, err
				}
				opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
			case "prometheus":
				reg := prometheus.NewRegistry()
				exp, err := promexporter.New(promexporter.WithRegisterer(reg))
				if err != nil {
					return nil, fmt.Errorf("prometheus exporter: %w", err)
				}
				opts = append(opts, sdkmetric.WithReader(exp))
				t.Metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			default:
				return nil, fmt.Errorf("OTEL_METRICS_EXPORTER %q is not otlp, prometheus, console or none", name)
			}
		}
		mp := sdkmetric.NewMeterProvider(opts...)
		t.MeterProvider = mp
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}

	if len(logs) > 0 {
		opts := []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
		for _, name := range logs {
			var exp sdklog.Exporter
			switch name {
			case "otlp":
				if protocol("LOGS") == "grpc" {
					exp, err = otlploggrpc.New(ctx)
				} else {
					exp, err = otlploghttp.New(ctx)
				}
			default:
				// console would repeat what LogHandler's own handler prints.
				err = fmt.Errorf("OTEL_LOGS_EXPORTER %q is not otlp or none", name)
			}
			if err != nil {
				return nil, fmt.Errorf("log exporter: %w", err)
			}
			opts = append(opts, sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
		}
		lp := sdklog.NewLoggerProvider(opts...)
		t.LoggerProvider = lp
		// Last: what the other providers' shutdown logs still goes out.
		t.shutdown = append(t.shutdown, lp.Shutdown)
	}
	return t, nil
}

// exporters reads a comma-separated exporter list; unset means "otlp" when
// an OTLP endpoint is configured and nothing otherwise.
func exporters(getenv func(string) string, listVar, endpointVar string) []string {
	v := strings.TrimSpace(getenv(listVar))
	if v == "" {
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv(endpointVar) != "" {
			return []string{"otlp"}
		}
		return nil
	}
	var out []string
	for _, name := range strings.Split(v, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "none" {
			return nil
		}
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// Shutdown flushes and stops the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Enabled reports whether spans are recorded.
func (t *Telemetry) Enabled() bool { return t.tracing }
