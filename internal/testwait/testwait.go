// Package testwait is the tests' one way to wait for a condition: poll it
// until it holds or a deadline passes, in place of fixed sleeps.
//
// The first poll is at once, the next after a millisecond, and the interval
// then doubles up to MaxInterval, so a condition that is about to hold is
// seen quickly and a slow one costs little.
package testwait

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// MaxInterval is the longest pause between two polls.
const MaxInterval = 20 * time.Millisecond

// For polls cond until it returns true. When timeout passes first, it fails
// t (t.Fatalf, naming what) and so ends the test: call it from the test's
// own goroutine.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Until(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// ForNoError polls cond until it returns nil; on timeout the failure names
// what and quotes the last error cond returned.
func ForNoError(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := UntilNoError(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// Until polls cond until it returns true and returns nil, or returns an
// error naming what once timeout has passed. It does not touch a testing.T,
// so it may run on any goroutine.
func Until(timeout time.Duration, what string, cond func() bool) error {
	return UntilNoError(timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// errNotYet stands for a boolean condition that does not hold yet: it has
// no detail worth quoting in the failure.
var errNotYet = errors.New("not yet")

// UntilNoError polls cond until it returns nil, or returns an error naming
// what and wrapping cond's last error once timeout has passed.
func UntilNoError(timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			if errors.Is(err, errNotYet) {
				return fmt.Errorf("%s: not within %s", what, timeout)
			}
			return fmt.Errorf("%s: not within %s: %w", what, timeout, err)
		}
		time.Sleep(min(pause, time.Until(deadline)))
		pause = min(2*pause, MaxInterval)
	}
}
