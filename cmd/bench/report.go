package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// report prints the results on stdout as they come, in Markdown, and
// collects the goal verdicts for the end.
type report struct {
	goalLines []string
}

func newReport() *report { return &report{} }

func (r *report) printf(format string, args ...any) { fmt.Fprintf(os.Stdout, format, args...) }

func (r *report) header(o options) {
	m := describeMachine()
	r.printf("# bench run\n\n")
	r.printf("- date: %s (host %s)\n", m.date, m.host)
	r.printf("- machine: %d cores (%s), %s memory\n", m.cores, m.cpu, m.mem)
	r.printf("- %s, nats-server %s (embedded and built from the module), nats.go %s, azcore %s\n", m.goVersion, m.natsServer, m.natsGo, m.azcore)
	mode := "full"
	if o.smoke {
		mode = "smoke (small counts: figures are not meaningful)"
	}
	r.printf("- mode: %s; command: go run ./cmd/bench %s\n", mode, strings.Join(os.Args[1:], " "))
}

// goal records a verdict for the summary.
func (r *report) goal(met bool, format string, args ...any) {
	v := "NOT MET"
	if met {
		v = "met"
	}
	r.goalLines = append(r.goalLines, fmt.Sprintf("- [%s] %s", v, fmt.Sprintf(format, args...)))
}

func (r *report) goals(_ *immediateResults) {
	if len(r.goalLines) == 0 {
		return
	}
	r.printf("\n## Goals\n\n%s\n", strings.Join(r.goalLines, "\n"))
}

// durations summarises a sample of durations.
type durations []time.Duration

func (d durations) sorted() durations {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// quantile of a sorted sample (nearest rank).
func (d durations) quantile(q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

// thousands formats n with thin separators.
func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
