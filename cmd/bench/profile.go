package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"

	"github.com/azbilling/worker/internal/emulator"
)

// runProfile profiles the immediate path: one stack in this process (the
// embedded nats-server, the emulator, one worker, the bench's publisher and
// event watcher), so the profile holds all of them; the worker's share is
// shown apart.
func runProfile(ctx context.Context, o options, r *report) error {
	r.printf("\n## 4. Where time goes (CPU profile of the immediate path)\n\n")
	progress("profile: %d requests at concurrency %d", o.profileN, o.profileConc)
	b, err := startBench(ctx, o.dir, "prof", o.profileConc, []emulator.Reply{emulator.OK()}, nil)
	if err != nil {
		return err
	}
	defer b.close()
	batch, err := newBatch(b.s.Client.Layout(), "prf", o.profileN)
	if err != nil {
		return err
	}
	cpuFile, allocFile, allocBase := o.profileOut+"-cpu.pprof", o.profileOut+"-allocs.pprof", o.profileOut+"-allocs-before.pprof"
	// The allocation profile counts from the start of the process: keep
	// the counts before the run, to subtract them (pprof -base).
	if err := writeProfile("allocs", allocBase); err != nil {
		return err
	}
	f, err := os.Create(cpuFile)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	elapsed, _, err := batch.run(ctx, b.s.Client, b.js, timeoutFor(o.profileN, 0))
	pprof.StopCPUProfile()
	f.Close()
	if err != nil {
		return err
	}
	if err := checkOneCall(b.s.Emulator, batch); err != nil {
		return err
	}
	if err := writeProfile("allocs", allocFile); err != nil {
		return err
	}
	r.printf("%s requests at concurrency %d: %s req/s while profiled. Profiles: %s, %s.\n\n", thousands(float64(o.profileN)), o.profileConc,
		thousands(rate(o.profileN, elapsed)), cpuFile, allocFile)
	r.printf("Share of the CPU samples by component (`go tool pprof -top -nodefraction=0 -focus=<regexp>`; the components overlap where one calls another):\n\n")
	r.printf("| component | -focus= | share of CPU samples |\n|---|---|---|\n")
	for _, c := range []struct{ name, focus, ignore string }{
		{"worker handlers, everything they call", `azbilling/worker/internal/worker\.`, ""},
		{"... of which the Azure call (pkg/billing, azcore, net/http client)", `azbilling/worker/pkg/billing\.`, ""},
		{"... of which JetStream calls (KV create/update, publish, ack)", `azbilling/worker/internal/worker\.`, ""},
		{"... the worker's own code (not inside nats.go, azcore, pkg/billing)", `azbilling/worker/internal/worker\.`, `nats%2ego|nats\.go/jetstream|azcore|pkg/billing`},
		{"nats-server (embedded)", `nats-server/v2/server`, ""},
		{"nats.go connection loops (read, flush)", `nats%2ego\.\(\*Conn\)\.(readLoop|flusher)`, ""},
		{"emulator (its HTTP server)", `net/http\.\(\*conn\)\.serve`, ""},
		{"this benchmark (publisher, event watcher)", `^main\.`, ""},
		{"garbage collector (background marking)", `gcBgMarkWorker`, ""},
	} {
		focus := c.focus
		if strings.Contains(c.name, "JetStream calls") {
			focus = `nats\.go/jetstream\.\(\*(kvs|jetStream|jetStreamMsg)\)\.(Create|Update|PublishMsg|Ack)$`
		}
		args := []string{"tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0", "-focus=" + focus}
		if c.ignore != "" {
			args = append(args, "-ignore="+c.ignore)
		}
		out, err := exec.CommandContext(ctx, "go", append(args, cpuFile)...).CombinedOutput()
		share := "?"
		if m := shareRE.FindSubmatch(out); err == nil && m != nil {
			share = string(m[1])
		}
		if c.ignore != "" {
			focus += "` -ignore=`" + c.ignore
		}
		r.printf("| %s | `%s` | %s |\n", c.name, strings.ReplaceAll(focus, "|", `\|`), share)
	}
	r.printf("\n")
	views := []struct{ title, args string }{
		{"whole process, flat", "-top -nodecount=25 " + cpuFile},
		{"the worker's handlers (focus internal/worker), cumulative", "-top -cum -nodecount=45 -focus=azbilling/worker/internal/worker " + cpuFile},
		{"the worker's own code (internal/worker, not inside nats.go, azcore or pkg/billing), cumulative",
			"-top -cum -nodecount=30 -focus=azbilling/worker/internal/worker -ignore=nats%2ego|jetstream|azcore|pkg/billing " + cpuFile},
		{"allocations (space, during the run) under the worker's handlers", "-top -sample_index=alloc_space -nodecount=30 -focus=azbilling/worker/internal/worker -base " + allocBase + " " + allocFile},
	}
	for _, v := range views {
		out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof"}, strings.Fields(v.args)...)...).CombinedOutput()
		r.printf("### %s\n\n`go tool pprof %s`\n\n```\n%s```\n\n", v.title, v.args, out)
		if err != nil {
			// The profile is reporting, not the code under test.
			progress("profile: go tool pprof: %v", err)
			r.printf("(go tool pprof failed: %v)\n\n", err)
		}
	}
	return nil
}

// shareRE reads the share of the samples a pprof -top focus accounts for.
var shareRE = regexp.MustCompile(`Showing nodes accounting for [^,]+, ([0-9.]+%) of`)

func writeProfile(name, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
