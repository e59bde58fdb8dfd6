// Command bench measures the worker against the alternatives a user has,
// in one run so that the ratios are taken on the same machine at the same
// time (BENCHMARKS.md holds the figures):
//
//  1. immediate: requests/s from publish to completion event with Azure
//     answering 200 at once, for worker concurrency 1, 4, 16 and 64 and a
//     burst of 50,000 (and one row with Azure answering in 50 ms); beside
//     it the raw JetStream ceiling (async publish, durable consume,
//     explicit ack, same payload, same server) and an in-process loop of
//     azcore runtime.Pollers with no queue.
//  2. polling: 10,000 operations answered 202 (Retry-After 2) twice, then
//     200: all complete with exactly 3 calls; lateness of every poll.
//  3. waiting: 100,000 operations waiting on Retry-After 60 s, held by one
//     worker process and one nats-server process (built from the module):
//     RSS, CPU, threads, consumer counts; beside it 100,000 azcore pollers
//     waiting in goroutines in one process.
//  4. profile: a CPU (and allocation) profile of the immediate path.
//  5. throttle: three worker processes against an emulator budget of 20
//     calls/s burst 40, 2,000 requests, with the shared throttle and
//     without it (each operation backing off alone), side by side.
//  6. collection: a collection of 2,000 documents, each download answered
//     202 + Retry-After then 200 with a latency: wall time against the
//     ideal for the collection window, Azure calls per document, memory.
//  7. archive: ten 200 MB documents archived at once by one worker process
//     to the NATS Object Store: throughput beside a plain streaming copy of
//     the same links to the same bucket, and the worker's RSS growth.
//  8. report: a cost details report of 4 blobs of 512 MiB archived by one
//     worker process, to the Object Store and to Azurite: throughput
//     beside a plain streaming copy of the same links, and RSS growth.
//  9. estate: an estate of 200 scopes of 10 documents each, the shared
//     throttle at Azure's documented budget: wall time against the
//     budget's lower bound, Azure calls per document, memory, and single
//     requests' latency meanwhile.
//
// Usage:
//
//	go run ./cmd/bench                 # everything (about 8 minutes on 2 cores)
//	go run ./cmd/bench -only polling   # one part
//	go run ./cmd/bench -smoke          # small counts, same code (CI)
//
// It asserts correctness (every event arrives, every operation made the
// calls it should, no poll was early) and exits non-zero when that fails;
// it never fails on timing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/azbilling/worker/internal/emulator"
)

