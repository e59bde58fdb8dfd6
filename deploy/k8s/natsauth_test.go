package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/azbilling/worker/internal/telemetry"

	"github.com/azbilling/worker/internal/config"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// TestWorkerUnderDeployedPermissions runs the real worker, configured by
// the base manifests' settings (BILLING_AZURE_CREDENTIAL=workload-identity
// included), against a NATS server in operator mode whose users have
// exactly the permissions of deploy/nats/permissions.yaml, and the Azure
// Billing emulator:
//
//   - the worker sets up its streams, consumers and bucket, takes a request
//     through a 202, a scheduled poll and a 200, and rejects an invalid one
//     to the dead letters, all without a single permission violation;
//   - a submitter with its documented permissions submits and sees events;
//   - neither can do what they should not;
//   - the probe paths of the Deployment answer on the worker's handler;
//   - the monitoring endpoint answers KEDA's query (account public key,
//     stream, consumers of the ScaledObject's triggers).
//
// It runs once with JetStream's v1 ack subjects and once with v2.
//
// Every entry of permissions.yaml must be used (the server traces what each
// user publishes and subscribes to): what nothing needs is not granted.
func TestWorkerUnderDeployedPermissions(t *testing.T) {
	t.Parallel()
	used := &usage{subjects: map[string]map[string]bool{}}
	for _, v2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("ack-v2=%v", v2), func(t *testing.T) { runUnderPermissions(t, v2, used) })
	}
	if t.Failed() {
		return
	}
	for user, p := range loadPermissions(t).Users {
		for _, kind := range []struct {
			op    string
			allow []string
		}{{"PUB", p.Publish.Allow}, {"SUB", p.Subscribe.Allow}} {
			for _, pattern := range kind.allow {
				if !used.matches(user, kind.op, pattern) {
					t.Errorf("%s: permissions.yaml grants %s %s, which nothing used: drop it (least privilege)", user, kind.op, pattern)
				}
			}
		}
	}
}

// usage records, per user, the subjects their connections published to
// ("PUB subject") and subscribed to ("SUB subject"), from the server's trace.
type usage struct {
	mu       sync.Mutex
	subjects map[string]map[string]bool
}

func (u *usage) add(user, op, subject string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.subjects[user] == nil {
		u.subjects[user] = map[string]bool{}
	}
	u.subjects[user][op+" "+subject] = true
}

