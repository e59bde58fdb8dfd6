// Command console serves the billing worker's operations console: an
// overview of the backlog and of what waits on Azure, the operations with
// their timelines, and the dead letters, in the browser. It needs NATS
// access, and read access to the archive's Blob Storage account to hand
// out documents archived there (the worker's archive and credential
// settings). It listens on loopback and only
// reads unless told otherwise; -h lists the settings, each a flag and a
// BILLING_* environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/azbilling/worker/internal/config"
	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/version"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, nil)
	stop() // before os.Exit, which skips deferred calls
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		os.Exit(1)
	}
}

// settings are the console's; each flag has a BILLING_* variable
// (the worker's naming), the NATS ones shared with the worker.
type settings struct {
	listen                              string
	natsURL, creds, ca, cert, key, name string
	prefix                              string
	write                               bool
	tokenFile, authHeader               string
	hideSig, downloads                  bool
	traceURL                            string
	pageSize                            int
	refresh                             time.Duration
	logLevel                            string
}

// run runs the console until ctx is done. ready, when not nil, receives
// the address it listens on.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s settings
	var envErrs []error
	env := func(name string) (string, bool) { return lookup(envName(name)) }
	str := func(p *string, name, def, usage string) {
		*p = def
		if v, ok := env(name); ok {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" (env "+envName(name)+")")
	}
	boolean := func(p *bool, name, usage string) {
		if v, ok := env(name); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: not true or false", envName(name), v))
			}
			*p = b
		}
		fs.BoolVar(p, name, *p, usage+" (env "+envName(name)+")")
	}
	str(&s.listen, "console-listen", console.DefaultAddr, "address the console listens on: loopback unless you put it behind a proxy")
	str(&s.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	str(&s.creds, "nats-creds", "", "NATS credentials file (JWT and NKey seed)")
	str(&s.ca, "nats-ca", "", "CA bundle that verifies the NATS server's TLS certificate")
	str(&s.cert, "nats-cert", "", "client certificate for NATS mutual TLS")
	str(&s.key, "nats-key", "", "key of the NATS client certificate")
	str(&s.name, "nats-name", "billing-console", "connection name the NATS server shows")
	str(&s.prefix, "prefix", messages.DefaultPrefix, "the worker's subject prefix")
	boolean(&s.write, "console-write", "enable the write actions: replay and delete dead letters")
	str(&s.tokenFile, "console-token-file", "", "file holding the operator token that write actions need (or set "+envName("console-token")+")")
	str(&s.authHeader, "console-auth-header", "", "instead of a token: the header an authenticating proxy sets to the user's name (write actions need it)")
	boolean(&s.hideSig, "console-hide-sig", "hide the sig of the completed operation's download link too")
	s.downloads = true
	boolean(&s.downloads, "console-downloads", "offer archived documents for download (a read, allowed in read-only mode); false turns it off")
	str(&s.traceURL, "console-trace-url", "", "link trace ids to the tracing backend: a URL with {trace_id}, such as https://jaeger.internal/trace/{trace_id}")
	pageSize := strconv.Itoa(console.DefaultPageSize)
	str(&pageSize, "console-page-size", pageSize, "operations or dead letters on one page")
	refresh := console.DefaultRefresh.String()
	str(&refresh, "console-refresh", refresh, "how often the live parts of a page refresh")
	str(&s.logLevel, "log-level", "info", "debug, info, warn or error")
	// The archive's Blob Storage account and its credential: the worker's
	// settings and variables, read for downloads of documents archived there.
	var cfg config.Config
	if err := cfg.BindSettings(fs, lookup, config.ArchiveReaderSettings); err != nil {
		envErrs = append(envErrs, err)
	}
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, version.String())
		return err
	}
	var err error
	if s.pageSize, err = strconv.Atoi(pageSize); err != nil || s.pageSize < 1 {
		envErrs = append(envErrs, fmt.Errorf("console-page-size %q: a whole number of 1 or more", pageSize))
	}
	if s.refresh, err = time.ParseDuration(refresh); err != nil || s.refresh <= 0 {
		envErrs = append(envErrs, fmt.Errorf("console-refresh %q: a positive duration such as 2s", refresh))
	}
	if err := errors.Join(envErrs...); err != nil {
		return err
	}
	token, _ := env("console-token")
	if s.tokenFile != "" {
		b, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return fmt.Errorf("console-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return errors.New("console-token-file: the file is empty")
		}
	}
	if s.write && token != "" && len(token) < 16 {
		return errors.New("the console token is too short: use 16 characters or more (openssl rand -hex 32)")
	}
	if s.write && token == "" && s.authHeader == "" {
		return fmt.Errorf("write actions need a token (--console-token-file or %s) or an auth proxy header (--console-auth-header)", envName("console-token"))
	}
	cfg.NATSURL, cfg.NATSCredsFile, cfg.NATSCAFile, cfg.NATSCertFile = s.natsURL, s.creds, s.ca, s.cert
	cfg.NATSKeyFile, cfg.NATSName, cfg.LogLevel = s.key, s.name, s.logLevel
	log, err := cfg.Logger(stderr)
	if err != nil {
		return err
	}
	var blob client.BlobOpener
	if s.downloads {
		if blob, err = cfg.ArchiveBlobOpener(config.AzureDeps{}); err != nil {
			return err
		}
	}
	if !s.write {
		token = "" // a token without writes is refused; the variable may be set for later
	}
	nc, err := cfg.Connect(log)
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(nc, s.prefix)
	if err != nil {
		return err
	}
	if blob != nil {
		cl.SetBlobOpener(blob)
		log.Info("console: documents archived in Azure Blob Storage can be downloaded", "account_url", cfg.ArchiveAccountURL,
			"connection_string_file", cfg.ArchiveConnFile)
	}
	srv, err := console.New(console.Options{Client: cl, Write: s.write, Token: token, AuthHeader: s.authHeader,
		HideSig: s.hideSig, NoDownloads: !s.downloads, TraceURL: s.traceURL, PageSize: s.pageSize, Refresh: s.refresh, Logger: log})
	if err != nil {
		return err
	}
	l, err := console.Listen(s.listen)
	if err != nil {
		return err
	}
	addr := l.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		log.Warn("console: listening beyond loopback; put it behind an authenticating proxy with TLS", "addr", addr.String())
	}
	log.Info("console", "url", "http://"+addr.String(), "write", s.write, "nats", nc.ConnectedUrlRedacted())
	fmt.Fprintf(stdout, "console: http://%s (%s)\n", addr, map[bool]string{true: "write actions on", false: "read-only"}[s.write])
	if ready != nil {
		ready <- addr.String()
	}
	return srv.Serve(ctx, l)
}

// envName is a setting's environment variable, named as the worker's are.
func envName(flag string) string {
	return config.EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