// options are the benchmark's sizes.
type options struct {
	smoke bool
	only  string
	dir   string

	levels      []int         // worker concurrency levels of the immediate path
	levelN      int           // requests per level
	burstN      int           // the burst
	burstConc   int           // worker concurrency of the burst
	latency     time.Duration // an extra row with Azure answering after this (0: none)
	latencyConc int
	latencyN    int
	repeat      int // runs of each immediate-path figure (the median is reported)

	pollN     int           // operations of the polling path
	pollWait  time.Duration // their Retry-After
	pollConc  int           // worker concurrency of the polling path
	pollLead  time.Duration // the worker's poll-lead on the polling path (0: its default)
	pollRate  float64       // polling: the paced row's publish rate (0: none)
	pollBurst bool          // polling: the row published at once
	waitN     int           // operations of the waiting test
	waitAfter time.Duration // their Retry-After
	waitConc  int           // worker concurrency of the waiting test
	pollers   bool          // waiting: also the azcore pollers process

	profileN    int
	profileConc int
	profileOut  string

	collN          int           // documents of the collection part
	collWindows    []int         // collection windows to run
	collLatency    time.Duration // latency of every emulated call
	collRetryAfter time.Duration // Retry-After of each download's 202
	collSingles    int           // single requests published while a collection runs
	manyN          int           // collections: how many at once
	manyDocs       int           // collections: documents of each
	manyWindows    []int         // collections: global windows to run
	throttleN      int           // requests of the throttle part
	throttleRate   float64       // the emulator's budget: calls per second per class
	throttleBurst  int
	throttleConc   int               // worker concurrency of each of the three processes
	throttleLearn  []emulator.Budget // budgets run with the throttle's settings at their defaults (it learns them)
	archiveN       int               // archive: documents at once
	archiveSize    int64             // archive: bytes of each
	reportBlobs    int               // report: blobs of the cost details report
	reportBlobSize int64             // report: bytes of each
	estateScopes   int               // estate: scopes
	estateDocs     int               // estate: documents of each scope
	estateWindow   int               // estate: its collections in flight at once
	estateSingles  int               // estate: single requests published while it runs
	schedN         int               // scheduler: schedules of the larger scenarios
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childArg:
			os.Exit(pollersChild(os.Args[2:]))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "billing-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.dir = dir
	}
	if o.profileOut == "" {
		o.profileOut = filepath.Join(o.dir, "profile")
	}

	r := newReport()
	r.header(o)
	want := func(part string) bool { return o.only == "" || o.only == part }
	var errs []error
	do := func(part string, f func() error) {
		if !want(part) || ctx.Err() != nil {
			return
		}
		if why := o.skipped(part); why != "" {
			// A count of 0 leaves the part out; it is not a failure.
			progress("%s skipped (%s)", part, why)
			r.printf("\n(%s skipped: %s)\n", part, why)
			return
		}
		start := time.Now()
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", part, err))
			r.printf("\n!! %s failed: %v\n", part, err)
		}
		progress("%s done in %s", part, time.Since(start).Round(time.Second))
	}
	var imm *immediateResults
	do("immediate", func() (err error) { imm, err = runImmediate(ctx, o, r); return err })
	do("polling", func() error { return runPolling(ctx, o, r) })
	do("waiting", func() error { return runWaiting(ctx, o, r) })
	do("profile", func() error { return runProfile(ctx, o, r) })
	do("throttle", func() error { return runThrottle(ctx, o, r) })
	do("collection", func() error { return runCollection(ctx, o, r) })
	do("collections", func() error { return runCollections(ctx, o, r) })
	do("archive", func() error { return runArchive(ctx, o, r) })
	do("report", func() error { return runReport(ctx, o, r) })
	do("estate", func() error { return runEstate(ctx, o, r) })
	do("scheduler", func() error { return runScheduler(ctx, o, r) })
	r.goals(imm)
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// skipped says why a part does not run with these counts ("" when it
// does): a count of 0 leaves out what it counts.
func (o options) skipped(part string) string {
	switch part {
	case "immediate":
		if len(immediateRows(o)) == 0 {
			return "-level-n, -burst-n and -latency-n are 0"
		}
	case "polling":
		if o.pollN == 0 {
			return "-poll-n 0"
		}
	case "waiting":
		if o.waitN == 0 {
			return "-wait-n 0"
		}
	case "profile":
		if o.profileN == 0 {
			return "-profile-n 0"
		}
	case "throttle":
		if o.throttleN == 0 {
			return "-throttle-n 0"
		}
	case "collection":
		if o.collN == 0 {
			return "-collection-n 0"
		}
	case "collections":
		if o.manyN == 0 || o.manyDocs == 0 {
			return "-collections-n or -collections-documents 0"
		}
	case "archive":
		if o.archiveN == 0 {
			return "-archive-n 0"
		}
	case "report":
		if o.reportBlobs == 0 {
			return "-report-blobs 0"
		}
	case "estate":
		if o.estateScopes == 0 || o.estateDocs == 0 {
			return "-estate-scopes or -estate-docs 0"
		}
	case "scheduler":
		if o.schedN == 0 {
			return "-sched-n 0"
		}
	}
	return ""
}