func (u *usage) matches(user, op, pattern string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k := range u.subjects[user] {
		o, subj, _ := strings.Cut(k, " ")
		if o == op && subjectMatches(pattern, subj) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether subject matches a NATS permission pattern
// ("*" one token, ">" one or more).
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(p) == len(s)
}

// violationLog collects the server's log lines about permissions, and
// what the traced connections publish and subscribe to.
type violationLog struct {
	mu    sync.Mutex
	lines []string
	users map[uint64]string // client id -> user name, of traced connections
	used  *usage
}

var traceRE = regexp.MustCompile(`cid:(\d+) .*<<- \[(H?PUB|SUB) (\S+)`)

func (l *violationLog) trace(format string, v ...any) {
	m := traceRE.FindStringSubmatch(fmt.Sprintf(format, v...))
	if m == nil {
		return
	}
	cid, _ := strconv.ParseUint(m[1], 10, 64)
	l.mu.Lock()
	user, ok := l.users[cid]
	l.mu.Unlock()
	if ok {
		l.used.add(user, strings.TrimPrefix(m[2], "H"), m[3])
	}
}

func (l *violationLog) watch(nc *nats.Conn, user string) {
	id, err := nc.GetClientID()
	if err != nil {
		panic(err)
	}
	l.mu.Lock()
	l.users[id] = user
	l.mu.Unlock()
}

func (l *violationLog) add(format string, v ...any) {
	s := fmt.Sprintf(format, v...)
	if strings.Contains(strings.ToLower(s), "violation") || strings.Contains(s, "Authorization") {
		l.mu.Lock()
		l.lines = append(l.lines, s)
		l.mu.Unlock()
	}
}

func (l *violationLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

func (l *violationLog) Noticef(f string, v ...any) { l.add(f, v...) }
func (l *violationLog) Warnf(f string, v ...any)   { l.add(f, v...) }
func (l *violationLog) Fatalf(f string, v ...any)  { l.add(f, v...) }
func (l *violationLog) Errorf(f string, v ...any)  { l.add(f, v...) }
func (l *violationLog) Debugf(f string, v ...any)  {}
func (l *violationLog) Tracef(f string, v ...any)  { l.trace(f, v...) }

// operatorSetup is what nsc-setup.sh makes, made here with the same
// libraries nsc uses: an operator, its system account, the BILLING account
// with JetStream, and one creds file per user of permissions.yaml.
type operatorSetup struct {
	operatorJWT string
	sysPub      string
	accountPub  string
	jwts        map[string]string // account public key -> JWT
	creds       map[string]string // user -> creds file
}

func makeOperator(t *testing.T, perms natsPermissions) *operatorSetup {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "billing-operator"
	ojwt, err := oc.Encode(okp)
	must(err)

	s := &operatorSetup{operatorJWT: ojwt, jwts: map[string]string{}, creds: map[string]string{}}
	account := func(name string, js bool) (nkeys.KeyPair, string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: 512 << 20, DiskStorage: 4 << 30, Streams: -1, Consumer: -1}
		}
		aj, err := ac.Encode(okp)
		must(err)
		s.jwts[apub] = aj
		return akp, apub
	}
	_, s.sysPub = account("SYS", false)
	akp, apub := account("BILLING", true)
	s.accountPub = apub

	dir := t.TempDir()
	for name, p := range perms.Users {
		ukp, err := nkeys.CreateUser()
		must(err)
		upub, err := ukp.PublicKey()
		must(err)
		uc := jwt.NewUserClaims(upub)
		uc.Name = name
		uc.Pub.Allow.Add(p.Publish.Allow...)
		uc.Sub.Allow.Add(p.Subscribe.Allow...)
		uj, err := uc.Encode(akp)
		must(err)
		seed, err := ukp.Seed()
		must(err)
		creds, err := jwt.FormatUserConfig(uj, seed)
		must(err)
		path := filepath.Join(dir, name+".creds")
		must(os.WriteFile(path, creds, 0o600))
		s.creds[name] = path
	}
	return s
}

// natsServerOptions writes the server configuration (nats-config/nats.conf
// including ../nats-auth/auth.conf, as mounted by the chart) and loads it.
func natsServerOptions(t *testing.T, op *operatorSetup) *server.Options {
	t.Helper()
	v := natsValues(t)
	root := t.TempDir()
	include, _ := v.Config.Merge["$include"].(string)
	authPath := filepath.Join(root, "nats-config", filepath.FromSlash(include))
	var auth strings.Builder
	fmt.Fprintf(&auth, "operator: %s\nsystem_account: %s\nresolver_preload: {\n", op.operatorJWT, op.sysPub)
	for pub, j := range op.jwts {
		fmt.Fprintf(&auth, "  %s: %s\n", pub, j)
	}
	auth.WriteString("}\n")
	var conf strings.Builder
	fmt.Fprintf(&conf, "server_name: nats-0\nresolver {\n  dir: %q\n", filepath.Join(root, "resolver"))
	for k, val := range v.Config.Resolver.Merge {
		if str, ok := val.(string); ok {
			val = strconv.Quote(str)
		}
		fmt.Fprintf(&conf, "  %s: %v\n", k, val)
	}
	fmt.Fprintf(&conf, "}\ninclude %s\n", include)
	for path, content := range map[string]string{authPath: auth.String(), filepath.Join(root, "nats-config", "nats.conf"): conf.String()} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join(root, "nats-config", "nats.conf"))
	if err != nil {
		t.Fatalf("the NATS configuration does not load: %v", err)
	}
	if len(opts.TrustedOperators) != 1 || opts.SystemAccount != op.sysPub {
		t.Fatalf("auth.conf was not included: %d operators, system account %q", len(opts.TrustedOperators), opts.SystemAccount)
	}
	opts.Host, opts.Port, opts.HTTPHost, opts.HTTPPort = "127.0.0.1", -1, "127.0.0.1", -1
	opts.JetStream, opts.StoreDir, opts.NoSigs = true, filepath.Join(root, "jetstream"), true
	return opts
}

