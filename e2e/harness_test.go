// Package e2e holds the multi-process tests: real nats-server processes
// built from the Go module, worker processes built from cmd/worker, and the
// Azure Billing emulator, killed and restarted while requests flow.
//
// Its tests run one at a time, not in parallel: each starts several
// processes that share the machine's cores, and asserts on timing (a pause
// held, a drain within its grace period, a kill landing mid-download) that
// another test's load would distort.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/messages"
)

// Binaries built once for the package.
var bin struct {
	natsServer, worker, enqueue string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "billing-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.natsServer = filepath.Join(dir, "nats-server")
	bin.worker = filepath.Join(dir, "worker")
	bin.enqueue = filepath.Join(dir, "enqueue")
	for _, b := range []struct{ out, pkg string }{
		{bin.natsServer, "github.com/nats-io/nats-server/v2"},
		{bin.worker, "github.com/azbilling/worker/cmd/worker"},
		{bin.enqueue, "github.com/azbilling/worker/cmd/enqueue"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process whose output goes to a file.
type proc struct {
	name string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
}

// signal sends sig and waits up to timeout for the process to end; it
// returns the exit error (nil for exit 0).
func (p *proc) signal(t *testing.T, sig syscall.Signal, timeout time.Duration) error {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within %s after %v", p.name, timeout, sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
	return p.err
}

// crashed reports a process that ended without being signalled.
func (p *proc) crashed() (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false, nil
	}
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// checkAlive fails the test if any process ended on its own.
func checkAlive(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		if dead, err := p.crashed(); dead {
			t.Fatalf("%s exited on its own (%v):\n%s", p.name, err, p.tail())
		}
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// natsNode is a nats-server process.
type natsNode struct {
	proc
	port int
}

func startNATS(t *testing.T, name, dir string, extra ...string) *natsNode {
	t.Helper()
	n := newNATS(t, name, dir, extra...)
	n.start(t)
	n.waitReady(t)
	return n
}

// newNATS is a nats-server process on a port of its own, not started yet.
func newNATS(t *testing.T, name, dir string, extra ...string) *natsNode {
	t.Helper()
	port := freePort(t)
	n := &natsNode{port: port, proc: proc{
		name: name,
		args: append([]string{bin.natsServer, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir, "-n", name}, extra...),
		log:  filepath.Join(t.TempDir(), name+".log"),
	}}
	t.Cleanup(func() { _ = n.signal(t, syscall.SIGTERM, 10*time.Second) }) // signal reports a slow stop itself
	return n
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

func (n *natsNode) waitReady(t *testing.T) {
	t.Helper()
	err := testwait.UntilNoError(20*time.Second, n.name+" listening", func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, n.tail())
	}
}

// env is the shared set-up: the emulator and what a worker process needs
// to use it.
type env struct {
	emu        *emulator.Server
	workerEnv  []string
	dir        string
	secretFile string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	secret := "e2e-secret"
	e := &env{dir: dir, secretFile: filepath.Join(dir, "secret")}
	if err := os.WriteFile(e.secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	e.emu = emulator.Start(emulator.Options{
		Audience: devstack.DevAudience,
		Clients:  map[string]emulator.Client{devstack.DevClientID: {Tenant: devstack.DevTenant, Secret: secret}},
	})
	t.Cleanup(e.emu.Close)
	ca := filepath.Join(dir, "emulator-ca.pem")
	if err := e.emu.WriteCACert(ca); err != nil {
		t.Fatal(err)
	}
	e.workerEnv = append(devstack.WorkerEnv(e.emu, ca, e.secretFile),
		"BILLING_HTTP_TIMEOUT=2s",
		"BILLING_ACK_WAIT=5s",
		"BILLING_DRAIN_TIMEOUT=10s",
		"BILLING_POLL_DEFAULT_WAIT=1s",
		"BILLING_BACKOFF_MAX=2s",
		"BILLING_LOG_LEVEL=warn",
		"BILLING_HEALTH_ADDR=127.0.0.1:0",
		// The shared throttle is on, with buckets far above these tests'
		// rates: the tests of the throttle set their own.
		"BILLING_THROTTLE_BILLING_WRITES=1000/1s", "BILLING_THROTTLE_BILLING_WRITES_BURST=1000",
		"BILLING_THROTTLE_BILLING_READS=1000/1s", "BILLING_THROTTLE_BILLING_READS_BURST=1000",
		"BILLING_THROTTLE_COSTMANAGEMENT=1000/1s", "BILLING_THROTTLE_COSTMANAGEMENT_BURST=1000",
	)
	return e
}

func (e *env) worker(t *testing.T, name, natsURL string, extra ...string) *proc {
	t.Helper()
	p := &proc{
		name: name,
		args: []string{bin.worker},
		env:  append(append(append([]string(nil), e.workerEnv...), "BILLING_NATS_URL="+natsURL, "BILLING_NATS_NAME="+name), extra...),
		log:  filepath.Join(e.dir, name+".log"),
	}
	p.start(t)
	t.Cleanup(func() { _ = p.signal(t, syscall.SIGKILL, 5*time.Second) }) // killed: its exit error is expected
	return p
}

// script gives request i one of a few realistic flows and returns the
// request.
func script(emu *emulator.Server, i int, prefix string) messages.Request {
	kind := devstack.ScriptedKinds()[i%len(devstack.ScriptedKinds())]
	inv := devstack.InvoiceName(prefix, i)
	switch i % 10 {
	case 0, 1, 2:
		emu.Script(inv, emulator.OK())
	case 3: // a slow first answer: calls are in flight when NATS goes away
		emu.Script(inv, emulator.OK().After(1500*time.Millisecond))
	case 4, 5, 6:
		emu.Script(inv, emulator.Accepted("1"), emulator.Accepted("1"), emulator.OK())
	// Throttling lands on the polls, so that every request needs exactly
	// one POST (the chaos run checks that the emulator never sees two).
	case 7, 8:
		emu.Script(inv, emulator.Accepted("1"), emulator.Throttled(429, "Retry-After", "1"), emulator.OK())
	default:
		emu.Script(inv, emulator.Accepted("1"), emulator.Throttled(503, "x-ms-ratelimit-microsoft.consumption-retry-after", "1"), emulator.OK())
	}
	return devstack.Sample(kind, fmt.Sprintf("%s-%05d", prefix, i), inv)
}

// connect opens a client connection that survives server restarts.
func connect(t *testing.T, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// publishAll submits the requests, retrying each until the server takes it.
func publishAll(t *testing.T, js jetstream.JetStream, reqs []messages.Request) {
	t.Helper()
	l := messages.NewLayout("")
	for _, r := range reqs {
		data := mustJSON(r)
		testwait.ForNoError(t, time.Minute, "publish "+r.ID, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, l.Request(r.Kind), data, jetstream.WithMsgID(r.ID))
			return err
		})
	}
}

// waitStream waits until the worker's streams exist (a worker created them).
func waitStream(t *testing.T, js jetstream.JetStream, name string, timeout time.Duration) {
	t.Helper()
	testwait.ForNoError(t, timeout, "stream "+name, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.Stream(ctx, name)
		return err
	})
}

// eventCounts reads every event kept and counts them per request id. It
// retries each read, as right after a node restart the stream may still be
// electing a leader.
func eventCounts(t *testing.T, js jetstream.JetStream) (map[string]int, map[string]string) {
	t.Helper()
	var (
		stream jetstream.Stream
		info   *jetstream.StreamInfo
	)
	retry(t, func(ctx context.Context) (err error) {
		if stream, err = js.Stream(ctx, messages.NewLayout("").EventsStream()); err == nil {
			info, err = stream.Info(ctx)
		}
		return err
	})
	counts, outcomes := map[string]int{}, map[string]string{}
	if info.State.Msgs == 0 {
		return counts, outcomes
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		var m *jetstream.RawStreamMsg
		retry(t, func(ctx context.Context) (err error) {
			m, err = stream.GetMsg(ctx, seq)
			return err
		})
		id := m.Header.Get(messages.HeaderRequestID)
		counts[id]++
		outcomes[id] = m.Header.Get(messages.HeaderOutcome)
		if outcomes[id] == messages.OutcomeFailed {
			outcomes[id] += ":" + failureCode(m.Data)
		}
	}
	return counts, outcomes
}

// retry runs f until it succeeds, for up to a minute.
func retry(t *testing.T, f func(context.Context) error) {
	t.Helper()
	testwait.ForNoError(t, time.Minute, "a read of the stream", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return f(ctx)
	})
}

func failureCode(data []byte) string {
	i := bytes.Index(data, []byte(`"code":"`))
	if i < 0 {
		return "?"
	}
	rest := data[i+8:]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

// eventsKept returns how many events the events stream holds.
func eventsKept(js jetstream.JetStream) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, messages.NewLayout("").EventsStream())
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// starts counts, per invoice, the first calls (the POSTs, or the GETs of
// kind invoice) the emulator saw, and those it accepted.
func starts(emu *emulator.Server) (all, accepted map[string]int) {
	all, accepted = map[string]int{}, map[string]int{}
	for _, c := range emu.Calls() {
		if c.Phase == "start" {
			all[c.InvoiceName]++
			if c.Accepted {
				accepted[c.InvoiceName]++
			}
		}
	}
	return all, accepted
}

func summarize(outcomes map[string]string) string {
	by := map[string]int{}
	for _, o := range outcomes {
		by[o]++
	}
	var parts []string
	for k, v := range by {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, " ")
}
