package emulator

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"
)

// Reply is one scripted answer of the emulated Azure to one ARM call.
type Reply struct {
	// Status is the HTTP status: 200 (the result), 202 (still running), 4xx or 5xx (an
	// ErrorResponse). 0 is taken as 200. Operation #5 (get invoice) answers 202 as 200.
	Status int `json:"status"`
	// Header holds extra response headers, e.g. {"Retry-After": "2"} or
	// {"x-ms-ratelimit-microsoft.consumption-retry-after": "3"}. They are set last, so they
	// override the generated ones.
	Header map[string]string `json:"header,omitempty"`
	// Body, when not nil, replaces the generated body (a malformed or empty result).
	Body *string `json:"body,omitempty"`
	// NoLocation leaves the Location header out of a 202.
	NoLocation bool `json:"noLocation,omitempty"`
	// Location replaces the generated Location of a 202 (a foreign host, http://, user info...).
	Location string `json:"location,omitempty"`
	// ErrorCode, ErrorMessage and ErrorTarget fill the ErrorResponse of a 4xx or 5xx. An empty
	// code or message is derived from the status (429: "TooManyRequests").
	ErrorCode    string `json:"errorCode,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	ErrorTarget  string `json:"errorTarget,omitempty"`
	// Delay holds the answer back this long (a slow Azure).
	Delay Duration `json:"delay,omitempty"`
	// Reset closes the connection (with a TCP reset) instead of answering, after Delay.
	Reset bool `json:"reset,omitempty"`
	// Report, on a 200 of a cost data operation, is the status its body says instead of
	// the finished result: ReportNoData, ReportFailed or ReportRunning.
	Report string `json:"report,omitempty"`
}

// The statuses a cost data operation's 200 may say (Reply.Report).
const (
	ReportNoData  = "NoDataFound" // cost details only
	ReportFailed  = "Failed"      // with the reply's ErrorCode and ErrorMessage
	ReportRunning = "Running"     // still running: poll again
)

// NoContent is a 204: a cost details report that found nothing.
func NoContent() Reply { return Reply{Status: http.StatusNoContent} }

// Report is a 200 whose body says the cost data operation's status (ReportNoData,
// ReportFailed, ReportRunning).
func Report(status string) Reply { return Reply{Status: http.StatusOK, Report: status} }

// Duration is a time.Duration that travels in JSON as a Go duration string ("1.5s").
type Duration time.Duration

// MarshalText encodes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// UnmarshalText decodes a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("emulator: delay: %w", err)
	}
	*d = Duration(v)
	return nil
}

// OK is a 200 with the operation's generated result.
func OK() Reply { return Reply{Status: http.StatusOK} }

// Accepted is a 202 with a Location and, when retryAfter is not empty, a Retry-After header.
func Accepted(retryAfter string) Reply {
	if retryAfter == "" {
		return Reply{Status: http.StatusAccepted}
	}
	return AcceptedWith(map[string]string{"Retry-After": retryAfter})
}

// AcceptedWith is a 202 with a Location and the given headers (e.g. retry-after-ms).
func AcceptedWith(header map[string]string) Reply {
	return Reply{Status: http.StatusAccepted, Header: header}
}

// Throttled is an error answer (usually 429 or 503) that asks the client to wait value, given
// in the named header: "Retry-After", "x-ms-ratelimit-microsoft.consumption-retry-after",
// "retry-after-ms"...
func Throttled(status int, header, value string) Reply {
	return Reply{
		Status:       status,
		Header:       map[string]string{header: value},
		ErrorMessage: fmt.Sprintf("Request is throttled. Retry after waiting for the time specified in the %q header.", header),
	}
}

// Fail is an error answer with an ErrorResponse carrying code and message.
func Fail(status int, code, message string) Reply {
	return Reply{Status: status, ErrorCode: code, ErrorMessage: message}
}

// ResetConn closes the connection without answering.
func ResetConn() Reply { return Reply{Reset: true} }

// After returns r answered after d.
func (r Reply) After(d time.Duration) Reply {
	r.Delay = Duration(d)
	return r
}

// validate reports a reply that net/http could not send.
func (r Reply) validate() error {
	if r.Status != 0 && (r.Status < 100 || r.Status > 599) {
		return fmt.Errorf("emulator: reply status %d out of range", r.Status)
	}
	if r.Delay < 0 {
		return fmt.Errorf("emulator: negative reply delay %s", time.Duration(r.Delay))
	}
	return nil
}

// retryAfter is the wait the reply asks for, raw, as logged in Call.RetryAfter: Retry-After if
// set, else the first (by name) other header whose name contains "retry-after".
func (r Reply) retryAfter() string {
	var name string
	for k := range r.Header {
		lk := strings.ToLower(k)
		if lk == "retry-after" {
			return r.Header[k]
		}
		if strings.Contains(lk, "retry-after") && (name == "" || k < name) {
			name = k
		}
	}
	return r.Header[name]
}

// cloneReplies deep-copies a script, so that callers may reuse their slices and maps.
func cloneReplies(replies []Reply) []Reply {
	out := make([]Reply, len(replies))
	for i, r := range replies {
		r.Header = maps.Clone(r.Header)
		out[i] = r
	}
	return out
}

// defaultScript is the script of invoices without one when Options.Default is empty.
func defaultScript() []Reply { return []Reply{Accepted("1"), OK()} }

// trackKey identifies the position in a script: one per operation and invoice.
type trackKey struct{ op, invoice string }

// track is a script being played.
type track struct {
	replies []Reply // never empty
	next    int
	own     bool // the invoice's own script, not the default one
}

// take returns the next reply; the last one repeats.
func (t *track) take() Reply {
	r := t.replies[min(t.next, len(t.replies)-1)]
	t.next++
	return r
}

// exhausted reports whether every reply was given at least once.
func (t *track) exhausted() bool { return t.next >= len(t.replies) }

// TokenFailure makes the token endpoint misbehave.
type TokenFailure int

const (
	// TokenOK answers token requests normally.
	TokenOK TokenFailure = iota
	// TokenUnavailable answers 503 with an AAD "temporarily_unavailable" error.
	TokenUnavailable
	// TokenHang never answers: the request blocks until the client gives up or the server closes.
	TokenHang
)

var tokenFailureNames = [...]string{TokenOK: "ok", TokenUnavailable: "unavailable", TokenHang: "hang"}

// String returns "ok", "unavailable" or "hang".
func (f TokenFailure) String() string {
	if f < 0 || int(f) >= len(tokenFailureNames) {
		return fmt.Sprintf("TokenFailure(%d)", int(f))
	}
	return tokenFailureNames[f]
}

// MarshalText encodes f as its String.
func (f TokenFailure) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText decodes "ok", "unavailable" or "hang".
func (f *TokenFailure) UnmarshalText(b []byte) error {
	for i, name := range tokenFailureNames {
		if string(b) == name {
			*f = TokenFailure(i)
			return nil
		}
	}
	return fmt.Errorf("emulator: unknown token failure mode %q (want ok, unavailable or hang)", b)
}
