package poll_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/azbilling/worker/pkg/poll"
)

func ExamplePolicy_Next() {
	p := poll.DefaultPolicy()
	now := time.Date(2025, 11, 6, 8, 0, 0, 0, time.UTC)
	deadline := now.Add(time.Hour)
	noJitter := func() float64 { return 0.5 } // fixed randomness for a stable output

	show := func(d poll.Decision) {
		if d.GiveUp {
			fmt.Println("give up", d.Source)
			return
		}
		fmt.Println(d.At.Format(time.TimeOnly), d.Wait, d.Source, d.Clamped)
	}

	// 202 Accepted with Retry-After: poll again when the service says.
	show(p.Next(poll.Input{Now: now, Deadline: deadline, Reason: poll.ReasonInProgress,
		Header: http.Header{"Retry-After": {"30"}}}))

	// 429 from Cost Management: the throttle header says 90 seconds.
	show(p.Next(poll.Input{Now: now, Deadline: deadline, Reason: poll.ReasonThrottled, Failures: 1,
		Header: http.Header{"X-Ms-Ratelimit-Microsoft.consumption-Retry-After": {"90"}}}))

	// Third network error in a row, no headers: exponential backoff.
	show(p.Next(poll.Input{Now: now, Deadline: deadline, Reason: poll.ReasonTransient, Failures: 3,
		Rand: noJitter}))

	// The service asks for two hours: lowered to MaxWait (15m).
	show(p.Next(poll.Input{Now: now, Deadline: deadline, Reason: poll.ReasonInProgress,
		Header: http.Header{"Retry-After": {"7200"}}}))

	// With five minutes left, the service asks not to come back before
	// 08:10: the deadline cannot be met, give up.
	show(p.Next(poll.Input{Now: now, Deadline: now.Add(5 * time.Minute), Reason: poll.ReasonInProgress,
		Header: http.Header{"Retry-After": {"Thu, 06 Nov 2025 08:10:00 GMT"}}}))

	// Output:
	// 08:00:30 30s retry-after false
	// 08:01:30 1m30s x-ms-ratelimit-microsoft.consumption-retry-after false
	// 08:00:04 4s backoff false
	// 08:15:00 15m0s retry-after true
	// give up retry-after
}