func runUnderPermissions(t *testing.T, ackV2 bool, used *usage) {
	perms := loadPermissions(t)
	op := makeOperator(t, perms)

	// NATS as deployed: the configuration the chart renders from
	// deploy/nats/values.yaml for what matters here (the full resolver, the
	// include of auth.conf from its own volume), and an auth.conf shaped as
	// nsc-setup.sh writes it. Ports, storage and names are the test's.
	opts := natsServerOptions(t, op)
	if ackV2 {
		opts.FeatureFlags = map[string]bool{"js_ack_fc_v2": true}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &violationLog{users: map[uint64]string{}, used: used}
	ns.SetLogger(log, false, true)
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}

	// Azure: the emulator accepts any federated token of this client.
	const tenant, clientID = "wi-tenant", "wi-client"
	emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{clientID: {Tenant: tenant}}})
	t.Cleanup(emu.Close)
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := os.WriteFile(tokenFile, []byte("projected-service-account-token"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The worker's settings are the base manifests', with only what points
	// at this test's NATS and Azure replaced (the workload identity webhook
	// and the Secret volume would provide these in a cluster).
	r := render(t, "base")
	env := workerEnv(t, r)
	for k, v := range map[string]string{
		"BILLING_NATS_URL":                   ns.ClientURL(),
		"BILLING_NATS_CREDS":                 op.creds["billing-worker"],
		"BILLING_AZURE_CLOUD":                "custom",
		"BILLING_ARM_ENDPOINT":               emu.URL(),
		"BILLING_ARM_AUDIENCE":               emulator.DefaultAudience,
		"BILLING_AUTHORITY_HOST":             emu.URL() + "/",
		"BILLING_AZURE_TENANT_ID":            tenant,
		"BILLING_AZURE_CLIENT_ID":            clientID,
		"BILLING_AZURE_FEDERATED_TOKEN_FILE": tokenFile,
		"BILLING_DISABLE_INSTANCE_DISCOVERY": "true",
		"BILLING_WAKE_OVERDUE_AFTER":         "1s", // the watchdog's look at a stale wake-up, below
	} {
		if _, ok := env[k]; ok && k != "BILLING_NATS_URL" && k != "BILLING_NATS_CREDS" {
			t.Fatalf("the base manifests set %s; this test would hide it", k)
		}
		env[k] = v
	}
	cfg := workerConfig(t, env)
	if cfg.AzureCredential != "workload-identity" {
		t.Fatalf("credential %q", cfg.AzureCredential)
	}
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	profiles, err := cfg.AzureProfiles(config.AzureDeps{Transport: emu.Client()})
	if err != nil {
		t.Fatal(err)
	}
	wnc, err := cfg.Connect(logger)
	if err != nil {
		t.Fatalf("the worker cannot connect with its credentials: %v", err)
	}
	t.Cleanup(wnc.Close)
	log.watch(wnc, "billing-worker")
	// Metrics in memory: collecting them runs the gauges, which read the
	// streams' info under the worker's permissions too.
	reader := sdkmetric.NewManualReader()
	tel := telemetry.Noop()
	tel.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	// Documents are downloaded (archive-store nats, the default) from the
	// emulator's links: trust its certificate.
	w, err := worker.New(cfg.Worker(), wnc, profiles, logger, worker.WithTelemetry(tel), worker.WithDownloader(emu.Client()))
	if err != nil {
		t.Fatal(err)
	}
	health := httptest.NewServer(w.Health())
	t.Cleanup(health.Close)
	get := func(path string) int {
		resp, err := http.Get(health.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(livenessPath); code != http.StatusOK {
		t.Errorf("GET %s = %d before start, want 200 (liveness does not wait for NATS)", livenessPath, code)
	}
	if code := get(readinessPath); code != http.StatusServiceUnavailable {
		t.Errorf("GET %s = %d before the streams exist, want 503", readinessPath, code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(cfg.DrainTimeout + 10*time.Second):
			t.Error("the worker did not stop")
		}
	})
	if err := testwait.Until(15*time.Second, "the worker ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the worker stopped while setting up JetStream (a missing permission?): %v; server: %v", err, log.take())
		default:
		}
		return w.Ready()
	}); err != nil {
		t.Fatalf("%v; server: %v; connection: %v", err, log.take(), wnc.LastError())
	}
	for _, p := range []string{livenessPath, readinessPath} {
		if code := get(p); code != http.StatusOK {
			t.Errorf("GET %s = %d on a ready worker, want 200", p, code)
		}
	}

	// An upstream system, with the submitter's permissions.
	snc, err := nats.Connect(ns.ClientURL(), nats.UserCredentials(op.creds["billing-submitter"]))
	if err != nil {
		t.Fatalf("the submitter cannot connect: %v", err)
	}
	t.Cleanup(snc.Close)
	log.watch(snc, "billing-submitter")
	events := make(chan *nats.Msg, 16)
	if _, err := snc.ChanSubscribe(messages.NewLayout(cfg.Prefix).Events(), events); err != nil {
		t.Fatal(err)
	}
	if err := snc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(snc)
	if err != nil {
		t.Fatal(err)
	}
	submit := func(id string, kind messages.Kind, body []byte) {
		m := nats.NewMsg(messages.NewLayout(cfg.Prefix).Request(kind))
		m.Data = body
		m.Header.Set(messages.HeaderMsgID, id)
		pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer pcancel()
		if _, err := js.PublishMsg(pctx, m); err != nil {
			t.Fatalf("submit %s: %v", id, err)
		}
	}
	waitEvent := func(id, outcome string) {
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-events:
				if m.Header.Get(messages.HeaderRequestID) == id {
					if got := m.Header.Get(messages.HeaderOutcome); got != outcome {
						t.Fatalf("request %s: outcome %s, want %s: %s", id, got, outcome, m.Data)
					}
					return
				}
			case <-timeout:
				t.Fatalf("no event for request %s; server: %v; worker connection: %v", id, log.take(), wnc.LastError())
			}
		}
	}

	// A request that Azure accepts with a 202 and finishes on the next poll:
	// state create and updates, a schedule, the polls consumer, the event.
	req := devstack.Sample(messages.KindInvoiceSummary, "perm-ok", devstack.InvoiceName("prm", 1))
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	emu.Script(devstack.InvoiceName("prm", 1), emulator.Accepted("1"), emulator.OK())
	// A document of 3 MiB: the console's download of it goes past the
	// ordered consumer's flow-control threshold (1 MiB pending).
	emu.SetDownload(devstack.InvoiceName("prm", 1), emulator.Download{Size: 3 << 20})
	submit(req.ID, req.Kind, body)
	waitEvent(req.ID, messages.OutcomeCompleted)

	// An invalid request: a failure event and a dead letter.
	submit("perm-bad", messages.KindInvoiceSummary, []byte(`{"version":1,"id":"perm-bad","kind":"invoice-summary","params":{}}`))
	waitEvent("perm-bad", messages.OutcomeFailed)

	// The ended request resubmitted past the duplicate window (another
	// message id): the worker looks its event up in the events stream and
	// sends live subscribers a copy.
	submit(req.ID+":again", req.Kind, body)
	waitEvent(req.ID, messages.OutcomeCompleted)

	// Two collections: an MCA account's invoices, summaries, transactions
	// and price sheets, and a billing subscription's invoices. The worker
	// writes their listed pages, requests their children (each kind it may),
	// and counts the children's ends.
	emu.SetListing(50, 2)
	for _, coll := range []messages.Request{
		{Version: 1, ID: "perm-coll-account", Kind: messages.KindCollection, Params: messages.Params{
			BillingAccountName: devstack.SampleMCAAccount, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31",
			DocumentKinds: []string{messages.DocInvoice, messages.DocSummary, messages.DocTransactions, messages.DocPriceSheet}}},
		{Version: 1, ID: "perm-coll-subscription", Kind: messages.KindCollection, Params: messages.Params{
			SubscriptionID: devstack.SampleSubscriptionID, PeriodStartDate: "2026-01-01", PeriodEndDate: "2026-01-31",
			DocumentKinds: []string{messages.DocInvoice}}},
	} {
		body, err := json.Marshal(coll)
		if err != nil {
			t.Fatal(err)
		}
		submit(coll.ID, coll.Kind, body)
		waitEvent(coll.ID, messages.OutcomeCompleted)
	}

	// A wake-up stored under the next second, for no operation, and not
	// scheduled (as one the server never fired stays): once the second
	// is a second past, the watchdog reads it and deletes it.
	stale := nats.NewMsg(messages.NewLayout(cfg.Prefix).Schedule("perm-stale", time.Now().Add(time.Second)))
	stale.Data = []byte(`{"id":"perm-stale","wake":1}`)
	wjs, err := jetstream.New(wnc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wjs.PublishMsg(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	work, err := wjs.Stream(context.Background(), messages.NewLayout(cfg.Prefix).WorkStream())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		_, err := work.GetLastMsgForSubject(context.Background(), stale.Subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watchdog did not delete a stale wake-up (%v); server: %v", err, log.take())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	gauges := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && len(g.DataPoints) > 0 {
				gauges[m.Name] = true
			}
		}
	}
	for _, name := range []string{"billing.operations.waiting", "billing.deadletter.stored", "billing.deadletter.limit", "billing.wakeups.overdue"} {
		if !gauges[name] {
			t.Errorf("gauge %s not observed under the worker's permissions", name)
		}
	}

	if v := log.take(); len(v) > 0 {
		t.Errorf("permission violations while working:\n%s", strings.Join(v, "\n"))
	}
	if err := wnc.LastError(); err != nil {
		t.Errorf("the worker's connection reports: %v", err)
	}

	// What KEDA reads: /jsz for the account, as the scaler asks for it.
	checkKEDAView(t, ns, op.accountPub, render(t, "base"))

	// The tools that manage schedules, with their own user, and a real
	// schedule firing every second: the worker reads its record, starts
	// last month's collection and stores the record back.
	checkScheduler(t, ns, op, cfg.Prefix, log)
	if v := log.take(); len(v) > 0 {
		t.Errorf("permission violations of the schedule tools or the schedule's fires:\n%s", strings.Join(v, "\n"))
	}

	// The operations console, with its own user: every page, then a
	// replay and a delete (write actions on).
	// A collection left running (its children wait ten minutes on Azure),
	// whose page reads its listed pages.
	emu.SetDefault(emulator.Accepted("600"))
	running := messages.Request{Version: 1, ID: "perm-coll-running", Kind: messages.KindCollection, Params: messages.Params{
		SubscriptionID: devstack.SampleSubscriptionID, PeriodStartDate: "2026-02-01", PeriodEndDate: "2026-02-28",
		DocumentKinds: []string{messages.DocInvoice}}}
	body, err = json.Marshal(running)
	if err != nil {
		t.Fatal(err)
	}
	submit(running.ID, running.Kind, body)
	checkConsole(t, ns, op, cfg.Prefix, log, running.ID)
	if v := log.take(); len(v) > 0 {
		t.Errorf("permission violations of the console:\n%s", strings.Join(v, "\n"))
	}

	// Least privilege: what neither user may do.
	denied := func(user string, try func(nc *nats.Conn) error) {
		t.Helper()
		errs := make(chan error, 4)
		nc, err := nats.Connect(ns.ClientURL(), nats.UserCredentials(op.creds[user]),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := try(nc); err != nil {
			t.Fatal(err)
		}
		_ = nc.Flush()
		select {
		case err := <-errs:
			if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("%s: %v, want a permissions violation", user, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s was not refused", user)
		}
	}
	pub := func(subj string) func(*nats.Conn) error {
		return func(nc *nats.Conn) error { return nc.Publish(subj, nil) }
	}
	sub := func(subj string) func(*nats.Conn) error {
		return func(nc *nats.Conn) error { _, err := nc.SubscribeSync(subj); return err }
	}
	denied("billing-worker", pub("$JS.API.STREAM.DELETE.BILLING_WORK"))
	denied("billing-worker", pub("$JS.API.STREAM.PURGE.BILLING_EVENTS"))
	denied("billing-worker", sub("billing.requests.>"))
	denied("billing-submitter", pub("$JS.API.STREAM.DELETE.BILLING_WORK"))
	denied("billing-submitter", pub("$KV.billing_operations.perm-ok"))
	denied("billing-submitter", pub("billing.internal.polls"))
	denied("billing-submitter", sub("billing.internal.>"))
	denied("billing-submitter", pub("billing.internal.cron.perm-monthly"))
	denied("billing-submitter", pub("$KV.billing_schedules.perm-monthly"))
	denied("billing-scheduler", pub("billing.internal.fires.perm-monthly")) // no fake fire
	denied("billing-scheduler", pub("billing.internal.polls"))
	denied("billing-scheduler", pub("$KV.billing_operations.perm-ok"))
	denied("billing-scheduler", pub("$JS.API.STREAM.DELETE.KV_billing_schedules"))
	denied("billing-scheduler", sub("billing.internal.>"))
	denied("billing-worker", pub("$JS.API.STREAM.DELETE.KV_billing_schedules"))
	denied("billing-console", pub("$KV.billing_operations.perm-ok"))
	denied("billing-console", pub("$JS.API.STREAM.DELETE.BILLING_DEADLETTER"))
	denied("billing-console", pub("$JS.API.STREAM.PURGE.KV_billing_operations"))
	denied("billing-console", pub("billing.internal.polls"))
}

// checkScheduler manages a schedule with the billing-scheduler user, as
// enqueue schedule does (add, show, list, pause, resume, run, backfill,
// delete), while the worker, with its own user, handles the schedule's
// fires: a six-field cron firing every second, whose fires cover last
// month (in Amsterdam) with a collection.
func checkScheduler(t *testing.T, ns *server.Server, op *operatorSetup, prefix string, log *violationLog) {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), nats.UserCredentials(op.creds["billing-scheduler"]))
	if err != nil {
		t.Fatalf("the schedule tools cannot connect: %v", err)
	}
	defer nc.Close()
	log.watch(nc, "billing-scheduler")
	cl, err := client.New(nc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := messages.Schedule{
		Version: 1, ID: "perm-monthly", Cron: "* * * * * *", TimeZone: "Europe/Amsterdam", Period: "previous-month",
		Request: messages.ScheduledRequest{Kind: messages.KindCollection, Params: messages.Params{
			SubscriptionID: devstack.SampleSubscriptionID, DocumentKinds: []string{messages.DocInvoice}}},
	}
	if created, err := cl.PutSchedule(ctx, s); err != nil || !created {
		t.Fatalf("add a schedule as billing-scheduler: %v, %v; server: %v", created, err, log.take())
	}
	// The coverage grid (enqueue coverage): the collections' records.
	if g, err := cl.Coverage(ctx, "2026-01", "2026-01"); err != nil || g.Totals[client.CoverageComplete] == 0 {
		t.Errorf("the coverage grid as billing-scheduler: %v, %+v; server: %v", err, g, log.take())
	}
	// Every fire after the first covers the same month: one collection,
	// the record's last fire moving on.
	var first client.ScheduleView
	testwait.ForNoError(t, 30*time.Second, "the schedule's fire starts last month's collection", func() error {
		v, err := cl.GetSchedule(ctx, s.ID)
		switch {
		case err != nil:
			return err
		case len(v.Periods) == 0:
			return errors.New("no period covered yet")
		case v.Periods[0].Phase == "":
			return fmt.Errorf("period %s covered, its request %s not stored yet", v.Periods[0].Key, v.Periods[0].RequestID)
		}
		first = v
		return nil
	})
	if p := first.Periods[0]; p.How != schedule.ByFire || p.RequestID != s.ID+"-"+p.Key || len(p.Key) != len("2006-01") {
		t.Errorf("the fire covered %+v, want last month's collection started by a fire", p)
	}
	testwait.ForNoError(t, 30*time.Second, "a later fire stores the record again", func() error {
		v, err := cl.GetSchedule(ctx, s.ID)
		if err == nil && !v.LastFire.After(first.LastFire) {
			err = fmt.Errorf("last fire still %s", v.LastFire)
		}
		if err == nil && len(v.Periods) != 1 {
			err = fmt.Errorf("%d periods, want the one month", len(v.Periods))
		}
		return err
	})
	list, err := cl.Schedules(ctx)
	if err != nil || len(list) != 1 || list[0].Schedule.ID != s.ID {
		t.Errorf("list schedules as billing-scheduler: %v, %+v", err, list)
	}
	for _, step := range []struct {
		what string
		do   func(context.Context, string) error
	}{{"pause", cl.PauseSchedule}, {"resume", cl.ResumeSchedule}} {
		if err := step.do(ctx, s.ID); err != nil {
			t.Errorf("%s as billing-scheduler: %v", step.what, err)
		}
	}
	run, err := cl.RunSchedule(ctx, s.ID, "2025-12")
	if err != nil {
		t.Fatalf("run as billing-scheduler: %v", err)
	}
	backfilled, err := cl.BackfillSchedule(ctx, s.ID, time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC), 12)
	if err != nil || len(backfilled) != 2 {
		t.Fatalf("backfill as billing-scheduler: %v, %d requests", err, len(backfilled))
	}
	for _, r := range append(backfilled, run) {
		testwait.ForNoError(t, 20*time.Second, "the worker takes "+r.ID, func() error {
			_, err := cl.Status(ctx, r.ID)
			return err
		})
	}
	if err := cl.DeleteSchedule(ctx, s.ID); err != nil {
		t.Errorf("delete as billing-scheduler: %v", err)
	}
	if _, err := cl.GetSchedule(ctx, s.ID); !errors.Is(err, client.ErrNoSchedule) {
		t.Errorf("after delete: %v, want %v", err, client.ErrNoSchedule)
	}
	// One left for the console's Schedules page: it fires on the 10th, and
	// has one period run (its collection's state is read for the page).
	kept := s
	kept.ID, kept.Cron = keptSchedule, "0 6 10 * *"
	if _, err := cl.PutSchedule(ctx, kept); err != nil {
		t.Fatalf("add as billing-scheduler: %v", err)
	}
	r, err := cl.RunSchedule(ctx, kept.ID, "2025-09")
	if err != nil {
		t.Fatalf("run as billing-scheduler: %v", err)
	}
	testwait.ForNoError(t, 20*time.Second, "the worker takes "+r.ID, func() error {
		_, err := cl.Status(ctx, r.ID)
		return err
	})
}

