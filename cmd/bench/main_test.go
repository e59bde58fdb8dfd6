package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/emulator"
)

// A count of 0 leaves its rows out of the immediate path.
func TestImmediateRowsZeroCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string // row labels
	}{
		{[]string{"-levels", "1,64"}, []string{"1", "64", "16 (burst)", "64, Azure answering in 50ms"}},
		{[]string{"-levels", "1,64", "-burst-n", "0"}, []string{"1", "64", "64, Azure answering in 50ms"}},
		{[]string{"-levels", "1", "-level-n", "0"}, []string{"16 (burst)", "64, Azure answering in 50ms"}},
		{[]string{"-levels", "1", "-latency-n", "0"}, []string{"1", "16 (burst)"}},
		{[]string{"-levels", "1", "-latency", "0"}, []string{"1", "16 (burst)"}},
		{[]string{"-levels", "1", "-level-n", "0", "-burst-n", "0", "-latency-n", "0"}, nil},
		{[]string{"-smoke", "-levels", "1", "-burst-n", "0"}, []string{"1", "64, Azure answering in 50ms"}},
	} {
		o, err := parseOptions(tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		var got []string
		for _, row := range immediateRows(o) {
			if row.n < 1 {
				t.Errorf("%q: row %q with %d requests", tc.args, row.label, row.n)
			}
			if row.burst != strings.HasSuffix(row.label, "(burst)") {
				t.Errorf("%q: row %q marked burst=%v", tc.args, row.label, row.burst)
			}
			got = append(got, row.label)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: rows %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestNegativeCountsRejected(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"-level-n", "-burst-n", "-latency-n", "-poll-n", "-wait-n", "-profile-n"} {
		if _, err := parseOptions([]string{f, "-1"}); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%s -1: error %v, want one naming the flag", f, err)
		}
	}
	if _, err := parseOptions([]string{"-repeat", "0"}); err == nil {
		t.Error("-repeat 0 accepted")
	}
}

// A part whose count is 0 is skipped, not failed, and starts nothing (no
// stack, no nats-server build): each of these returns at once.
func TestZeroCountsSkipParts(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-only", "immediate", "-level-n", "0", "-burst-n", "0", "-latency-n", "0"},
		{"-only", "polling", "-poll-n", "0"},
		{"-only", "waiting", "-wait-n", "0"},
		{"-only", "profile", "-profile-n", "0"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, append(args, "-dir", t.TempDir()))
		cancel()
		if err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

func TestLongestPause(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	calls := []emulator.Call{{Time: t0.Add(3 * time.Millisecond)}, {Time: t0}, {Time: t0.Add(30 * time.Second)}, {Time: t0.Add(time.Millisecond)}}
	if got := longestPause(calls); got != 30*time.Second-3*time.Millisecond {
		t.Errorf("longestPause = %s, want 29.997s", got)
	}
	if got := longestPause(nil); got != 0 {
		t.Errorf("longestPause(nil) = %s, want 0", got)
	}
}

// -throttle-learn reads budgets <rate>/<burst>; -smoke keeps one small one
// unless told.
func TestThrottleLearnBudgets(t *testing.T) {
	t.Parallel()
	o, err := parseOptions(nil)
	if err != nil || len(o.throttleLearn) != 2 || o.throttleLearn[0].Rate != 5 || o.throttleLearn[0].Burst != 10 || o.throttleLearn[1].Rate != 20 || o.throttleLearn[1].Burst != 40 {
		t.Errorf("default: %+v %v", o.throttleLearn, err)
	}
	if o, err := parseOptions([]string{"-smoke"}); err != nil || len(o.throttleLearn) != 1 || o.throttleLearn[0].Rate != 20 {
		t.Errorf("smoke: %+v %v", o.throttleLearn, err)
	}
	if o, err := parseOptions([]string{"-throttle-learn", ""}); err != nil || len(o.throttleLearn) != 0 {
		t.Errorf("none: %+v %v", o.throttleLearn, err)
	}
	for _, bad := range []string{"5", "5/0", "x/10", "-1/10"} {
		if _, err := parseOptions([]string{"-throttle-learn", bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
