// Command worker runs the billing download worker: it takes download
// requests from NATS JetStream, drives the Azure Billing operations and
// publishes completion and failure events. Every setting is a flag and a
// BILLING_* environment variable; -h lists them.
//
// With -dev it runs on an embedded NATS server and the Azure Billing
// emulator instead, sends a sample request of every kind, and prints the
// events.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/internal/version"
	"github.com/azbilling/worker/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop() // before os.Exit, which skips deferred calls
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	getenv := func(k string) string { v, _ := lookup(k); return v }
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config.Config
	envErr := cfg.Bind(fs, lookup)
	dev := fs.Bool("dev", false, "development mode: embedded NATS, the Azure Billing emulator, sample requests")
	devExit := fs.Bool("dev-exit", false, "with -dev: exit once the sample requests have ended")
	devLogLevel := fs.String("dev-log-level", "", "with -dev: write the worker's JSON log lines to stderr at this level (debug, info, warn, error) instead of to the file dev mode names")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, version.String())
		return err
	}
	if envErr != nil {
		return envErr
	}
	logOut, logFile := stderr, ""
	logCfg := cfg
	if *dev {
		// Dev mode's standard output is its summary, for a person: the
		// worker's JSON log lines go to a file it names, or to stderr at
		// -dev-log-level.
		if *devLogLevel != "" {
			logCfg.LogLevel = *devLogLevel
		} else {
			f, err := os.CreateTemp("", "billing-dev-*.log")
			if err != nil {
				return fmt.Errorf("dev mode's log file: %w", err)
			}
			defer f.Close()
			logOut, logFile = f, f.Name()
		}
	}
	log, err := logCfg.Logger(logOut)
	if err != nil {
		if *devLogLevel != "" {
			return fmt.Errorf("dev-log-level: %w", err)
		}
		return err
	}
	tel, err := telemetry.Setup(ctx, "billing-worker", getenv)
	if err != nil {
		return err
	}
	// Log lines go to stderr and, when logs are exported, over OTLP too.
	log = slog.New(tel.LogHandler(log.Handler()))
	// Flush telemetry last, with a fresh timeout: ctx is done by then.
	defer func() {
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(flush); err != nil {
			log.Warn("flush telemetry", "error", err)
		}
	}()
	if *dev {
		return devstack.Dev(ctx, devstack.DevOptions{
			Configure: func(c *config.Config) { c.LogLevel = logCfg.LogLevel },
			Logger:    log, LogFile: logFile, Out: stdout, Exit: *devExit, Telemetry: tel,
		})
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	deps := config.AzureDeps{Metering: tel.MeterProvider}
	if tel.Enabled() {
		deps.Tracing = tel.TracerProvider
	}
	profiles, err := cfg.AzureProfiles(deps)
	if err != nil {
		return err
	}
	nc, err := cfg.Connect(log)
	if err != nil {
		return err
	}
	defer nc.Close()
	opts := cfg.Worker()
	if opts.Archive.Blob, err = cfg.ArchiveBlob(ctx, deps); err != nil {
		return err
	}
	w, err := worker.New(opts, nc, profiles, log, worker.WithTelemetry(tel))
	if err != nil {
		return err
	}
	if cfg.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/", w.Health())
		if tel.Metrics != nil {
			mux.Handle("GET /metrics", tel.Metrics)
		}
		stopHealth, err := serve(cfg.HealthAddr, mux, log)
		if err != nil {
			return err
		}
		defer stopHealth()
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	// Flush what the connection still buffers (acks) before closing it.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		log.Warn("flush", "error", err)
	}
	return nil
}

// serve runs h on addr until the returned function is called.
func serve(addr string, h http.Handler, log *slog.Logger) (func(), error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health listener: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server", "error", err)
		}
	}()
	log.Info("health endpoints", "addr", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