// keptSchedule is the schedule checkScheduler leaves for checkConsole.
const keptSchedule = "perm-kept"

// checkConsole serves the console on the billing-console user's
// connection and goes through its pages and write actions.
func checkConsole(t *testing.T, ns *server.Server, op *operatorSetup, prefix string, log *violationLog, runningCollection string) {
	t.Helper()
	cnc, err := nats.Connect(ns.ClientURL(), nats.UserCredentials(op.creds["billing-console"]))
	if err != nil {
		t.Fatalf("the console cannot connect: %v", err)
	}
	defer cnc.Close()
	log.watch(cnc, "billing-console")
	cl, err := client.New(cnc, prefix)
	if err != nil {
		t.Fatal(err)
	}
	const token = "permissions-test-console-token"
	srv, err := console.New(console.Options{Client: cl, Write: true, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, want int) string {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Errorf("console %s %s: %d, want %d; server: %v\n%s", method, path, res.StatusCode, want, log.take(), body)
		}
		return string(body)
	}
	ctx := context.Background()
	dls, err := cl.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) == 0 {
		t.Fatalf("dead letters under the console's permissions: %v %d", err, len(dls))
	}
	seq := strconv.FormatUint(dls[0].Sequence, 10)
	testwait.ForNoError(t, 20*time.Second, "collection "+runningCollection+" requests children", func() error {
		st, err := cl.Status(ctx, runningCollection)
		if err == nil && (st.Collection == nil || st.Collection.Spawned == 0) {
			err = errors.New("none yet")
		}
		return err
	})
	for _, p := range []string{"/", "/live/overview", "/operations", "/operations?state=completed", "/operations/perm-ok", "/live/operations/perm-ok",
		"/collections", "/collections/perm-coll-account", "/live/collections/perm-coll-subscription", "/collections/" + runningCollection,
		"/deadletters", "/deadletters/" + seq} {
		do(http.MethodGet, p, nil, http.StatusOK)
	}
	// The Schedules page: the schedules bucket's keys and records, and the
	// state of each period's request.
	if body := do(http.MethodGet, "/schedules", nil, http.StatusOK); !strings.Contains(body, `<tr id="schedule-`+keptSchedule+`">`) ||
		!strings.Contains(body, `href="/collections/`+keptSchedule+`-2025-09"`) || strings.Contains(body, "outcome-unknown") {
		t.Errorf("the console's Schedules page under its permissions: %s", body)
	}
	// The Coverage page: the collections' records, each cell linked to its
	// collection.
	if body := do(http.MethodGet, "/coverage?from=2026-01&to=2026-01", nil, http.StatusOK); !strings.Contains(body, `href="/collections/perm-coll-account"`) {
		t.Errorf("the console's Coverage page under its permissions: %s", body)
	}
	// An archived document, streamed from the Object Store.
	if body := do(http.MethodGet, "/operations/perm-ok/document", nil, http.StatusOK); !strings.HasPrefix(body, "%PDF") {
		t.Errorf("the console's download under its permissions: %.200q", body)
	}
	do(http.MethodPost, "/login", url.Values{"token": {token}}, http.StatusSeeOther)
	do(http.MethodPost, "/deadletters/"+seq+"/replay", url.Values{"mode": {"as-is"}, "confirm": {"yes"}}, http.StatusOK)
	do(http.MethodPost, "/deadletters/"+seq+"/delete", url.Values{"confirm": {"yes"}}, http.StatusSeeOther)
}

