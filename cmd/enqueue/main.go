// Command enqueue submits download requests to the billing worker and
// reads what became of them: their events, their stored state, and the
// dead-letter stream.
//
//	enqueue [global flags] <kind> [request flags] [-wait]
//	enqueue [global flags] file <path|-> [-wait]
//	enqueue [global flags] status <request id>
//	enqueue [global flags] deadletters [-from seq] [-limit n]
//	enqueue [global flags] replay [-payload file] <seq>...
//	enqueue [global flags] delete-deadletter <seq>...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/azbilling/worker/pkg/telemetry"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // a request failed, or an operation error
	exitUsage   = 2 // bad command line or invalid request
	exitTimeout = 3 // -wait gave up before every event arrived
)

// usageError is a problem with the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError carries an exit status without a message of its own.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, tty: isTerminal(os.Stdout)}
	os.Exit(app.main(ctx, os.Args[1:]))
}

func (a *app) main(ctx context.Context, args []string) int {
	tel, err := telemetry.Setup(ctx, "billing-enqueue", a.getenv)
	if err != nil {
		fmt.Fprintln(a.stderr, "enqueue: telemetry:", err)
		return exitUsage
	}
	a.tel = tel
	defer func() {
		flush, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(flush)
	}()
	err = a.run(ctx, args)
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "enqueue: %s\nrun 'enqueue -h' for usage\n", ue.msg)
		return exitUsage
	case errors.As(err, &ee):
		return int(ee)
	default:
		fmt.Fprintln(a.stderr, "enqueue:", err)
		return exitFailed
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	tty            bool // stdout is a terminal: human output; else JSON lines

	natsURL, prefix, creds string
	tel                    *telemetry.Telemetry
}
