// Package throttle is the worker's shared throttle: one picture of Azure's
// budget for every replica. Calls are grouped into scopes (a credential
// profile and the class of call Azure counts them in); each scope is one
// entry of a JetStream key-value bucket that every replica reads and
// updates with compare-and-set. The entry holds a pause (Azure answered 429
// or 503 with a wait), a token bucket of the configured rate and burst, the
// remaining budget Azure last reported, and counters.
//
// The bucket is a GCRA (generic cell rate algorithm) bucket kept as one
// time, the theoretical arrival time: a call reserves the earliest slot the
// rate and burst allow and moves the time on by one interval. A call whose
// slot lies in the future is deferred to it by the worker (rescheduled,
// holding nothing), so calls that fall due together are spread at the
// scope's rate, by every replica together, instead of released at once.
//
// Package throttle decides nothing about an operation: the worker asks it
// for a slot before a call and tells it what Azure answered; the operation
// machine turns a slot in the future into a wait.
package throttle

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/billing"
	"github.com/azbilling/worker/pkg/messages"
)

// Class is a kind of call that Azure counts against one budget:
// "<provider>.<operations>".
type Class string

// The classes. Resource Manager counts reads and writes apart (per
// principal and tenant); Cost Management counts every call of a tenant
// against its query quota.
const (
	BillingWrites  Class = "billing.writes"          // POST of a download (Microsoft.Billing)
	BillingReads   Class = "billing.reads"           // GET of an invoice or of a Location (Microsoft.Billing)
	CostManagement Class = "costmanagement.requests" // every call under Microsoft.CostManagement
)

// Classes lists every class.
var Classes = []Class{BillingWrites, BillingReads, CostManagement}

// Scope is the unit of throttling: "<profile>.<class>", e.g.
// "default.billing.writes". It is the key of the scope's entry in the
// bucket.
type Scope string

// ScopeOf returns the scope of a call: the request's credential profile
// (the principal and its tenant), the provider of the operation's path, and
// whether the call writes (the first call of a download, a POST) or reads
// (a GET: an invoice, a Location).
func ScopeOf(profile string, kind messages.Kind, polling bool) Scope {
	class := BillingReads
	if op := billing.OperationFor(kind); op != nil {
		switch {
		case strings.Contains(op.Path(messages.Params{}), "/providers/Microsoft.CostManagement/"):
			class = CostManagement
		case !polling && op.Method == http.MethodPost:
			class = BillingWrites
		}
	}
	return Scope(profile + "." + string(class))
}

// Class returns the class of the scope.
func (s Scope) Class() Class {
	_, c, _ := strings.Cut(string(s), ".")
	return Class(c)
}

// Profile returns the credential profile of the scope.
func (s Scope) Profile() string {
	p, _, _ := strings.Cut(string(s), ".")
	return p
}

// Rate is a number of calls per period.
type Rate struct {
	Calls float64
	Per   time.Duration
}

// Interval is the time one call takes of the rate.
func (r Rate) Interval() time.Duration {
	if r.Calls <= 0 {
		return 0
	}
	return time.Duration(float64(r.Per) / r.Calls)
}

// String writes the rate as ParseRate reads it: "10/1s", "600/1h".
func (r Rate) String() string {
	n := strconv.FormatFloat(r.Calls, 'f', -1, 64)
	per := r.Per.String()
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if r.Per >= u.d && r.Per%u.d == 0 {
			per = strconv.FormatInt(int64(r.Per/u.d), 10) + u.name
			break
		}
	}
	return n + "/" + per
}

// ParseRate reads "<calls>/<period>": "10/1s", "12/10s", "600/1h", "10/s".
func ParseRate(s string) (Rate, error) {
	n, per, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("throttle: rate %q is not <calls>/<period> (such as 10/1s)", s)
	}
	calls, err := strconv.ParseFloat(n, 64)
	if err != nil || !(calls > 0) || calls > 1e6 {
		return Rate{}, fmt.Errorf("throttle: rate %q: calls must be a positive number", s)
	}
	if per != "" && (per[0] < '0' || per[0] > '9') {
		per = "1" + per
	}
	d, err := time.ParseDuration(per)
	if err != nil || d < time.Millisecond {
		return Rate{}, fmt.Errorf("throttle: rate %q: the period must be a duration of at least 1ms", s)
	}
	return Rate{Calls: calls, Per: d}, nil
}

// Limit is a scope's token bucket: calls refill at Rate, up to Burst.
type Limit struct {
	Rate  Rate
	Burst int
}

// DefaultLimits are Azure's documented limits per principal and tenant
// (docs/azure.md, Throttling): Resource Manager refills writes at 10 per
// second up to 200 and reads at 25 per second up to 250; Cost Management
// allows 12 queries per 10 seconds and 60 per minute (the bucket holds the
// per-minute rate with a burst of 12; its remaining-budget headers pace the
// hourly quota).
func DefaultLimits() map[Class]Limit {
	return map[Class]Limit{
		BillingWrites:  {Rate: Rate{Calls: 10, Per: time.Second}, Burst: 200},
		BillingReads:   {Rate: Rate{Calls: 25, Per: time.Second}, Burst: 250},
		CostManagement: {Rate: Rate{Calls: 60, Per: time.Minute}, Burst: 12},
	}
}
