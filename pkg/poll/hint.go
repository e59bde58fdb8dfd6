package poll

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Canonical lowercase names of the headers that carry a wait. [Hint.Source]
// is always one of them.
const (
	HeaderRetryAfterMs                   = "retry-after-ms"
	HeaderXMsRetryAfterMs                = "x-ms-retry-after-ms"
	HeaderConsumptionRetryAfter          = "x-ms-ratelimit-microsoft.consumption-retry-after"
	HeaderCostManagementQPURetryAfter    = "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after"
	HeaderCostManagementEntityRetryAfter = "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after"
	HeaderCostManagementTenantRetryAfter = "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after"
	HeaderCostManagementClientRetryAfter = "x-ms-ratelimit-microsoft.costmanagement-client-retry-after"
	// HeaderCostManagementClientTypeRetryAfter is the wait of the quota of
	// a caller's ClientType (the default bucket of the tenant without one).
	HeaderCostManagementClientTypeRetryAfter = "x-ms-ratelimit-microsoft.costmanagement-clienttype-retry-after"
	HeaderRetryAfter                         = "retry-after"
)

// throttleHeaders are the Cost Management throttle headers, in seconds. When
// several are present the longest wait wins: each names a different quota, and
// the request succeeds only once all of them allow it.
var throttleHeaders = []string{
	HeaderConsumptionRetryAfter,
	HeaderCostManagementQPURetryAfter,
	HeaderCostManagementEntityRetryAfter,
	HeaderCostManagementTenantRetryAfter,
	HeaderCostManagementClientRetryAfter,
	HeaderCostManagementClientTypeRetryAfter,
}

// MaxRetryAfter is the longest wait a header can yield (about 11.5 days);
// larger values are clamped to it so that no conversion can overflow.
const MaxRetryAfter = 1_000_000 * time.Second

// maxValueLen bounds the header values worth parsing. The longest valid form,
// an RFC 850 date with surrounding spaces, is well under it.
const maxValueLen = 64

// ErrInvalidRetryAfter is wrapped by every error of [ParseRetryAfter].
var ErrInvalidRetryAfter = errors.New("poll: invalid retry-after")

// Hint is a wait the service asked for, and which header said it.
type Hint struct {
	Wait   time.Duration
	Source string // canonical lowercase header name, one of the Header* constants
}

// HintFrom reads the server's requested wait from response headers, or
// returns ok=false when none is present and valid.
//
// Precedence: retry-after-ms, then x-ms-retry-after-ms (milliseconds), then
// the Cost Management throttle headers (seconds; the longest of those present
// wins), then Retry-After (seconds or an HTTP-date, relative to now). An
// invalid value is ignored as if absent, so the next header is tried. Names
// match case-insensitively, including non-canonical keys put directly into
// the map. The wait is in [0, MaxRetryAfter].
func HintFrom(h http.Header, now time.Time) (Hint, bool) {
	if len(h) == 0 {
		return Hint{}, false
	}
	for _, name := range []string{HeaderRetryAfterMs, HeaderXMsRetryAfterMs} {
		for _, v := range values(h, name) {
			if d, err := parseNumber(v, time.Millisecond); err == nil {
				return Hint{Wait: d, Source: name}, true
			}
		}
	}

	var best Hint
	found := false
	for _, name := range throttleHeaders {
		for _, v := range values(h, name) {
			if d, err := parseNumber(v, time.Second); err == nil && (!found || d > best.Wait) {
				best, found = Hint{Wait: d, Source: name}, true
			}
		}
	}
	if found {
		return best, true
	}

	for _, v := range values(h, HeaderRetryAfter) {
		if d, err := ParseRetryAfter(v, now); err == nil {
			return Hint{Wait: d, Source: HeaderRetryAfter}, true
		}
	}
	return Hint{}, false
}