// checkKEDAView queries the monitoring endpoint the way KEDA's
// nats-jetstream scaler does and finds the stream and consumers of the
// ScaledObject's triggers under the account's public key (which the
// TriggerAuthentication gives as "account").
func checkKEDAView(t *testing.T, ns *server.Server, accountPub string, r *rendering) {
	t.Helper()
	var so scaledObject
	if err := kjsonUnmarshalLoose(r.one(t, "ScaledObject", "billing-worker").json, &so); err != nil {
		t.Fatal(err)
	}
	q := url.Values{}
	q.Set("acc", accountPub)
	q.Set("consumers", "true")
	q.Set("config", "true")
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ns.MonitorAddr().Port), Path: "/jsz", RawQuery: q.Encode()}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jsz struct {
		Accounts []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Streams []struct {
				Name      string `json:"name"`
				Consumers []struct {
					Name          string `json:"name"`
					NumPending    *int   `json:"num_pending"`
					NumAckPending *int   `json:"num_ack_pending"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		t.Fatal(err)
	}
	for _, tr := range so.Spec.Triggers {
		found := false
		for _, a := range jsz.Accounts {
			if a.ID != accountPub {
				continue
			}
			for _, s := range a.Streams {
				for _, c := range s.Consumers {
					if s.Name == tr.Metadata["stream"] && c.Name == tr.Metadata["consumer"] && c.NumPending != nil && c.NumAckPending != nil {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("KEDA's query %s does not show stream %s, consumer %s", u.String(), tr.Metadata["stream"], tr.Metadata["consumer"])
		}
	}
}

// testLog sends the worker's log to t.Log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
