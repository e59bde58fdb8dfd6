package poll

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/.

func FuzzParseRetryAfter(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		d, err := ParseRetryAfter(v, testNow)
		if err != nil {
			if !errors.Is(err, ErrInvalidRetryAfter) || d != 0 {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v: want 0 and ErrInvalidRetryAfter", v, d, err)
			}
			return
		}
		if d < 0 || d > MaxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, %v]", v, d, MaxRetryAfter)
		}
	})
}

// knownSources are the values Hint.Source may take.
var knownSources = append([]string{HeaderRetryAfterMs, HeaderXMsRetryAfterMs, HeaderRetryAfter}, throttleHeaders...)

func FuzzHintFrom(f *testing.F) {
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		// Keys go in both canonicalized and as given.
		h := http.Header{}
		h.Add(k1, v1)
		h[k2] = append(h[k2], v2)

		hint, ok := HintFrom(h, testNow)
		switch {
		case !ok && hint != (Hint{}):
			t.Fatalf("HintFrom(%v) = %+v with ok=false", h, hint)
		case ok && (hint.Wait < 0 || hint.Wait > MaxRetryAfter):
			t.Fatalf("HintFrom(%v) wait %v outside [0, %v]", h, hint.Wait, MaxRetryAfter)
		case ok && !slices.Contains(knownSources, hint.Source):
			t.Fatalf("HintFrom(%v) source %q", h, hint.Source)
		}

		// The decision built on it honours the clamps and the deadline.
		p := DefaultPolicy()
		deadline := testNow.Add(10 * time.Minute)
		d := p.Next(Input{Now: testNow, Deadline: deadline, Reason: ReasonThrottled, Header: h, Failures: 3})
		if d.GiveUp {
			if !ok || hint.Wait <= deadline.Sub(testNow) {
				t.Fatalf("gave up without a hint past the deadline: %+v, hint %+v", d, hint)
			}
			return
		}
		if d.Wait < p.MinWait || d.Wait > p.MaxWait || d.At.After(deadline) || !d.At.Equal(testNow.Add(d.Wait)) {
			t.Fatalf("Next with %v = %+v", h, d)
		}
		if ok && d.Wait < min(max(hint.Wait, p.MinWait), p.MaxWait) && !d.At.Equal(deadline) {
			t.Fatalf("Next with %v = %+v, earlier than hint %v", h, d, hint.Wait)
		}
	})
}
