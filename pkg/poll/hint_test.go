package poll

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testNow is the fixed clock of the tests: Thursday, 6 November 2025, 08:49:37 UTC.
var testNow = time.Date(2025, 11, 6, 8, 49, 37, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"zero", "0", 0},
		{"seconds", "120", 120 * time.Second},
		{"leading zeros", "007", 7 * time.Second},
		{"surrounding spaces", "  30 ", 30 * time.Second},
		{"surrounding tabs", "\t5\t", 5 * time.Second},
		{"fraction", "1.5", 1500 * time.Millisecond},
		{"long fraction", "0.0000000019", 1 * time.Nanosecond},
		{"at the cap", "1000000", MaxRetryAfter},
		{"above the cap", "1000001", MaxRetryAfter},
		{"largest uint64", "18446744073709551615", MaxRetryAfter},
		{"IMF-fixdate", "Thu, 06 Nov 2025 08:51:07 GMT", 90 * time.Second},
		{"RFC 850", "Thursday, 06-Nov-25 08:51:07 GMT", 90 * time.Second},
		{"ANSI C", "Thu Nov  6 08:51:07 2025", 90 * time.Second},
		{"date with spaces", " Thu, 06 Nov 2025 10:49:37 GMT ", 2 * time.Hour},
		{"date is now", "Thu, 06 Nov 2025 08:49:37 GMT", 0},
		{"date in the past", "Thu, 06 Nov 2025 07:49:37 GMT", 0},
		{"date long ago", "Sun, 06 Nov 1994 08:49:37 GMT", 0},
		{"date far ahead", "Fri, 31 Dec 9999 23:59:59 GMT", MaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRetryAfter(tt.in, testNow)
			if err != nil || got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseRetryAfterInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", " ", "\t",
		"-1", "+1", "-0", "1e3", "0x10", "1_000", "1,5",
		"1.", ".5", "1.2.3", "1 2", "5s", "１",
		"NaN", "nan", "Inf", "+Inf", "infinity",
		"18446744073709551616",                   // overflows uint64
		"99999999999999999999999999999999999999", // overflows uint64
		"1" + strings.Repeat("0", 70),            // absurdly long
		strings.Repeat(" ", 70) + "1",            // absurdly long, even if trimmed it would be valid
		"soon",
		"Thu, 06 Nov 2025 08:51:07",     // no zone
		"2025-11-06T08:51:07Z",          // RFC 3339 is not an HTTP-date
		"Thu, 32 Nov 2025 08:51:07 GMT", // no such day
	} {
		got, err := ParseRetryAfter(in, testNow)
		if !errors.Is(err, ErrInvalidRetryAfter) {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want ErrInvalidRetryAfter", in, got, err)
		}
		if got != 0 {
			t.Errorf("ParseRetryAfter(%q) returned %v with an error", in, got)
		}
	}
}

func TestParseRetryAfterErrorIsShort(t *testing.T) {
	t.Parallel()
	_, err := ParseRetryAfter(strings.Repeat("x", 10_000), testNow)
	if !errors.Is(err, ErrInvalidRetryAfter) || len(err.Error()) > 100 {
		t.Errorf("error %q: want ErrInvalidRetryAfter quoting a short prefix", err)
	}
}

