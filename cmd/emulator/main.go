// Command emulator runs the Azure Billing emulator (package emulator) on its own, for dev mode
// and multi-process tests: the five Billing / Cost Management operations on ARM paths, an Entra
// ID token endpoint and the /_emulator/ control API, on one address.
//
//	emulator [-addr 127.0.0.1:8443] [-plain-http] [-ca-out ca.pem] [-polls 1] [-retry-after 1]
//	         [-audience https://management.azure.com] [-token-lifetime 1h] [-v]
//
// It prints one line with its URL and runs until SIGINT or SIGTERM. Point other processes at
// it with SSL_CERT_FILE set to the -ca-out file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/azbilling/worker/internal/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "emulator:", err)
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, and announces the URL on stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8443", "listen address (host:port)")
	plain := fs.Bool("plain-http", false, "serve plain HTTP instead of HTTPS")
	caOut := fs.String("ca-out", "", "write the server certificate (PEM) to this file, for SSL_CERT_FILE")
	polls := fs.Int("polls", 1, "202 answers before the 200 in the default script")
	retryAfter := fs.String("retry-after", "1", "Retry-After of the default script's 202 answers (empty: none)")
	audience := fs.String("audience", emulator.DefaultAudience, "ARM audience tokens must be issued for")
	lifetime := fs.Duration("token-lifetime", time.Hour, "lifetime of issued tokens")
	verbose := fs.Bool("v", false, "log every ARM call and token request to stderr")
	budgetRate := fs.Float64("budget-rate", 0, "throttle every tenant like Azure: calls per second refilled per class (writes, reads, Cost Management); 0: unlimited")
	budgetBurst := fs.Int("budget-burst", 0, "size of each tenant's bucket per class (with -budget-rate)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	case *polls < 0:
		return fmt.Errorf("-polls %d: want 0 or more", *polls)
	case *lifetime <= 0:
		return fmt.Errorf("-token-lifetime %s: want a positive duration", *lifetime)
	case *budgetRate < 0 || *budgetBurst < 0 || (*budgetRate > 0) != (*budgetBurst > 0):
		return fmt.Errorf("-budget-rate %v -budget-burst %d: want both positive, or both 0", *budgetRate, *budgetBurst)
	case *plain && *caOut != "":
		return errors.New("-ca-out needs HTTPS: drop -plain-http")
	}

	script := make([]emulator.Reply, 0, *polls+1)
	for range *polls {
		script = append(script, emulator.Accepted(*retryAfter))
	}
	opts := emulator.Options{
		Audience:      *audience,
		TokenLifetime: *lifetime,
		Default:       append(script, emulator.OK()),
		PlainHTTP:     *plain,
		Budget:        emulator.Budget{Rate: *budgetRate, Burst: *budgetBurst},
	}
	if *verbose {
		opts.Logf = log.New(stderr, "", log.LstdFlags|log.Lmicroseconds).Printf
	}

	srv, err := emulator.Listen(*addr, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	if *caOut != "" {
		if err := srv.WriteCACert(*caOut); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "Azure Billing emulator listening on %s\n", srv.URL())
	<-ctx.Done()
	return nil
}
