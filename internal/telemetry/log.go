package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/trace"
)

// LogHandler wraps h so that every record logged with a context that holds
// a span carries trace_id and span_id. A handler that does so already (one
// from Telemetry.LogHandler) is returned as is.
func LogHandler(h slog.Handler) slog.Handler {
	switch h.(type) {
	case traceHandler, fanout:
		return h
	}
	return traceHandler{h}
}

// LogHandler returns the handler a process logs through: h (its own log,
// JSON on stderr) with trace_id and span_id added, and, when logs are
// exported (OTEL_LOGS_EXPORTER, or an OTLP endpoint), the same records sent
// to the LoggerProvider through OpenTelemetry's slog bridge, which takes the
// trace and span ids from the record's context. h's level decides for
// both.
func (t *Telemetry) LogHandler(h slog.Handler) slog.Handler {
	if t.LoggerProvider == nil {
		return LogHandler(h)
	}
	return fanout{primary: LogHandler(h), otlp: otelslog.NewHandler(t.service, otelslog.WithLoggerProvider(t.LoggerProvider))}
}

type traceHandler struct{ slog.Handler }

func (t traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return t.Handler.Handle(ctx, r)
}

func (t traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{t.Handler.WithAttrs(attrs)}
}

func (t traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{t.Handler.WithGroup(name)}
}

// fanout hands every record primary enables to both primary and otlp.
type fanout struct{ primary, otlp slog.Handler }

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool { return f.primary.Enabled(ctx, l) }

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	err := f.primary.Handle(ctx, r.Clone())
	if f.otlp.Enabled(ctx, r.Level) {
		_ = f.otlp.Handle(ctx, r) // the exporter reports its own failures (otel.Handle)
	}
	return err
}

func (f fanout) WithAttrs(attrs []slog.Attr) slog.Handler {
	return fanout{f.primary.WithAttrs(attrs), f.otlp.WithAttrs(attrs)}
}

func (f fanout) WithGroup(name string) slog.Handler {
	return fanout{f.primary.WithGroup(name), f.otlp.WithGroup(name)}
}
