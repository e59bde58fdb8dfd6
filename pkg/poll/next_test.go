package poll

import (
	"math"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

// fixedRand returns a random source that always yields r. With r = 0.5 the
// jitter factor is exactly 1, so backoff waits are the bare intervals.
func fixedRand(r float64) func() float64 { return func() float64 { return r } }

func TestNext(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	ra := func(v string) http.Header { return http.Header{"Retry-After": {v}} }
	tests := []struct {
		name string
		p    Policy
		in   Input
		want Decision // At is checked as Now + Wait unless GiveUp
	}{
		{
			name: "202 without hint waits the default",
			p:    p,
			in:   Input{Reason: ReasonInProgress},
			want: Decision{Wait: 15 * time.Second, Source: SourceDefault},
		},
		{
			name: "202 ignores Failures",
			p:    p,
			in:   Input{Reason: ReasonInProgress, Failures: 9, Header: http.Header{"Location": {"x"}}},
			want: Decision{Wait: 15 * time.Second, Source: SourceDefault},
		},
		{
			name: "202 with Retry-After",
			p:    p,
			in:   Input{Reason: ReasonInProgress, Header: ra("30")},
			want: Decision{Wait: 30 * time.Second, Source: HeaderRetryAfter},
		},
		{
			name: "hint wins over backoff",
			p:    p,
			in:   Input{Reason: ReasonTransient, Failures: 7, Header: ra("3"), Rand: fixedRand(0)},
			want: Decision{Wait: 3 * time.Second, Source: HeaderRetryAfter},
		},
		{
			name: "429 with consumption header",
			p:    p,
			in:   Input{Reason: ReasonThrottled, Failures: 1, Header: http.Header{"X-Ms-Ratelimit-Microsoft.consumption-Retry-After": {"45"}}},
			want: Decision{Wait: 45 * time.Second, Source: HeaderConsumptionRetryAfter},
		},
		{
			name: "hint of zero is raised to MinWait",
			p:    p,
			in:   Input{Reason: ReasonThrottled, Failures: 1, Header: ra("0")},
			want: Decision{Wait: time.Second, Source: HeaderRetryAfter, Clamped: true},
		},
		{
			name: "ms hint below MinWait is raised",
			p:    p,
			in:   Input{Reason: ReasonInProgress, Header: http.Header{"Retry-After-Ms": {"10"}}},
			want: Decision{Wait: time.Second, Source: HeaderRetryAfterMs, Clamped: true},
		},
		{
			name: "hint at MinWait is not clamped",
			p:    p,
			in:   Input{Reason: ReasonInProgress, Header: ra("1")},
			want: Decision{Wait: time.Second, Source: HeaderRetryAfter},
		},
		{
			name: "long hint is lowered to MaxWait",
			p:    p,
			in:   Input{Reason: ReasonInProgress, Header: ra("3600")},
			want: Decision{Wait: 15 * time.Minute, Source: HeaderRetryAfter, Clamped: true},
		},
		{
			name: "zero MinWait allows an immediate retry",
			p:    withPolicy(p, func(p *Policy) { p.MinWait = 0 }),
			in:   Input{Reason: ReasonThrottled, Header: ra("0")},
			want: Decision{Wait: 0, Source: HeaderRetryAfter},
		},
		{
			name: "network error backs off",
			p:    p,
			in:   Input{Reason: ReasonTransient, Failures: 3, Rand: fixedRand(0.5)},
			want: Decision{Wait: 4 * time.Second, Source: SourceBackoff},
		},
		{
			name: "backoff is floored at MinWait",
			p:    withPolicy(p, func(p *Policy) { p.InitialBackoff = 100 * time.Millisecond }),
			in:   Input{Reason: ReasonTransient, Failures: 1, Rand: fixedRand(0.5)},
			want: Decision{Wait: time.Second, Source: SourceBackoff},
		},
		{
			name: "unknown reason backs off",
			p:    p,
			in:   Input{Reason: "mystery", Failures: 2, Rand: fixedRand(0.5)},
			want: Decision{Wait: 2 * time.Second, Source: SourceBackoff},
		},
		{
			name: "default poll wait is floored at MinWait",
			p:    withPolicy(p, func(p *Policy) { p.DefaultPollWait = time.Millisecond }),
			in:   Input{Reason: ReasonInProgress},
			want: Decision{Wait: time.Second, Source: SourceDefault},
		},

		// Deadlines.
		{
			name: "deadline passed",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(-time.Second), Reason: ReasonInProgress},
			want: Decision{GiveUp: true},
		},
		{
			name: "deadline is now",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow, Reason: ReasonInProgress, Header: ra("0")},
			want: Decision{GiveUp: true},
		},
		{
			name: "deadline far enough",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(time.Hour), Reason: ReasonInProgress, Header: ra("30")},
			want: Decision{Wait: 30 * time.Second, Source: HeaderRetryAfter},
		},
		{
			name: "hint ends exactly at the deadline",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(30 * time.Second), Reason: ReasonInProgress, Header: ra("30")},
			want: Decision{Wait: 30 * time.Second, Source: HeaderRetryAfter},
		},
		{
			name: "hint past the deadline gives up",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(10 * time.Second), Reason: ReasonThrottled, Failures: 1, Header: ra("30")},
			want: Decision{GiveUp: true, Source: HeaderRetryAfter},
		},
		{
			name: "date hint past the deadline gives up",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(time.Minute), Reason: ReasonInProgress, Header: ra("Thu, 06 Nov 2025 08:51:07 GMT")},
			want: Decision{GiveUp: true, Source: HeaderRetryAfter},
		},
		{
			name: "hint raised past the deadline gives up",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(500 * time.Millisecond), Reason: ReasonThrottled, Header: ra("0")},
			want: Decision{GiveUp: true, Source: HeaderRetryAfter},
		},
		{
			name: "lowered hint past the deadline acts at the deadline",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(10 * time.Minute), Reason: ReasonInProgress, Header: ra("7200")},
			want: Decision{Wait: 10 * time.Minute, Source: HeaderRetryAfter, Clamped: true},
		},
		{
			name: "default wait past the deadline acts at the deadline",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(5 * time.Second), Reason: ReasonInProgress},
			want: Decision{Wait: 5 * time.Second, Source: SourceDefault},
		},
		{
			name: "backoff past the deadline acts at the deadline",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(3 * time.Second), Reason: ReasonTransient, Failures: 10, Rand: fixedRand(0.5)},
			want: Decision{Wait: 3 * time.Second, Source: SourceBackoff},
		},
		{
			name: "MinWait past the deadline acts at the deadline",
			p:    p,
			in:   Input{Now: testNow, Deadline: testNow.Add(time.Millisecond), Reason: ReasonTransient, Failures: 1, Rand: fixedRand(0)},
			want: Decision{Wait: time.Millisecond, Source: SourceBackoff},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.in.Now.IsZero() {
				tt.in.Now = testNow
			}
			want := tt.want
			if !want.GiveUp {
				want.At = tt.in.Now.Add(want.Wait)
			}
			if got := tt.p.Next(tt.in); got != want {
				t.Errorf("Next() = %+v\nwant     %+v", got, want)
			}
		})
	}
}