func TestHintFrom(t *testing.T) {
	t.Parallel()
	const (
		ms   = HeaderRetryAfterMs
		xms  = HeaderXMsRetryAfterMs
		cons = HeaderConsumptionRetryAfter
		qpu  = HeaderCostManagementQPURetryAfter
		ent  = HeaderCostManagementEntityRetryAfter
		ten  = HeaderCostManagementTenantRetryAfter
		cli  = HeaderCostManagementClientRetryAfter
		ctyp = HeaderCostManagementClientTypeRetryAfter
		ra   = HeaderRetryAfter
	)
	// hdr builds a header the way net/http does, with canonical keys.
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		h      http.Header
		want   time.Duration
		source string // "" means no hint
	}{
		{"nil", nil, 0, ""},
		{"empty", http.Header{}, 0, ""},
		{"unrelated", hdr("Location", "https://example.test/op"), 0, ""},

		// Each header on its own.
		{"retry-after seconds", hdr("Retry-After", "30"), 30 * time.Second, ra},
		{"retry-after zero", hdr("Retry-After", "0"), 0, ra},
		{"retry-after IMF-fixdate", hdr("Retry-After", "Thu, 06 Nov 2025 08:51:07 GMT"), 90 * time.Second, ra},
		{"retry-after RFC 850", hdr("Retry-After", "Thursday, 06-Nov-25 08:51:07 GMT"), 90 * time.Second, ra},
		{"retry-after ANSI C", hdr("Retry-After", "Thu Nov  6 08:51:07 2025"), 90 * time.Second, ra},
		{"retry-after past date", hdr("Retry-After", "Thu, 06 Nov 2025 07:49:37 GMT"), 0, ra},
		{"retry-after huge", hdr("Retry-After", "99999999"), MaxRetryAfter, ra},
		{"retry-after-ms", hdr("retry-after-ms", "1500"), 1500 * time.Millisecond, ms},
		{"retry-after-ms zero", hdr("retry-after-ms", "0"), 0, ms},
		{"x-ms-retry-after-ms", hdr("x-ms-retry-after-ms", "250"), 250 * time.Millisecond, xms},
		{"ms huge", hdr("retry-after-ms", "99999999999999"), MaxRetryAfter, ms},
		{"consumption", hdr(cons, "20"), 20 * time.Second, cons},
		{"costmanagement qpu", hdr(qpu, "21"), 21 * time.Second, qpu},
		{"costmanagement entity", hdr(ent, "22"), 22 * time.Second, ent},
		{"costmanagement tenant", hdr(ten, "23"), 23 * time.Second, ten},
		{"costmanagement client type", hdr(ctyp, "24"), 24 * time.Second, ctyp},
		{"costmanagement client type beside qpu, the longer", hdr(qpu, "5", ctyp, "40"), 40 * time.Second, ctyp},
		{"costmanagement client", hdr(cli, "24"), 24 * time.Second, cli},

		// Precedence.
		{"ms beats all", hdr("Retry-After", "9", "x-ms-retry-after-ms", "8000", cons, "7", "retry-after-ms", "6000"), 6 * time.Second, ms},
		{"x-ms beats throttle and retry-after", hdr("Retry-After", "9", cons, "7", "x-ms-retry-after-ms", "8000"), 8 * time.Second, xms},
		{"throttle beats retry-after", hdr("Retry-After", "9", qpu, "3"), 3 * time.Second, qpu},
		{"longest throttle header", hdr(cons, "5", qpu, "60", ent, "10", ten, "59", cli, "1"), 60 * time.Second, qpu},
		{"longest throttle last", hdr(cons, "5", cli, "42"), 42 * time.Second, cli},
		{"throttle tie goes to the first listed", hdr(ten, "5", cons, "5"), 5 * time.Second, cons},
		{"ms zero does not fall through", hdr("retry-after-ms", "0", "Retry-After", "9"), 0, ms},

		// Invalid values fall through to the next header.
		{"garbage ms", hdr("retry-after-ms", "soon", "x-ms-retry-after-ms", "700"), 700 * time.Millisecond, xms},
		{"negative x-ms", hdr("x-ms-retry-after-ms", "-5", cons, "4"), 4 * time.Second, cons},
		{"overflowing ms", hdr("retry-after-ms", "99999999999999999999999", "Retry-After", "3"), 3 * time.Second, ra},
		{"NaN throttle", hdr(cons, "NaN", "Retry-After", "2"), 2 * time.Second, ra},
		{"empty throttle", hdr(qpu, "", "Retry-After", "2"), 2 * time.Second, ra},
		{"invalid throttle ignored among valid", hdr(cons, "1e9", ent, "12"), 12 * time.Second, ent},
		{"long value", hdr("retry-after-ms", strings.Repeat("9", 100), "Retry-After", "1"), time.Second, ra},
		{"all invalid", hdr("retry-after-ms", "x", "x-ms-retry-after-ms", "-1", cons, "+3", "Retry-After", "later"), 0, ""},
		{"empty retry-after", hdr("Retry-After", ""), 0, ""},
		{"second value valid", hdr("Retry-After", "soon", "Retry-After", "3"), 3 * time.Second, ra},

		// Non-canonical keys put directly into the map.
		{"lowercase key", http.Header{"retry-after": {"7"}}, 7 * time.Second, ra},
		{"uppercase key", http.Header{"X-MS-RETRY-AFTER-MS": {"70"}}, 70 * time.Millisecond, xms},
		{"mixed case throttle", http.Header{"x-ms-ratelimit-microsoft.CostManagement-QPU-retry-after": {"8"}}, 8 * time.Second, qpu},
		{"canonical key first", http.Header{"Retry-After": {"1"}, "retry-after": {"2"}}, time.Second, ra},
		{"non-canonical after invalid canonical", http.Header{"Retry-After": {"x"}, "retry-after": {"2"}}, 2 * time.Second, ra},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := HintFrom(tt.h, testNow)
			want := Hint{Wait: tt.want, Source: tt.source}
			if ok != (tt.source != "") || got != want {
				t.Errorf("HintFrom(%v) = %+v, %v; want %+v, %v", tt.h, got, ok, want, tt.source != "")
			}
		})
	}
}

func TestLongestHint(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		h      http.Header
		wait   time.Duration
		source string
		ok     bool
	}{
		{"none", http.Header{}, 0, "", false},
		{"milliseconds shorter than Retry-After: the longest wins", http.Header{"Retry-After-Ms": {"1500"}, "Retry-After": {"4"}}, 4 * time.Second, HeaderRetryAfter, true},
		{"consumption header longest", http.Header{"Retry-After": {"2"}, "X-Ms-Ratelimit-Microsoft.consumption-Retry-After": {"9"}}, 9 * time.Second, HeaderConsumptionRetryAfter, true},
		{"an HTTP date", http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second, HeaderRetryAfter, true},
		{"invalid values ignored", http.Header{"Retry-After": {"soon"}, "X-Ms-Retry-After-Ms": {"250"}}, 250 * time.Millisecond, HeaderXMsRetryAfterMs, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := LongestHint(tc.h, now)
			if ok != tc.ok || h.Wait != tc.wait || h.Source != tc.source {
				t.Errorf("%v %+v, want %s from %s", ok, h, tc.wait, tc.source)
			}
		})
	}
}
