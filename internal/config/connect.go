package config

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Connect opens the NATS connection the configuration describes:
// credentials file, TLS, and endless reconnection (the worker's state is
// in JetStream; a lost connection only pauses it). A server that cannot be
// reached at start is waited for the same way: the connection starts out
// reconnecting, and the worker's JetStream set-up retries until it comes
// (a worker started before NATS, or during an outage, does not exit).
func (c *Config) Connect(log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(c.NATSName),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { // also the first connection, when it was retried
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	}
	if c.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.NATSCredsFile))
	}
	if c.NATSCAFile != "" {
		opts = append(opts, nats.RootCAs(c.NATSCAFile))
	}
	if c.NATSCertFile != "" || c.NATSKeyFile != "" {
		opts = append(opts, nats.ClientCert(c.NATSCertFile, c.NATSKeyFile))
	}
	nc, err := nats.Connect(strings.TrimSpace(c.NATSURL), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// Logger returns a JSON logger at the configured level.
func (c *Config) Logger(w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log-level %q: %w", c.LogLevel, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
}
