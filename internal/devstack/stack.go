package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/azbilling/worker/internal/config"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
)

// The identity the stack's workers use against the emulator.
const (
	DevTenant   = "dev-tenant"
	DevClientID = "dev-client"
	DevAudience = "https://management.azure.com"
)

// Options configure a Stack.
type Options struct {
	// Dir holds JetStream's files and the dev client secret; required.
	Dir string
	// NATSPort for the embedded server (0: a free port).
	NATSPort int
	// MonitorPort for NATS monitoring (0: none).
	MonitorPort int
	// NATSMaxFileStore caps the embedded server's file store, in bytes (0:
	// the server's default).
	NATSMaxFileStore int64
	// Emulator options (its Clients are filled in by the stack).
	Emulator emulator.Options
	// Configure adjusts the workers' configuration.
	Configure func(*config.Config)
	// Logger for the workers (default: discard).
	Logger *slog.Logger
	// Workers to start (default 1; 0 with NoWorkers).
	Workers   int
	NoWorkers bool
	// WorkerOptions are passed to every worker.
	WorkerOptions []worker.Option
	// WorkerOptionsFor, when set, adds options for the i-th worker started
	// (from 0), e.g. a meter provider of its own.
	WorkerOptionsFor func(i int) []worker.Option
	// AzureDeps adds to what the stack passes (its transport trusts the
	// emulator).
	AzureDeps config.AzureDeps
	// AzureTransport, when set, builds the workers' Azure transport (ARM
	// and identity requests) once the emulator runs, e.g. one that also
	// trusts another test server, or records what is sent. It takes
	// precedence over AzureDeps.Transport.
	AzureTransport func(emu *emulator.Server) policy.Transporter
}

// Stack is an embedded NATS server, the emulator, and workers wired to
// both over real connections.
type Stack struct {
	NATS     *server.Server
	Emulator *emulator.Server
	Conn     *nats.Conn
	Client   *client.Client
	Config   config.Config

	opts    Options
	natsOpt NATSOptions
	mu      sync.Mutex
	workers []*running
	started int // workers started, for WorkerOptionsFor
}

type running struct {
	w      *worker.Worker
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

// Start brings the stack up; Close takes it down.
func Start(o Options) (*Stack, error) {
	if o.Dir == "" {
		return nil, errors.New("devstack: Dir is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	natsOpt := NATSOptions{StoreDir: filepath.Join(o.Dir, "jetstream"), Port: o.NATSPort, MonitorPort: o.MonitorPort, MaxFileStore: o.NATSMaxFileStore}
	ns, err := StartNATS(natsOpt)
	if err != nil {
		return nil, err
	}
	natsOpt.Port = ns.Addr().(*net.TCPAddr).Port
	secretFile := filepath.Join(o.Dir, "client-secret")
	secret := "dev-secret-" + filepath.Base(o.Dir)
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		ns.Shutdown()
		return nil, err
	}
	eo := o.Emulator
	if eo.Clients == nil {
		eo.Clients = map[string]emulator.Client{}
	}
	eo.Clients[DevClientID] = emulator.Client{Tenant: DevTenant, Secret: secret}
	if eo.Audience == "" {
		eo.Audience = DevAudience
	}
	emu := emulator.Start(eo)

	cfg := config.DefaultConfig()
	cfg.NATSURL = ns.ClientURL()
	cfg.HealthAddr = ""
	cfg.AzureCloud = "custom"
	cfg.ARMEndpoint = emu.URL()
	cfg.ARMAudience = eo.Audience
	cfg.AuthorityHost = emu.URL() + "/"
	cfg.AzureCredential = "client-secret"
	cfg.AzureTenantID = DevTenant
	cfg.AzureClientID = DevClientID
	cfg.AzureClientSecretFile = secretFile
	cfg.DisableInstanceDiscovery = true
	if o.Configure != nil {
		o.Configure(&cfg)
	}
	if o.AzureTransport != nil {
		o.AzureDeps.Transport = o.AzureTransport(emu)
	}
	if o.AzureDeps.Transport == nil {
		o.AzureDeps.Transport = config.PooledTransport(cfg.Concurrency, emu.CertPool())
	}
	s := &Stack{NATS: ns, Emulator: emu, Config: cfg, opts: o, natsOpt: natsOpt}
	s.Conn, err = nats.Connect(ns.ClientURL(), nats.Name("devstack"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err == nil {
		s.Client, err = client.New(s.Conn, cfg.Prefix)
	}
	if err == nil {
		// The stack's client (and dev mode's console) reads documents
		// archived in Blob Storage with the worker's archive settings.
		var open client.BlobOpener
		if open, err = cfg.ArchiveBlobOpener(config.AzureDeps{}); open != nil {
			s.Client.SetBlobOpener(open)
		}
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	n := o.Workers
	if n == 0 && !o.NoWorkers {
		n = 1
	}
	for range n {
		if err := s.startWorker(); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// startWorker starts one more worker and waits until it is ready.
func (s *Stack) startWorker() error {
	nc, err := nats.Connect(s.Config.NATSURL, nats.Name("devstack-worker"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return err
	}
	profiles, err := s.Config.AzureProfiles(s.opts.AzureDeps)
	if err != nil {
		nc.Close()
		return err
	}
	// Documents are downloaded over the Azure transport: it trusts the
	// emulator, whose links they are.
	wopts := append([]worker.Option{worker.WithDownloader(s.opts.AzureDeps.Transport)}, s.opts.WorkerOptions...)
	if f := s.opts.WorkerOptionsFor; f != nil {
		s.mu.Lock()
		i := s.started
		s.started++
		s.mu.Unlock()
		wopts = append(wopts, f(i)...)
	}
	opts := s.Config.Worker()
	if opts.Archive.Blob, err = s.Config.ArchiveBlob(context.Background(), config.AzureDeps{}); err != nil {
		nc.Close()
		return err
	}
	w, err := worker.New(opts, nc, profiles, s.opts.Logger, wopts...)
	if err != nil {
		nc.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	deadline := time.Now().Add(15 * time.Second)
	for !w.Ready() {
		select {
		case err := <-r.done:
			cancel()
			nc.Close()
			return fmt.Errorf("devstack: worker stopped during start: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			nc.Close()
			return errors.New("devstack: worker not ready within 15s")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers = append(s.workers, r)
	return nil
}

// StopWorker stops the i-th worker (in the order they started) gracefully and returns what Run
// returned.
func (s *Stack) StopWorker(i int) error {
	s.mu.Lock()
	r := s.workers[i]
	s.mu.Unlock()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	err := <-r.done
	r.nc.Close()
	r.cancel = nil
	return err
}

// StopNATS shuts the NATS server down; its storage stays for RestartNATS.
func (s *Stack) StopNATS() {
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
}

// RestartNATS starts the NATS server again on the same port and storage;
// clients reconnect by themselves.
func (s *Stack) RestartNATS() error {
	ns, err := StartNATS(s.natsOpt)
	if err != nil {
		return err
	}
	s.NATS = ns
	return nil
}

// Close stops the workers, the NATS server and the emulator.
func (s *Stack) Close() {
	s.mu.Lock()
	n := len(s.workers)
	s.mu.Unlock()
	for i := range n {
		_ = s.StopWorker(i)
	}
	if s.Conn != nil {
		s.Conn.Close()
	}
	s.NATS.Shutdown()
	s.NATS.WaitForShutdown()
	s.Emulator.Close()
}

// StartWorker starts one more worker (after StopWorker, say) and waits
// until it is ready.
func (s *Stack) StartWorker() error { return s.startWorker() }