// withPolicy returns a copy of p changed by f.
func withPolicy(p Policy, f func(*Policy)) Policy {
	f(&p)
	return p
}

func TestNextBackoffGrowth(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{math.MinInt, time.Second},
		{-1, time.Second},
		{0, time.Second},
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{5, 16 * time.Second},
		{6, 32 * time.Second},
		{7, 64 * time.Second},
		{8, 2 * time.Minute}, // 128s capped at MaxBackoff
		{9, 2 * time.Minute},
		{1000, 2 * time.Minute},
		{math.MaxInt, 2 * time.Minute},
	}
	for _, tt := range tests {
		d := p.Next(Input{Now: testNow, Reason: ReasonThrottled, Failures: tt.failures, Rand: fixedRand(0.5)})
		if d.Wait != tt.want || d.Source != SourceBackoff || d.Clamped || d.GiveUp {
			t.Errorf("Failures=%d: got %+v, want Wait %v from backoff", tt.failures, d, tt.want)
		}
	}
}

func TestNextBackoffMultiplier(t *testing.T) {
	t.Parallel()
	p := withPolicy(DefaultPolicy(), func(p *Policy) {
		p.Multiplier = 1.5
		p.InitialBackoff = 2 * time.Second
		p.MaxBackoff = time.Hour
		p.Jitter = 0
	})
	want := []time.Duration{2 * time.Second, 3 * time.Second, 4500 * time.Millisecond, 6750 * time.Millisecond}
	for i, w := range want {
		if got := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: i + 1}).Wait; got != w {
			t.Errorf("Failures=%d: Wait %v, want %v", i+1, got, w)
		}
	}
	// Multiplier 1 keeps the interval constant, however many failures.
	p.Multiplier = 1
	if got := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: math.MaxInt}).Wait; got != 2*time.Second {
		t.Errorf("Multiplier 1: Wait %v, want 2s", got)
	}
}

