package emulator

import (
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Budget is Azure's throttling as the emulator plays it: a token bucket per tenant and class of
// call (Resource Manager's writes and reads of Microsoft.Billing, Cost Management's requests),
// shared by every client of the emulator, so that several worker processes compete for it as they
// would for a principal's budget in Azure. The zero value is unlimited (no throttling and no
// remaining-budget headers).
type Budget struct {
	// Rate is the refill in calls per second; Burst the bucket's size.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// Steps change the budget while a run goes on, as Azure's can: each
	// from After seconds on, counted from the first call after the budget
	// was set (or the emulator reset). A bucket keeps its tokens across a
	// step, at most the new burst.
	Steps []BudgetStep `json:"steps,omitempty"`
	// NoRemaining leaves the remaining-budget headers out of every
	// answer (a 429 still carries its retry headers): a budget clients
	// can learn only from the throttled answers.
	NoRemaining bool `json:"noRemaining,omitempty"`
}

// BudgetStep is a scripted change of the budget: from After seconds on,
// Rate and Burst (zeros: unlimited).
type BudgetStep struct {
	After float64 `json:"after"`
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// Limited reports whether the budget throttles.
func (b Budget) Limited() bool { return b.Rate > 0 && b.Burst > 0 }

// at returns the budget in force elapsed after the schedule's start.
func (b Budget) at(elapsed time.Duration) Budget {
	cur := Budget{Rate: b.Rate, Burst: b.Burst}
	for _, st := range b.Steps {
		if elapsed.Seconds() >= st.After {
			cur = Budget{Rate: st.Rate, Burst: st.Burst}
		}
	}
	return cur
}

// limitedEver reports whether the budget, or one of its steps, throttles.
func (b Budget) limitedEver() bool {
	if b.Limited() {
		return true
	}
	for _, st := range b.Steps {
		if (Budget{Rate: st.Rate, Burst: st.Burst}).Limited() {
			return true
		}
	}
	return false
}

// current is the budget in force at now, starting the schedule at the
// first call. Called with mu held.
func (bs *budgets) current(now time.Time) Budget {
	if len(bs.b.Steps) == 0 {
		return bs.b
	}
	if bs.start.IsZero() {
		bs.start = now
	}
	return bs.b.at(now.Sub(bs.start))
}

// Budget classes (Call.Budget, BucketStats.Class).
const (
	BudgetWrites         = "writes"         // a POST under Microsoft.Billing
	BudgetReads          = "reads"          // a GET under Microsoft.Billing
	BudgetCostManagement = "costmanagement" // every call under Microsoft.CostManagement
)

// BucketStats describes one tenant's bucket of one class.
type BucketStats struct {
	Tenant string  `json:"tenant"`
	Class  string  `json:"class"`
	Tokens float64 `json:"tokens"`
	// Calls counts the calls charged to the bucket; Throttled those answered 429.
	Calls     int `json:"calls"`
	Throttled int `json:"throttled"`
	// Early counts the calls that came before the end of the last wait the bucket announced with a
	// 429 (the caller did not wait as told).
	Early int `json:"early"`
}

type bucketKey struct{ tenant, class string }

type bucket struct {
	tokens     float64
	at         time.Time // when tokens was computed
	retryUntil time.Time // the end of the last wait announced
	BucketStats
}

// budgets holds the buckets; it has its own lock, as the answers' delays must not hold the
// server's.
type budgets struct {
	mu      sync.Mutex
	b       Budget
	buckets map[bucketKey]*bucket
	// start is when the budget's steps are counted from (zero: at the
	// next call).
	start time.Time
}

// SetBudget sets the budget of every bucket from the next ARM call on, with the buckets full; the
// zero Budget turns throttling off.
func (s *Server) SetBudget(b Budget) {
	s.budget.mu.Lock()
	defer s.budget.mu.Unlock()
	b.Steps = append([]BudgetStep(nil), b.Steps...)
	s.budget.b, s.budget.buckets, s.budget.start = b, map[bucketKey]*bucket{}, time.Time{}
}

// BudgetStats returns every bucket's state, by tenant and class.
func (s *Server) BudgetStats() []BucketStats {
	s.budget.mu.Lock()
	defer s.budget.mu.Unlock()
	now := s.now()
	out := []BucketStats{}
	b := s.budget.b
	if len(b.Steps) > 0 && !s.budget.start.IsZero() {
		b = b.at(now.Sub(s.budget.start))
	}
	for _, bk := range s.budget.buckets {
		if !b.Limited() {
			continue
		}
		bk.refill(b, now)
		st := bk.BucketStats
		st.Tokens = bk.tokens
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Tenant+"/"+out[i].Class < out[j].Tenant+"/"+out[j].Class
	})
	return out
}

func (bk *bucket) refill(b Budget, now time.Time) {
	if d := now.Sub(bk.at); d > 0 {
		bk.tokens = bk.tokens + d.Seconds()*b.Rate
		bk.at = now
	}
	bk.tokens = math.Min(float64(b.Burst), bk.tokens)
}

// budgetClass is the class a call on path with method is charged to.
func budgetClass(method, path string) string {
	switch {
	case strings.Contains(strings.ToLower(path), "/providers/microsoft.costmanagement/"):
		return BudgetCostManagement
	case method == http.MethodPost:
		return BudgetWrites
	}
	return BudgetReads
}

// charge takes a token of the caller's bucket for x, sets the remaining-budget headers of its
// answer, and reports whether it may go on; when the bucket is empty it answers 429 with the
// retry headers of the class itself. A rejected call takes no token (were it charged, clients
// retrying faster than the refill would never get one).
func (s *Server) charge(x *exchange) bool {
	s.budget.mu.Lock()
	if !s.budget.b.limitedEver() {
		s.budget.mu.Unlock()
		return true
	}
	now := s.now()
	b := s.budget.current(now)
	if !b.Limited() {
		s.budget.mu.Unlock()
		return true
	}
	class := budgetClass(x.r.Method, x.r.URL.Path)
	x.call.Budget = class
	key := bucketKey{x.call.Tenant, class}
	bk := s.budget.buckets[key]
	if bk == nil {
		bk = &bucket{tokens: float64(b.Burst), at: now, BucketStats: BucketStats{Tenant: key.tenant, Class: class}}
		s.budget.buckets[key] = bk
	}
	bk.refill(b, now)
	bk.Calls++
	if now.Before(bk.retryUntil) {
		bk.Early++
		x.call.Early = true
	}
	ok := bk.tokens >= 1
	if ok {
		bk.tokens--
	}
	var wait time.Duration
	if !ok {
		bk.Throttled++
		// Whole seconds, as Resource Manager sends them, until a token is back.
		secs := math.Max(1, math.Ceil((1-bk.tokens)/b.Rate))
		wait = time.Duration(secs) * time.Second
		bk.retryUntil = now.Add(wait)
	}
	remaining := int64(math.Max(0, math.Floor(bk.tokens)))
	silent := s.budget.b.NoRemaining
	s.budget.mu.Unlock()

	h := x.w.Header()
	switch {
	case silent:
	case class == BudgetWrites:
		h.Set("x-ms-ratelimit-remaining-tenant-writes", strconv.FormatInt(remaining, 10))
	case class == BudgetReads:
		h.Set("x-ms-ratelimit-remaining-tenant-reads", strconv.FormatInt(remaining, 10))
	default:
		h.Set("x-ms-ratelimit-microsoft.costmanagement-qpu-remaining", "QueriesPerBucket:"+strconv.FormatInt(remaining, 10))
		if ok {
			h.Set("x-ms-ratelimit-microsoft.costmanagement-qpu-consumed", "1")
		}
	}
	if ok {
		return true
	}
	secs := strconv.Itoa(int(wait / time.Second))
	if class == BudgetCostManagement {
		h.Set("x-ms-ratelimit-microsoft.consumption-retry-after", secs)
		h.Set("x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after", secs)
	} else {
		h.Set("Retry-After", secs)
	}
	x.call.RetryAfter = secs
	s.reject(x, http.StatusTooManyRequests, "TooManyRequests", "",
		"The request was throttled: the tenant's %s budget is used up. Retry after %s seconds.", class, secs)
	return false
}