// ParseRetryAfter parses one Retry-After value: a non-negative number of
// seconds (digits, optionally with a fraction such as "1.5", surrounded by
// optional spaces or tabs) or an HTTP-date in any form [http.ParseTime]
// accepts. A date in the past gives 0. Waits above [MaxRetryAfter] are clamped
// to it; an integer part that does not fit in 64 bits is an error. Every error
// wraps [ErrInvalidRetryAfter].
func ParseRetryAfter(v string, now time.Time) (time.Duration, error) {
	if d, err := parseNumber(v, time.Second); err == nil {
		return d, nil
	}
	if len(v) > maxValueLen {
		return 0, invalid(v)
	}
	t, err := http.ParseTime(strings.Trim(v, " \t"))
	if err != nil {
		return 0, invalid(v)
	}
	// Sub saturates instead of overflowing, so the clamp below is enough.
	return min(max(t.Sub(now), 0), MaxRetryAfter), nil
}

// parseNumber parses a non-negative decimal number of units: digits, then
// optionally a dot and more digits. Signs, exponents, "NaN", "Inf" and the
// like are rejected. The result is clamped to MaxRetryAfter.
func parseNumber(v string, unit time.Duration) (time.Duration, error) {
	if len(v) > maxValueLen {
		return 0, invalid(v)
	}
	whole, frac, dot := strings.Cut(strings.Trim(v, " \t"), ".")
	if !isDigits(whole) || (dot && !isDigits(frac)) {
		return 0, invalid(v)
	}
	n, err := strconv.ParseUint(whole, 10, 64)
	if err != nil { // only ErrRange is possible here: the value overflows
		return 0, invalid(v)
	}
	if n >= uint64(MaxRetryAfter/unit) {
		return MaxRetryAfter, nil
	}
	d := time.Duration(n) * unit
	if dot {
		f, _ := strconv.ParseFloat("0."+frac, 64) // cannot fail: frac is digits
		d += time.Duration(f * float64(unit))
	}
	return min(d, MaxRetryAfter), nil
}

// isDigits reports whether s is a non-empty run of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// invalid builds the error for a bad value, quoting at most a short prefix of
// it so that a hostile header cannot bloat logs.
func invalid(v string) error {
	const show = 32
	if len(v) > show {
		return fmt.Errorf("%w: %q... (%d bytes)", ErrInvalidRetryAfter, v[:show], len(v))
	}
	return fmt.Errorf("%w: %q", ErrInvalidRetryAfter, v)
}

// values returns every value of the header name (given in lowercase): the
// canonical key's first, then those of any other key that matches it
// case-insensitively, in sorted key order so that the result is deterministic.
func values(h http.Header, name string) []string {
	canonical := http.CanonicalHeaderKey(name)
	out := h[canonical]
	var others []string
	for k := range h {
		if k != canonical && strings.EqualFold(k, name) {
			others = append(others, k)
		}
	}
	if len(others) == 0 {
		return out
	}
	slices.Sort(others)
	out = slices.Clone(out)
	for _, k := range others {
		out = append(out, h[k]...)
	}
	return out
}

// LongestHint returns the longest wait that any of the wait headers asks
// for (every form HintFrom reads; invalid values are ignored), or ok=false
// when none is present and valid. Where HintFrom picks one header by
// precedence for an operation's own next call, a pause of a whole throttle
// scope waits for the longest: each header may name a different quota, and
// calls succeed only once all of them allow it.
func LongestHint(h http.Header, now time.Time) (Hint, bool) {
	var best Hint
	found := false
	consider := func(d time.Duration, source string) {
		if !found || d > best.Wait {
			best, found = Hint{Wait: d, Source: source}, true
		}
	}
	for _, name := range []string{HeaderRetryAfterMs, HeaderXMsRetryAfterMs} {
		for _, v := range values(h, name) {
			if d, err := parseNumber(v, time.Millisecond); err == nil {
				consider(d, name)
			}
		}
	}
	for _, name := range throttleHeaders {
		for _, v := range values(h, name) {
			if d, err := parseNumber(v, time.Second); err == nil {
				consider(d, name)
			}
		}
	}
	for _, v := range values(h, HeaderRetryAfter) {
		if d, err := ParseRetryAfter(v, now); err == nil {
			consider(d, HeaderRetryAfter)
		}
	}
	return best, found
}