func TestNextJitter(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy() // Jitter 0.5
	tests := []struct {
		failures int
		r        float64
		want     time.Duration
	}{
		{3, 0, 2 * time.Second}, // 4s * 0.5
		{3, 0.25, 3 * time.Second},
		{3, 0.5, 4 * time.Second},
		{3, 0.75, 5 * time.Second},
		{8, 0, time.Minute}, // the cap is applied before jitter
		{8, 0.75, 150 * time.Second},
		{3, math.NaN(), 2 * time.Second}, // a faulty source is tamed
		{3, -3, 2 * time.Second},
		{3, 7, 6 * time.Second},
	}
	for _, tt := range tests {
		got := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: tt.failures, Rand: fixedRand(tt.r)}).Wait
		if got != tt.want {
			t.Errorf("Failures=%d r=%v: Wait %v, want %v", tt.failures, tt.r, got, tt.want)
		}
	}
}

func TestNextJitterBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, jit := range []float64{0, 0.1, 0.5, 0.99} {
		p := withPolicy(DefaultPolicy(), func(p *Policy) { p.Jitter = jit; p.MinWait = 0 })
		for failures := 1; failures <= 10; failures++ {
			base := min(p.InitialBackoff<<(failures-1), p.MaxBackoff)
			lo := time.Duration(float64(base) * (1 - jit))
			hi := time.Duration(float64(base) * (1 + jit))
			seen := map[time.Duration]bool{}
			for range 200 {
				got := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: failures, Rand: rng.Float64}).Wait
				if got < lo || got > hi {
					t.Fatalf("Jitter %v Failures %d: Wait %v outside [%v, %v]", jit, failures, got, lo, hi)
				}
				seen[got] = true
			}
			if jit > 0 && len(seen) < 100 {
				t.Errorf("Jitter %v Failures %d: only %d distinct waits in 200 draws", jit, failures, len(seen))
			}
		}
	}
	// A nil Rand uses math/rand/v2 and stays within bounds.
	p := DefaultPolicy()
	for range 100 {
		got := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: 2}).Wait
		if got < time.Second || got > 3*time.Second {
			t.Fatalf("nil Rand: Wait %v outside [1s, 3s]", got)
		}
	}
}

// TestNextNeverBeforeHint checks that, without a deadline, a decision never
// comes earlier than the server's hint after the MinWait floor.
func TestNextNeverBeforeHint(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	for _, v := range []string{"0", "1", "2.5", "59", "900", "901", "86400", "Thu, 06 Nov 2025 09:00:00 GMT"} {
		h := http.Header{"Retry-After": {v}}
		hint, _ := HintFrom(h, testNow)
		floor := min(max(hint.Wait, p.MinWait), p.MaxWait)
		for _, r := range []Reason{ReasonInProgress, ReasonThrottled, ReasonTransient} {
			d := p.Next(Input{Now: testNow, Reason: r, Header: h, Failures: 1, Rand: fixedRand(0)})
			if d.At.Before(testNow.Add(floor)) || d.Wait != d.At.Sub(testNow) {
				t.Errorf("Retry-After %q, %s: %+v is before %v", v, r, d, floor)
			}
		}
	}
}

func TestNextExtremePolicy(t *testing.T) {
	t.Parallel()
	// Saturating values must neither panic nor go negative.
	p := Policy{
		MinWait:         0,
		MaxWait:         math.MaxInt64,
		DefaultPollWait: math.MaxInt64,
		InitialBackoff:  math.MaxInt64 / 2,
		MaxBackoff:      math.MaxInt64,
		Multiplier:      3,
		Jitter:          0.99,
	}
	for _, failures := range []int{1, 2, 64, math.MaxInt} {
		d := p.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: failures, Rand: fixedRand(0.999)})
		if d.Wait < 0 || d.GiveUp {
			t.Errorf("Failures=%d: %+v", failures, d)
		}
	}
	// The zero Policy is invalid but still must not panic.
	_ = Policy{}.Next(Input{Now: testNow, Reason: ReasonTransient, Failures: math.MaxInt})
	_ = Policy{}.Next(Input{Now: testNow, Reason: ReasonInProgress, Header: http.Header{"Retry-After": {"5"}}})
}
