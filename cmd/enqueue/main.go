// Command enqueue submits download requests to the billing worker and
// reads what became of them: their events, their stored state, the
// operations by state, and the dead-letter stream.
//
//	enqueue <kind> [request flags] [--wait]
//	enqueue file <path|-> [--wait] [--force]
//	enqueue status <request id>
//	enqueue stats
//	enqueue deadletters [--from seq] [--limit n]
//	enqueue replay [--payload file] <seq>...
//	enqueue delete-deadletter [--yes] <seq>...
//	enqueue version | help | completion bash|zsh|fish|powershell
//
// Flags may come anywhere on the line; the connection flags are the nats
// CLI's (--server/-s, --context, --creds, --tlsca, --tlscert, --tlskey).
// "enqueue help <command>" or "<command> -h" lists a command's flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/azbilling/worker/internal/telemetry"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // a request failed, or an operation error
	exitUsage   = 2 // bad command line or invalid request
	exitTimeout = 3 // --wait gave up before every event arrived
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
	app := &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		tty: isTerminal(os.Stdout), ttyIn: isTerminal(os.Stdin) && isTerminal(os.Stderr),
	}
	code := app.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
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
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "enqueue: %s\nrun 'enqueue --help' for usage\n", ue.msg)
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
	ttyIn          bool // someone can answer a question (stdin and stderr are terminals)

	conn    connFlags
	prefix  string
	json    bool          // --json: JSON output on a terminal too
	pollFor time.Duration // how often a single --wait on a terminal reads the state (0: 1 s)
	tel     *telemetry.Telemetry
	ran     bool // a command's own code ran: a later error is not a command-line error
}

// jsonOut reports whether to print JSON: asked for, or not a terminal.
func (a *app) jsonOut() bool { return a.json || !a.tty }
