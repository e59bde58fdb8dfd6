// Package poll decides what to do next, and when, for an Azure long-running
// operation.
//
// Azure answers a long-running operation with 202 Accepted and a wait, throttles
// with 429 or 503 and a wait, and sometimes fails transiently with no wait at
// all. The wait comes in several headers: Retry-After (delay-seconds or an
// HTTP-date), retry-after-ms and x-ms-retry-after-ms (milliseconds), and the
// Cost Management throttle headers x-ms-ratelimit-microsoft.consumption-retry-after
// and x-ms-ratelimit-microsoft.costmanagement-{qpu,entity,tenant,client}-retry-after
// (seconds). [HintFrom] reads them; [Policy.Next] turns a hint, or the lack of
// one, into a [Decision]: act again at a given time, or give up because the
// operation's deadline cannot be met.
//
// The package is pure: it performs no I/O and never reads the clock. The caller
// passes the current time (and, for tests, a source of randomness) in [Input],
// so every decision is reproducible.
package poll