// parseOptions reads the command line.
func parseOptions(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./cmd/bench [-smoke] [-only immediate|polling|waiting|profile|throttle|collection|collections|archive|report|estate|scheduler] [sizes]\n\n"+
			"Measures the worker against raw JetStream and an in-process azcore loop; results in Markdown on stdout, progress on stderr.")
		fs.PrintDefaults()
	}
	var o options
	var levels, collWindows, manyWindows string
	fs.BoolVar(&o.smoke, "smoke", false, "a short run of the same code paths (CI): small counts, no timing asserted")
	fs.StringVar(&o.only, "only", "", "run one part: immediate, polling, waiting, profile, throttle, collection, collections, archive, report, estate or scheduler")
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a temporary one, removed at the end)")
	fs.StringVar(&levels, "levels", "1,4,16,64", "immediate path: worker concurrency levels")
	fs.IntVar(&o.levelN, "level-n", 20000, "immediate path: requests per concurrency level (0: no concurrency-level rows)")
	fs.IntVar(&o.burstN, "burst-n", 50000, "immediate path: requests of the burst (0: no burst)")
	fs.IntVar(&o.burstConc, "burst-concurrency", 16, "immediate path: worker concurrency of the burst")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "immediate path: an extra row with Azure answering after this long (0: none)")
	fs.IntVar(&o.latencyConc, "latency-concurrency", 64, "immediate path: worker concurrency of the latency row")
	fs.IntVar(&o.latencyN, "latency-n", 5000, "immediate path: requests of the latency row (0: no latency row)")
	fs.IntVar(&o.repeat, "repeat", 3, "immediate path: runs of each figure; the median is reported")
	fs.IntVar(&o.pollN, "poll-n", 10000, "polling path: operations (0: skip the polling part)")
	fs.DurationVar(&o.pollWait, "poll-retry-after", 2*time.Second, "polling path: Retry-After of each 202 (whole seconds)")
	fs.IntVar(&o.pollConc, "poll-concurrency", 64, "polling path: worker concurrency")
	fs.DurationVar(&o.pollLead, "poll-lead", 0, "polling path: the worker's poll-lead, poll-hold-max raised to match (0: the defaults)")
	fs.BoolVar(&o.pollBurst, "poll-at-once", true, "polling path: the row with the requests published at once")
	fs.Float64Var(&o.pollRate, "poll-rate", 2000, "polling path: a second row with the requests published at this rate per second (0: no paced row)")
	fs.IntVar(&o.waitN, "wait-n", 100000, "waiting: operations waiting at once (0: skip the waiting part)")
	fs.DurationVar(&o.waitAfter, "wait-retry-after", 60*time.Second, "waiting: their Retry-After (whole seconds)")
	fs.IntVar(&o.waitConc, "wait-concurrency", 64, "waiting: worker concurrency (and the azcore process's connection limit)")
	fs.BoolVar(&o.pollers, "wait-pollers", true, "waiting: also measure wait-n azcore pollers in one process")
	fs.IntVar(&o.profileN, "profile-n", 20000, "profile: requests of the profiled immediate run (0: skip the profile)")
	fs.IntVar(&o.profileConc, "profile-concurrency", 16, "profile: worker concurrency")
	fs.StringVar(&o.profileOut, "profile-out", filepath.Join(os.TempDir(), "billing-bench"), "profile: file prefix of the CPU and allocation profiles")
	fs.IntVar(&o.collN, "collection-n", 2000, "collection: documents (0: skip the collection part)")
	fs.StringVar(&collWindows, "collection-windows", "16,64", "collection: collection windows to run")
	fs.DurationVar(&o.collLatency, "collection-latency", 150*time.Millisecond, "collection: latency of every emulated Azure call")
	fs.DurationVar(&o.collRetryAfter, "collection-retry-after", time.Second, "collection: Retry-After of each download's 202 (whole seconds)")
	fs.IntVar(&o.collSingles, "collection-singles", 100, "collection: single requests published (one every 200 ms) while the collection fans out")
	fs.IntVar(&o.manyN, "collections-n", 200, "collections: collections published at once (0: skip the collections part)")
	fs.IntVar(&o.manyDocs, "collections-documents", 10, "collections: documents of each collection")
	fs.StringVar(&manyWindows, "collections-in-flight", "64", "collections: global windows (collections-in-flight) to run")
	fs.IntVar(&o.throttleN, "throttle-n", 2000, "throttle: requests (0: skip the throttle part)")
	fs.Float64Var(&o.throttleRate, "throttle-rate", 20, "throttle: the emulator's budget, calls per second per class")
	fs.IntVar(&o.throttleBurst, "throttle-burst", 40, "throttle: the emulator's burst per class")
	fs.IntVar(&o.throttleConc, "throttle-concurrency", 64, "throttle: worker concurrency of each of the three processes")
	learn := fs.String("throttle-learn", "5/10,20/40", "throttle: emulator budgets <rate>/<burst>, comma-separated, each run with the workers' throttle settings at their defaults (the throttle learns the budget); empty: none")
	fs.IntVar(&o.archiveN, "archive-n", 10, "archive: documents archived at once (0: skip the archive part)")
	fs.Int64Var(&o.archiveSize, "archive-size", 200<<20, "archive: bytes of each document")
	fs.IntVar(&o.reportBlobs, "report-blobs", 4, "report: blobs of the cost details report archived (0: skip the report part)")
	fs.Int64Var(&o.reportBlobSize, "report-blob-size", 512<<20, "report: bytes of each blob")
	fs.IntVar(&o.estateScopes, "estate-scopes", 200, "estate: scopes, half billing accounts, half pay-as-you-go subscriptions (0: skip the estate part)")
	fs.IntVar(&o.estateDocs, "estate-docs", 10, "estate: documents of each scope")
	fs.IntVar(&o.estateWindow, "estate-window", 4, "estate: its collections in flight at once")
	fs.IntVar(&o.estateSingles, "estate-singles", 100, "estate: single requests published (one every 500 ms) while the estate runs")
	fs.IntVar(&o.schedN, "sched-n", 100000, "scheduler: schedules fired at once, with no worker (0: skip the scheduler part)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-levels: %q is not a positive number", s)
		}
		o.levels = append(o.levels, n)
	}
	for _, s := range strings.Split(collWindows, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-collection-windows: %q is not a positive number", s)
		}
		o.collWindows = append(o.collWindows, n)
	}
	for _, s := range strings.Split(manyWindows, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-collections-in-flight: %q is not a positive number", s)
		}
		o.manyWindows = append(o.manyWindows, n)
	}
	if o.smoke {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, p *int, v int) {
			if !set[name] {
				*p = v
			}
		}
		def("level-n", &o.levelN, 200)
		def("latency-n", &o.latencyN, 200)
		def("repeat", &o.repeat, 1)
		def("burst-n", &o.burstN, 1000)
		def("poll-n", &o.pollN, 200)
		def("wait-n", &o.waitN, 300)
		def("profile-n", &o.profileN, 500)
		def("collection-n", &o.collN, 100)
		def("collection-singles", &o.collSingles, 10)
		def("collections-n", &o.manyN, 20)
		def("collections-documents", &o.manyDocs, 2)
		if !set["collections-in-flight"] {
			o.manyWindows = []int{8} // below the children at once: the window binds
		}
		def("throttle-n", &o.throttleN, 100)
		if !set["throttle-learn"] {
			*learn = "20/40"
		}
		def("archive-n", &o.archiveN, 2)
		def("estate-scopes", &o.estateScopes, 10)
		def("estate-docs", &o.estateDocs, 2)
		def("estate-singles", &o.estateSingles, 4)
		def("sched-n", &o.schedN, 1000)
		if !set["archive-size"] {
			o.archiveSize = 4 << 20
		}
		if !set["report-blob-size"] {
			o.reportBlobSize = 2 << 20
		}
		if !set["wait-retry-after"] {
			o.waitAfter = 4 * time.Second
		}
		if !set["profile-out"] {
			o.profileOut = "" // a temporary file
		}
	}
	switch o.only {
	case "", "immediate", "polling", "waiting", "profile", "throttle", "collection", "collections", "archive", "report", "estate", "scheduler":
	default:
		return o, fmt.Errorf("-only %q: want immediate, polling, waiting, profile, throttle, collection, collections, archive, report, estate or scheduler", o.only)
	}
	if o.collRetryAfter%time.Second != 0 || o.collRetryAfter <= 0 {
		return o, errors.New("-collection-retry-after must be whole seconds")
	}
	if o.pollWait%time.Second != 0 || o.waitAfter%time.Second != 0 || o.pollWait <= 0 || o.waitAfter <= 0 {
		return o, errors.New("-poll-retry-after and -wait-retry-after must be whole seconds (Retry-After carries seconds)")
	}
	// A count of 0 leaves out what it counts (a row of the immediate
	// path, or a whole part); a negative one is a mistake.
	for _, c := range []struct {
		name string
		n    int
	}{{"level-n", o.levelN}, {"burst-n", o.burstN}, {"latency-n", o.latencyN}, {"poll-n", o.pollN}, {"wait-n", o.waitN}, {"profile-n", o.profileN}, {"throttle-n", o.throttleN}, {"collection-n", o.collN}, {"collection-singles", o.collSingles}, {"collections-n", o.manyN}, {"collections-documents", o.manyDocs}, {"archive-n", o.archiveN}, {"estate-scopes", o.estateScopes}, {"estate-docs", o.estateDocs}, {"estate-singles", o.estateSingles}, {"sched-n", o.schedN}} {
		if c.n < 0 {
			return o, fmt.Errorf("-%s: %d is negative (0 leaves it out)", c.name, c.n)
		}
	}
	if o.pollRate < 0 {
		return o, errors.New("-poll-rate: negative (0 leaves the paced row out)")
	}
	var lerr error
	if o.throttleLearn, lerr = parseLearnBudgets(*learn); lerr != nil {
		return o, lerr
	}
	if o.throttleN > 0 && (!(o.throttleRate > 0) || o.throttleBurst < 1 || o.throttleBurst > o.throttleN || o.throttleConc < 1) {
		return o, errors.New("-throttle-rate, -throttle-burst and -throttle-concurrency must be positive, the burst at most -throttle-n")
	}
	if o.repeat < 1 {
		return o, fmt.Errorf("-repeat: %d, want at least 1", o.repeat)
	}
	return o, nil
}

// progress reports what the run is doing on stderr; the results go to
// stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// machine describes where the run happens.
type machine struct {
	cpu, mem, goVersion, natsServer, natsGo, azcore, date, host string
	cores                                                       int
}

func describeMachine() machine {
	m := machine{
		cores: runtime.NumCPU(), goVersion: runtime.Version(), natsServer: server.VERSION, natsGo: nats.Version,
		date: time.Now().Format("2006-01-02 15:04 MST"),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.mem = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/Azure/azure-sdk-for-go/sdk/azcore" {
				m.azcore = d.Version
			}
		}
	}
	m.host, _ = os.Hostname()
	return m
}
