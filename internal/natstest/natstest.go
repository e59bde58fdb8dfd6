// Package natstest gives a test JetStream on an embedded NATS server of
// its own (file storage in the test's temporary directory), stopped when
// the test ends.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
)

// JetStream starts a server with JetStream for t and returns a JetStream
// context on a connection to it.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	srv, err := devstack.StartNATS(devstack.NATSOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
