package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
)

// point is the state of the measured processes at one moment.
type point struct {
	label          string
	worker, server procStatus
	workerCPU      *usage
	serverCPU      *usage
}

func runWaiting(ctx context.Context, o options, r *report) error {
	ra := strconv.Itoa(int(o.waitAfter / time.Second))
	r.printf("\n## 3. Waiting capacity (%s operations on Retry-After %s s)\n\n", thousands(float64(o.waitN)), ra)
	e, closeEmu, err := newProcEnv(ctx, o, "waiting", emulator.Options{
		Default: []emulator.Reply{emulator.OK()},
	})
	if err != nil {
		return err
	}
	defer closeEmu()
	if err := waitingWorker(ctx, o, r, e); err != nil {
		return err
	}
	if o.pollers {
		if err := waitingPollers(ctx, o, r, e.dir, e.emu, e.ca, e.secretFile); err != nil {
			return fmt.Errorf("azcore pollers: %w", err)
		}
	}
	return nil
}

func (o options) settle() time.Duration {
	if o.smoke {
		return time.Second
	}
	return 5 * time.Second
}

// procEnv is what the multi-process measurements share: the binaries and
// the emulator (in this process) with its CA and the client secret.
type procEnv struct {
	dir, natsBin, workerBin, ca, secretFile string
	emu                                     *emulator.Server
}

// newProcEnv prepares a multi-process part in o.dir/name: nats-server and
// cmd/worker built, the client secret written, and an emulator in this
// process (so its work is not in the figures of the measured processes)
// started with emuOpts and the dev client; close stops the emulator.
func newProcEnv(ctx context.Context, o options, name string, emuOpts emulator.Options) (e *procEnv, close func(), err error) {
	dir := filepath.Join(o.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	progress("%s: building nats-server and cmd/worker", name)
	natsBin, workerBin, err := buildBinaries(ctx, filepath.Join(dir, "bin"))
	if err != nil {
		return nil, nil, err
	}
	secret := "bench-secret"
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		return nil, nil, err
	}
	emuOpts.Audience = devstack.DevAudience
	emuOpts.Clients = map[string]emulator.Client{devstack.DevClientID: {Tenant: devstack.DevTenant, Secret: secret}}
	emu := emulator.Start(emuOpts)
	ca := filepath.Join(dir, "emulator-ca.pem")
	if err := emu.WriteCACert(ca); err != nil {
		emu.Close()
		return nil, nil, err
	}
	return &procEnv{dir: dir, natsBin: natsBin, workerBin: workerBin, ca: ca, secretFile: secretFile, emu: emu}, emu.Close, nil
}

// startNATS starts a nats-server process with JetStream.
func (e *procEnv) startNATS(name string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	ns, err := startChild(name, e.dir, []string{e.natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js",
		"-sd", filepath.Join(e.dir, name+"-jetstream"), "-n", name}, nil, false)
	if err != nil {
		return nil, "", err
	}
	if err := waitListening(port, 20*time.Second); err != nil {
		ns.stop(5 * time.Second)
		return nil, "", fmt.Errorf("nats-server not listening: %w\n%s", err, ns.tail())
	}
	return ns, "nats://127.0.0.1:" + strconv.Itoa(port), nil
}

// startWorker starts cmd/worker configured by BILLING_* variables as e2e
// does.
func (e *procEnv) startWorker(name, url string, conc int, pollMaxWait time.Duration) (*child, error) {
	return startChild(name, e.dir, []string{e.workerBin}, append(devstack.WorkerEnv(e.emu, e.ca, e.secretFile),
		"BILLING_NATS_URL="+url,
		"BILLING_NATS_NAME="+name,
		"BILLING_CONCURRENCY="+strconv.Itoa(conc),
		"BILLING_MAX_ACK_PENDING="+strconv.Itoa(max(1000, conc)),
		"BILLING_POLL_MAX_WAIT="+max(15*time.Minute, pollMaxWait).String(),
		"BILLING_LOG_LEVEL=warn",
		"BILLING_HEALTH_ADDR=127.0.0.1:0",
		"BILLING_THROTTLE=false",     // the worker's capacity, not Azure's budget
		"BILLING_ARCHIVE_STORE=none", // the archive part measures it
	), false)
}

// benchConn is this benchmark's own connection to a nats-server process.
type benchConn struct {
	nc *nats.Conn
	js jetstream.JetStream
	cl *client.Client
}

