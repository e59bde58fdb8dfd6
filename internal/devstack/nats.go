// Package devstack runs the pieces a developer or a test needs on one
// machine: a real NATS server with JetStream, in-process, and (in stack.go)
// the Azure Billing emulator and a worker wired to both.
package devstack

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configure an embedded NATS server.
type NATSOptions struct {
	// Host to listen on (default 127.0.0.1).
	Host string
	// Port to listen on; 0 or -1 picks a free one.
	Port int
	// StoreDir holds JetStream's files; required (tests pass t.TempDir()).
	StoreDir string
	// MonitorPort serves the monitoring endpoints (/jsz, as KEDA reads);
	// 0 disables them, -1 picks a free port.
	MonitorPort int
	// Logs prints the server's own log to stderr.
	Logs bool
	// MaxFileStore caps JetStream's file store, in bytes (0: the server's
	// default, a share of the disk). Tests fill a small store on purpose.
	MaxFileStore int64
}

// StartNATS starts a NATS server with JetStream in this process and waits
// until it accepts connections. Stop it with Shutdown.
func StartNATS(o NATSOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("devstack: NATS needs a StoreDir")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = -1
	}
	opts := &server.Options{
		ServerName: "billing-dev",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      !o.Logs,
		HTTPHost:   o.Host,
		HTTPPort:   o.MonitorPort,

		JetStreamMaxStore: o.MaxFileStore,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devstack: NATS: %w", err)
	}
	if o.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("devstack: NATS did not become ready within 10s")
	}
	return s, nil
}
