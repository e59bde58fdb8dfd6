package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/azbilling/worker/internal/devstack"
)

// pollersChild is the process that holds n azcore pollers, one goroutine
// each: what a user writes instead of the queue. It prints IDLE after a
// warm-up, waits for a line on stdin, begins every operation, prints
// WAITING once all have begun (they then sleep in PollUntilDone on the
// Retry-After), and DONE when all have finished.
func pollersChild(args []string) int {
	fs := flag.NewFlagSet(childArg, flag.ContinueOnError)
	url := fs.String("url", "", "emulator URL")
	ca := fs.String("ca", "", "emulator CA certificate (PEM)")
	secretFile := fs.String("secret-file", "", "client secret file")
	n := fs.Int("n", 1000, "operations")
	conc := fs.Int("conc", 64, "operations beginning at once, and connections")
	warm := fs.Int("warm", 100, "warm-up operations (answered 200)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "pollers:", err)
		return 1
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		return fail(err)
	}
	pool, err := certPool(pem)
	if err != nil {
		return fail(err)
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return fail(err)
	}
	loop, err := newAzLoop(*url, string(secret), newTransport(pool, *conc, *conc))
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	warmInvs := make([]string, *warm)
	for i := range warmInvs {
		warmInvs[i] = devstack.InvoiceName("plw", i)
	}
	if _, err := runLoop(ctx, loop, warmInvs, *conc); err != nil {
		return fail(fmt.Errorf("warm-up: %w", err))
	}
	runtime.GC()
	fmt.Printf("IDLE goroutines=%d\n", runtime.NumGoroutine())
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fail(err)
	}

	var (
		begun, ok, failed atomic.Int64
		errOnce           sync.Once
		firstErr          error
		wg                sync.WaitGroup
		sem               = make(chan struct{}, *conc)
		allBegun          = make(chan struct{})
	)
	note := func(err error) {
		failed.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	for i := range *n {
		wg.Go(func() {
			sem <- struct{}{}
			p, err := loop.begin(ctx, devstack.InvoiceName("plr", i))
			<-sem
			if begun.Add(1) == int64(*n) {
				close(allBegun)
			}
			if err != nil {
				note(err)
				return
			}
			if _, err := finish(ctx, p, time.Minute); err != nil {
				note(err)
				return
			}
			ok.Add(1)
		})
	}
	<-allBegun
	fmt.Printf("WAITING goroutines=%d begun=%d failed=%d\n", runtime.NumGoroutine(), begun.Load(), failed.Load())
	wg.Wait()
	fmt.Printf("DONE ok=%d failed=%d first_error=%q\n", ok.Load(), failed.Load(), fmt.Sprint(firstErr))
	return 0
}