func connectBench(url string) (*benchConn, error) {
	nc, err := nats.Connect(url, nats.Name("bench"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, err
	}
	cl, err := client.New(nc, "")
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &benchConn{nc: nc, js: js, cl: cl}, nil
}

func waitingWorker(ctx context.Context, o options, r *report, e *procEnv) error {
	emu := e.emu
	ra := strconv.Itoa(int(o.waitAfter / time.Second))
	ns, url, err := e.startNATS("nats-server")
	if err != nil {
		return err
	}
	defer ns.stop(20 * time.Second)
	wk, err := e.startWorker("worker", url, o.waitConc, 2*o.waitAfter)
	if err != nil {
		return err
	}
	defer wk.stop(30 * time.Second)
	bc, err := connectBench(url)
	if err != nil {
		return err
	}
	defer bc.nc.Close()
	js, cl := bc.js, bc.cl
	l := cl.Layout()
	if err := waitConsumers(ctx, js, l.WorkStream(), wk); err != nil {
		return err
	}
	alive := func() error {
		for _, c := range []*child{ns, wk} {
			if c.exited() {
				return fmt.Errorf("%s exited (%w):\n%s", c.name, c.err, c.tail())
			}
		}
		return nil
	}
	sample := func(label string, cpuFor time.Duration) (point, error) {
		p := point{label: label}
		if cpuFor > 0 {
			u, err := measureCPU(ctx, cpuFor, wk.pid(), ns.pid())
			if err != nil {
				return p, err
			}
			p.workerCPU, p.serverCPU = &u[0], &u[1]
		}
		var err error
		if p.worker, err = readStatus(wk.pid()); err != nil {
			return p, err
		}
		p.server, err = readStatus(ns.pid())
		return p, err
	}

	// Idle, after a warm-up (the token, the connections).
	progress("waiting: worker warm-up and idle figures")
	warm, err := newBatch(l, "wwarm", 2*o.waitConc+20)
	if err != nil {
		return err
	}
	if _, _, err := warm.run(ctx, cl, js, time.Minute); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(o.settle())
	var points []point
	idle, err := sample("idle, after a warm-up of "+strconv.Itoa(len(warm.ids))+" requests", o.settle())
	if err != nil {
		return err
	}
	points = append(points, idle)
	if err := alive(); err != nil {
		return err
	}

	// The waiting operations.
	progress("waiting: %d operations answered 202 Retry-After %s", o.waitN, ra)
	emu.Reset()
	emu.SetDefault(emulator.Accepted(ra), emulator.OK())
	wb, err := newBatch(l, "wait", o.waitN)
	if err != nil {
		return err
	}
	watcher, err := cl.Watch(ctx)
	if err != nil {
		return err
	}
	defer watcher.Stop()
	start := time.Now()
	pubErr := make(chan error, 1)
	go func() { pubErr <- wb.publish(ctx, js) }()
	var published bool
	var allWaiting time.Time
	for allWaiting.IsZero() {
		select {
		case err := <-pubErr:
			if err != nil {
				return err
			}
			published = true
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := alive(); err != nil {
			return err
		}
		if !published {
			continue
		}
		info, err := consumerInfo(ctx, js, l.WorkStream(), worker.RequestsConsumer)
		if err != nil {
			return err
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			allWaiting = time.Now()
		}
		if time.Since(start) > timeoutFor(o.waitN, 0) {
			return fmt.Errorf("the worker did not take every request within %s: %d pending, %d ack pending",
				timeoutFor(o.waitN, 0), info.NumPending, info.NumAckPending)
		}
	}
	var first, last time.Time
	starts := 0
	for _, c := range emu.Calls() {
		if c.Phase == emulator.PhasePoll {
			continue // a wake-up already (when the starts took about the wait)
		}
		if c.Status != 202 || c.Phase != emulator.PhaseStart {
			return fmt.Errorf("unexpected call %s %s -> %d", c.Method, c.Path, c.Status)
		}
		if starts == 0 {
			first, last = c.Time, c.Time
		}
		first, last = minTime(first, c.Time), maxTime(last, c.Time)
		starts++
	}
	if starts != o.waitN {
		return fmt.Errorf("%d start calls logged once every request was taken, want %d", starts, o.waitN)
	}
	firstDue := first.Add(o.waitAfter)
	startRate := rate(o.waitN, allWaiting.Sub(start))
	winStart, winEnd := allWaiting.Add(time.Second), firstDue.Add(-time.Second)
	if o.smoke {
		winStart = allWaiting.Add(100 * time.Millisecond)
		winEnd = firstDue.Add(-300 * time.Millisecond)
	}
	window := winEnd.Sub(winStart)
	r.printf("One nats-server process and one worker process (cmd/worker configured by BILLING_* variables as e2e does; concurrency %d), "+
		"both built from the module; "+
		"the emulator and this benchmark run in a third process. Requests are published asynchronously.\n\n", o.waitConc)
	r.printf("- %s operations accepted (first call 202, state stored, wake-up scheduled, request acked) in %s: %s req/s; "+
		"their first calls spanned %s; all were waiting at once from %s after the first publish until the first fell due %s later.\n",
		thousands(float64(o.waitN)), secs(allWaiting.Sub(start)), thousands(startRate), secs(last.Sub(first)),
		secs(allWaiting.Sub(start)), secs(firstDue.Sub(allWaiting)))
	partial := window < 200*time.Millisecond
	if partial {
		// Not a failure of the code: this machine could not start them
		// all within the wait.
		r.printf("- WARNING: the starts took %s, about the wait (%s): the operations were never all waiting at once, and the "+
			"figures below were taken while the first ones were already due. Use a smaller -wait-n or a longer -wait-retry-after.\n",
			secs(allWaiting.Sub(start)), o.waitAfter)
	}
	if d := time.Until(winStart); d > 0 {
		time.Sleep(d)
	}
	reqInfo, err := consumerInfo(ctx, js, l.WorkStream(), worker.RequestsConsumer)
	if err != nil {
		return err
	}
	pollInfo, err := consumerInfo(ctx, js, l.WorkStream(), worker.PollsConsumer)
	if err != nil {
		return err
	}
	ws, err := js.Stream(ctx, l.WorkStream())
	if err != nil {
		return err
	}
	wsInfo, err := ws.Info(ctx)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, l.StateBucket())
	if err != nil {
		return err
	}
	kvStatus, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	cpuWindow := max(min(time.Until(winEnd), 30*time.Second), 100*time.Millisecond)
	waiting, err := sample(fmt.Sprintf("%s waiting (CPU over %s of the wait)", thousands(float64(o.waitN)), secs(cpuWindow)), cpuWindow)
	if err != nil {
		return err
	}
	points = append(points, waiting)
	if err := alive(); err != nil {
		return err
	}

	progress("waiting: the wake-ups fall due")
	got, err := wb.collect(ctx, watcher, timeoutFor(o.waitN, time.Until(firstDue)))
	if err != nil {
		return fmt.Errorf("after the wait: %w", err)
	}
	for i, c := range got.completed {
		if c.AzureCalls != 2 {
			return fmt.Errorf("request %s: %d Azure calls, want 2", wb.ids[i], c.AzureCalls)
		}
	}
	lat, err := pollLateness(emu.Calls(), wb, 2, o.waitAfter)
	if err != nil {
		return err
	}
	time.Sleep(2 * o.settle())
	after, err := sample(fmt.Sprintf("idle again, after the %s completed", thousands(float64(o.waitN))), o.settle())
	if err != nil {
		return err
	}
	points = append(points, after)

	r.printf("\n| moment | worker RSS (peak) | worker threads | worker CPU | nats-server RSS (peak) | nats-server threads | nats-server CPU |\n|---|---|---|---|---|---|---|\n")
	for _, p := range points {
		r.printf("| %s | %s (%s) | %d | %s | %s (%s) | %d | %s |\n", p.label, mib(p.worker.rssKB), mib(p.worker.hwmKB), p.worker.threads,
			cpuText(p.workerCPU), mib(p.server.rssKB), mib(p.server.hwmKB), p.server.threads, cpuText(p.serverCPU))
	}
	r.printf("\nWhile the %s waited: consumer %q pending %d, ack pending %d; consumer %q pending %d, ack pending %d. "+
		"Work stream %s: %s messages, %s; state bucket: %s entries, %s (on disk, file storage). "+
		"The worker has no goroutine count to read (no debug endpoint); its OS threads are shown.\n",
		thousands(float64(o.waitN)), worker.RequestsConsumer, reqInfo.NumPending, reqInfo.NumAckPending,
		worker.PollsConsumer, pollInfo.NumPending, pollInfo.NumAckPending, l.WorkStream(),
		thousands(float64(wsInfo.State.Msgs)), mib(int64(wsInfo.State.Bytes/1024)), thousands(float64(kvStatus.Values())), mib(int64(kvStatus.Bytes()/1024)))
	growth := pct(waiting.worker.rssKB, idle.worker.rssKB)
	growthAfter := pct(waiting.worker.rssKB, after.worker.rssKB)
	serverDelta := waiting.server.rssKB - idle.server.rssKB
	r.printf("\nWorker RSS while the %s waited: %+.1f%% against its idle RSS before they arrived, %+.1f%% against its idle RSS once they "+
		"had all completed (the same work done, nothing waiting). nats-server RSS: %s more with the %s waiting (their state entries "+
		"and scheduled messages) than before they arrived: %s per 100,000 waiting operations.\n",
		thousands(float64(o.waitN)), growth, growthAfter, mib(serverDelta), thousands(float64(o.waitN)), mib(serverDelta*100000/int64(o.waitN)))
	r.printf("\nThe wake-ups: %s polls, due within %s of each other; lateness p50 %s, p99 %s, max %s, early %d; "+
		"all %s completed with 2 Azure calls each.\n", thousands(float64(len(lat.all))), secs(lat.dueSpread),
		ms(lat.all.quantile(.5)), ms(lat.all.quantile(.99)), ms(lat.all[len(lat.all)-1]), lat.early, thousands(float64(o.waitN)))
	r.goal(!partial && growth <= 10, "worker RSS with %s waiting within 10%% of its idle RSS before they arrived: %+.1f%% (%+.1f%% against idle after they completed)",
		thousands(float64(o.waitN)), growth, growthAfter)
	r.goal(true, "nats-server memory per 100,000 waiting operations reported: %s", mib(serverDelta*100000/int64(o.waitN)))
	r.goal(!partial && waiting.workerCPU.pct < 5 && waiting.serverCPU.pct < 5, "CPU near idle while waiting: worker %s, nats-server %s",
		cpuText(waiting.workerCPU), cpuText(waiting.serverCPU))
	r.goal(reqInfo.NumPending == 0 && reqInfo.NumAckPending == 0 && pollInfo.NumAckPending == 0,
		"waiting operations hold no consumer slot: requests %d/%d, polls %d/%d pending/ack pending",
		reqInfo.NumPending, reqInfo.NumAckPending, pollInfo.NumPending, pollInfo.NumAckPending)
	r.goal(lat.early == 0, "no early poll (waiting wake-ups): %d early of %s", lat.early, thousands(float64(len(lat.all))))
	if lat.early > 0 {
		return fmt.Errorf("%d of the worker's polls came before the Retry-After had passed", lat.early)
	}
	return nil
}

func cpuText(u *usage) string {
	if u == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%% (%s)", u.pct, secs(u.interval))
}

func pct(v, base int64) float64 {
	if base == 0 {
		return 0
	}
	return 100 * float64(v-base) / float64(base)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// waitConsumers waits until the worker has created its consumers.
func waitConsumers(ctx context.Context, js jetstream.JetStream, stream string, wk *child) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err1 := js.Consumer(ctx, stream, worker.RequestsConsumer)
		_, err2 := js.Consumer(ctx, stream, worker.PollsConsumer)
		if err1 == nil && err2 == nil {
			return nil
		}
		if wk.exited() {
			return fmt.Errorf("worker exited (%w):\n%s", wk.err, wk.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the worker did not set up its consumers within 30s: %w\n%s", errors.Join(err1, err2), wk.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The azcore side: one process holding every operation in a goroutine
// that sleeps in PollUntilDone.

const childArg = "-azcore-pollers-child"

func waitingPollers(ctx context.Context, o options, r *report, dir string, emu *emulator.Server, ca, secretFile string) error {
	ra := strconv.Itoa(int(o.waitAfter / time.Second))
	emu.Reset()
	emu.SetDefault(emulator.Accepted(ra), emulator.OK())
	warmN := 2*o.waitConc + 20
	for i := range warmN {
		emu.Script(devstack.InvoiceName("plw", i), emulator.OK())
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	progress("waiting: %d azcore pollers in one process", o.waitN)
	ch, err := startChild("azcore-pollers", dir, []string{exe, childArg, "-url", emu.URL(), "-ca", ca, "-secret-file", secretFile,
		"-n", strconv.Itoa(o.waitN), "-conc", strconv.Itoa(o.waitConc), "-warm", strconv.Itoa(warmN)}, nil, true)
	if err != nil {
		return err
	}
	defer ch.stop(5 * time.Second)
	idleLine, err := ch.next(ctx, "IDLE", 2*time.Minute)
	if err != nil {
		return err
	}
	time.Sleep(o.settle())
	u, err := measureCPU(ctx, o.settle(), ch.pid())
	if err != nil {
		return err
	}
	idle, err := readStatus(ch.pid())
	if err != nil {
		return err
	}
	emu.Reset()
	emu.SetDefault(emulator.Accepted(ra), emulator.OK())
	start := time.Now()
	if _, err := fmt.Fprintln(ch.stdin, "go"); err != nil {
		return err
	}
	waitLine, err := ch.next(ctx, "WAITING", timeoutFor(o.waitN, 0))
	if err != nil {
		return err
	}
	allWaiting := time.Now()
	b := &batch{tag: "plr"}
	for i := range o.waitN {
		inv := devstack.InvoiceName("plr", i)
		b.ids, b.invs = append(b.ids, inv), append(b.invs, inv)
	}
	var first time.Time
	starts := 0
	for _, c := range emu.Calls() {
		if c.Phase != emulator.PhaseStart {
			continue
		}
		if starts == 0 {
			first = c.Time
		}
		first = minTime(first, c.Time)
		starts++
	}
	if starts != o.waitN {
		return fmt.Errorf("%d start calls logged once every poller began, want %d", starts, o.waitN)
	}
	firstDue := first.Add(o.waitAfter)
	winStart, winEnd := allWaiting.Add(time.Second), firstDue.Add(-time.Second)
	if o.smoke {
		winStart, winEnd = allWaiting.Add(100*time.Millisecond), firstDue.Add(-300*time.Millisecond)
	}
	pollersPartial := winEnd.Sub(winStart) < 200*time.Millisecond
	if pollersPartial {
		r.printf("\nWARNING: the azcore pollers took %s to begin, about the wait: they were never all waiting at once, and the "+
			"figures below were taken while the first ones were already due.\n", secs(allWaiting.Sub(start)))
	}
	time.Sleep(time.Until(winStart))
	cpuWindow := max(min(time.Until(winEnd), 30*time.Second), 100*time.Millisecond)
	wu, err := measureCPU(ctx, cpuWindow, ch.pid())
	if err != nil {
		return err
	}
	waiting, err := readStatus(ch.pid())
	if err != nil {
		return err
	}
	doneLine, err := ch.next(ctx, "DONE", timeoutFor(o.waitN, time.Until(firstDue)))
	if err != nil {
		return err
	}
	if !strings.Contains(doneLine, fmt.Sprintf(" ok=%d failed=0", o.waitN)) {
		return fmt.Errorf("the pollers did not all complete: %s", doneLine)
	}
	lat, err := pollLateness(emu.Calls(), b, 2, o.waitAfter)
	if err != nil {
		return err
	}
	select {
	case <-ch.done:
		if ch.err != nil {
			return fmt.Errorf("pollers process: %w", ch.err)
		}
	case <-time.After(30 * time.Second):
		return errors.New("the pollers process did not exit")
	}
	r.printf("\nSide by side: %s azcore runtime.Pollers in one process (`go run ./cmd/bench` re-executed as %s), each in its own goroutine: "+
		"POST (at most %d at once, over at most %d connections), then PollUntilDone, which sleeps on the 202's Retry-After. "+
		"All began in %s; their polls were late by p50 %s, p99 %s, max %s (%d early); all completed.\n\n",
		thousands(float64(o.waitN)), childArg, o.waitConc, o.waitConc, secs(allWaiting.Sub(start)),
		ms(lat.all.quantile(.5)), ms(lat.all.quantile(.99)), ms(lat.all[len(lat.all)-1]), lat.early)
	r.printf("| moment | RSS (peak) | threads | goroutines | CPU |\n|---|---|---|---|---|\n")
	r.printf("| idle, after a warm-up of %d operations | %s (%s) | %d | %s | %s |\n", warmN, mib(idle.rssKB), mib(idle.hwmKB), idle.threads,
		field(idleLine, "goroutines"), cpuText(&u[0]))
	r.printf("| %s waiting | %s (%s) | %d | %s | %s |\n", thousands(float64(o.waitN)), mib(waiting.rssKB), mib(waiting.hwmKB), waiting.threads,
		field(waitLine, "goroutines"), cpuText(&wu[0]))
	r.printf("\nazcore process RSS with %s waiting: %+.1f%% over its idle (%s per 100,000 waiting operations).\n",
		thousands(float64(o.waitN)), pct(waiting.rssKB, idle.rssKB), mib((waiting.rssKB-idle.rssKB)*100000/int64(o.waitN)))
	return nil
}

// field returns the value of name=value in a line.
func field(line, name string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return "?"
}
