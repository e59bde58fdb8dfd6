package emulator

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A tenant's bucket per class: remaining budget on every answer, 429 with
// the class's retry headers when empty, other classes unaffected, early
// calls counted; the control API sets and reads it.
func TestBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Budget: Budget{Rate: 0.5, Burst: 2}})
	for i, want := range []string{"1", "0"} {
		resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv))
		if resp.StatusCode >= 300 || resp.Header.Get("x-ms-ratelimit-remaining-tenant-writes") != want {
			t.Fatalf("write %d: %d remaining %q, want %s", i, resp.StatusCode, resp.Header.Get("x-ms-ratelimit-remaining-tenant-writes"), want)
		}
	}
	resp, body := b.call(t, opRequest(OpInvoiceDownload, "INV1"))
	wantError(t, resp, body, http.StatusTooManyRequests, "TooManyRequests", "")
	if ra := resp.Header.Get("Retry-After"); ra != "2" && ra != "3" && ra != "4" {
		t.Errorf("Retry-After %q", ra)
	}
	if c := lastCall(t, b.srv); c.Budget != BudgetWrites || c.Status != 429 || c.RetryAfter == "" || c.Early {
		t.Errorf("call %+v", c)
	}
	// Before the announced wait: early, and throttled again.
	if resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv)); resp.StatusCode != http.StatusTooManyRequests || !lastCall(t, b.srv).Early {
		t.Errorf("second try: %d %+v", resp.StatusCode, lastCall(t, b.srv))
	}
	// Reads and Cost Management have buckets of their own.
	resp, _ = b.call(t, opRequest(OpInvoiceGet, testInv))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-ms-ratelimit-remaining-tenant-reads") != "1" {
		t.Errorf("read: %d %q", resp.StatusCode, resp.Header.Get("x-ms-ratelimit-remaining-tenant-reads"))
	}
	for range 2 {
		if resp, _ := b.call(t, opRequest(OpPricesheetDownload, "INV2")); resp.StatusCode >= 300 {
			t.Fatalf("price sheet: %d", resp.StatusCode)
		}
	}
	resp, _ = b.call(t, opRequest(OpPricesheetDownload, "INV2"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("x-ms-ratelimit-microsoft.consumption-retry-after") == "" ||
		!strings.HasSuffix(resp.Header.Get("x-ms-ratelimit-microsoft.costmanagement-qpu-remaining"), ":0") || resp.Header.Get("Retry-After") != "" {
		t.Errorf("price sheet throttled: %d %v", resp.StatusCode, resp.Header)
	}
	stats := b.srv.BudgetStats()
	if len(stats) != 3 {
		t.Fatalf("%+v", stats)
	}
	for _, st := range stats {
		if st.Tenant != testTenant {
			t.Errorf("%+v", st)
		}
		if st.Class == BudgetWrites && (st.Calls != 4 || st.Throttled != 2 || st.Early != 1) {
			t.Errorf("writes %+v", st)
		}
	}

	// Over the control API: off again, and the stats.
	c := b.srv.Client()
	req, _ := http.NewRequest(http.MethodPut, b.srv.URL()+"/_emulator/budget", strings.NewReader(`{"rate": 0, "burst": 0}`))
	if r, err := c.Do(req); err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT budget: %v %v", r, err)
	}
	if resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv)); resp.StatusCode == http.StatusTooManyRequests || resp.Header.Get("x-ms-ratelimit-remaining-tenant-writes") != "" {
		t.Errorf("unlimited: %d %v", resp.StatusCode, resp.Header)
	}
	r, err := c.Get(b.srv.URL() + "/_emulator/budget")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var got []BucketStats
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil || len(got) != 0 {
		t.Errorf("GET budget: %v %+v", err, got)
	}
}

// A budget with steps changes mid-run, counted from the first call after
// it was set: a bucket of 2 that barely refills, then 1/s with a burst of 3
// from 100 s on, then unlimited from 200 s on.
func TestBudgetSteps(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	c := b.srv.Client()
	req, _ := http.NewRequest(http.MethodPut, b.srv.URL()+"/_emulator/budget",
		strings.NewReader(`{"rate": 0.001, "burst": 2, "steps": [{"after": 100, "rate": 1, "burst": 3}, {"after": 200, "rate": 0, "burst": 0}]}`))
	if r, err := c.Do(req); err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT budget: %v %v", r, err)
	}
	// want: the call let through (any success) or throttled.
	write := func(want int, remaining string) {
		t.Helper()
		resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv))
		got := resp.Header.Get("x-ms-ratelimit-remaining-tenant-writes")
		if ok := resp.StatusCode < 300; ok != (want < 300) || got != remaining {
			t.Fatalf("status %d remaining %q, want %d %q", resp.StatusCode, got, want, remaining)
		}
	}
	write(http.StatusAccepted, "1")
	write(http.StatusAccepted, "0")
	write(http.StatusTooManyRequests, "0")
	b.srv.clockSkew.Add(int64(100 * time.Second))
	write(http.StatusAccepted, "2")
	write(http.StatusAccepted, "1")
	write(http.StatusAccepted, "0")
	resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("past the new burst: %d Retry-After %q, want 429 after 1 s at the new rate", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	b.srv.clockSkew.Add(int64(100 * time.Second))
	write(http.StatusAccepted, "")
	// Reset starts the steps again at the next call: the first budget.
	b.srv.Reset()
	write(http.StatusAccepted, "1")
}

// A budget without remaining-budget headers: the same bucket, answers
// without the header, a 429 with its Retry-After.
func TestBudgetWithoutRemainingHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{Budget: Budget{Rate: 0.5, Burst: 2, NoRemaining: true}})
	for i := range 2 {
		resp, _ := b.call(t, opRequest(OpInvoiceSummary, testInv))
		if resp.StatusCode >= 300 {
			t.Fatalf("write %d: %d", i, resp.StatusCode)
		}
		for k := range resp.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-ms-ratelimit") {
				t.Errorf("write %d: header %s: %q", i, k, resp.Header.Get(k))
			}
		}
	}
	resp, body := b.call(t, opRequest(OpInvoiceDownload, "INV1"))
	wantError(t, resp, body, http.StatusTooManyRequests, "TooManyRequests", "")
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("x-ms-ratelimit-remaining-tenant-writes") != "" {
		t.Errorf("429 headers: %v", resp.Header)
	}
}
