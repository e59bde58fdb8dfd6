package testwait_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/testwait"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	var polls atomic.Int32
	start := time.Now()
	err := testwait.Until(5*time.Second, "third poll", func() bool { return polls.Add(1) >= 3 })
	if err != nil {
		t.Fatal(err)
	}
	if n := polls.Load(); n != 3 {
		t.Errorf("%d polls, want 3", n)
	}
	// Two pauses of 1 and 2 ms: far below a second even on a loaded machine.
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}

func TestUntilTimesOutNamingWhat(t *testing.T) {
	t.Parallel()
	var polls atomic.Int32
	start := time.Now()
	err := testwait.Until(100*time.Millisecond, "the moon turns blue", func() bool { polls.Add(1); return false })
	if err == nil {
		t.Fatal("no error for a condition that never holds")
	}
	if !strings.Contains(err.Error(), "the moon turns blue") || !strings.Contains(err.Error(), "100ms") {
		t.Errorf("error %q names neither the condition nor the timeout", err)
	}
	if strings.Contains(err.Error(), "not yet") {
		t.Errorf("error %q quotes the internal sentinel", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", d)
	}
	// Polls back off to MaxInterval: at least a handful in 100 ms, and not
	// a busy loop.
	if n := polls.Load(); n < 4 || n > 100 {
		t.Errorf("%d polls in 100ms", n)
	}
}

func TestUntilNoErrorWrapsTheLastError(t *testing.T) {
	t.Parallel()
	errLast := errors.New("still 3 pending")
	err := testwait.UntilNoError(30*time.Millisecond, "queue drained", func() error { return errLast })
	if !errors.Is(err, errLast) || !strings.Contains(err.Error(), "queue drained") {
		t.Errorf("error %v: want the condition named and the last error wrapped", err)
	}
	if err := testwait.UntilNoError(time.Second, "at once", func() error { return nil }); err != nil {
		t.Errorf("a condition that holds at once: %v", err)
	}
}

// recorder is a testing.TB that records a failure instead of ending the
// test, so that For's failure itself can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatal(args ...any) {
	for _, a := range args {
		if err, ok := a.(error); ok {
			r.failed = err.Error()
		}
	}
}

func TestForFailsTheTestNamingWhat(t *testing.T) {
	t.Parallel()
	r := &recorder{TB: t}
	testwait.For(r, 20*time.Millisecond, "worker ready", func() bool { return false })
	if !strings.Contains(r.failed, "worker ready: not within 20ms") {
		t.Errorf("failure %q", r.failed)
	}
	r = &recorder{TB: t}
	testwait.For(r, time.Second, "at once", func() bool { return true })
	if r.failed != "" {
		t.Errorf("failed a condition that held: %q", r.failed)
	}
	r = &recorder{TB: t}
	testwait.ForNoError(r, 20*time.Millisecond, "status read", func() error { return errors.New("no state yet") })
	if !strings.Contains(r.failed, "status read: not within 20ms: no state yet") {
		t.Errorf("failure %q", r.failed)
	}
}
