package billing

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/azbilling/worker/internal/redact"
	"github.com/azbilling/worker/pkg/messages"
)

// Sentinels to branch on with errors.Is.
var (
	// ErrLocationRejected: Azure handed back a polling URL the bearer token
	// must not go to. Matched by *LocationError.
	ErrLocationRejected = errors.New("billing: location rejected")
	// ErrMalformed: a success answer that cannot be used. Matched by
	// *MalformedError.
	ErrMalformed = errors.New("billing: malformed response")
)

// ResponseError is a non-success answer from Azure, with Azure's error.
type ResponseError struct {
	// Azure is the parsed ErrorResponse (Code and Message may be empty if
	// the body was not one) with the HTTP status.
	Azure messages.AzureError
	// Header holds the response headers, for throttling hints.
	Header http.Header
}

func (e *ResponseError) Error() string {
	msg := fmt.Sprintf("azure answered %d", e.Azure.Status)
	if e.Azure.Code != "" {
		msg += " " + e.Azure.Code
	}
	if e.Azure.Message != "" {
		msg += ": " + e.Azure.Message
	}
	return msg
}

// Throttled reports a 429, or a 503 (Azure's other throttling answer).
func (e *ResponseError) Throttled() bool {
	return e.Azure.Status == http.StatusTooManyRequests || e.Azure.Status == http.StatusServiceUnavailable
}

// Transient reports an answer worth retrying: 408, 429 and every 5xx.
func (e *ResponseError) Transient() bool {
	s := e.Azure.Status
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500 || e.TokenExpired()
}

// CodeExpiredAuthenticationToken is ARM's error code of a 401 for a token
// that had expired when it arrived (it was about to expire when sent, or
// the clocks differ): not a refusal of the principal.
const CodeExpiredAuthenticationToken = "ExpiredAuthenticationToken"

// TokenExpired reports a 401 for a token that expired on its way: the next
// call, with a fresh token, may well succeed.
func (e *ResponseError) TokenExpired() bool {
	return e.Azure.Status == http.StatusUnauthorized && e.Azure.Code == CodeExpiredAuthenticationToken
}

// Denied reports 401 or 403 (but a token that expired on its way, which is
// Transient).
func (e *ResponseError) Denied() bool {
	return (e.Azure.Status == http.StatusUnauthorized || e.Azure.Status == http.StatusForbidden) && !e.TokenExpired()
}

// LocationError says why a polling URL was refused.
type LocationError struct {
	// Location is the refused URL, redacted.
	Location string
	Reason   string
}

func (e *LocationError) Error() string {
	return fmt.Sprintf("billing: refusing to poll %s: %s", e.Location, e.Reason)
}

// Is makes errors.Is(err, ErrLocationRejected) true.
func (e *LocationError) Is(target error) bool { return target == ErrLocationRejected }

// MalformedError is a success answer that cannot be used: a 200 whose body
// is not the operation's result, or a 202 without Location.
type MalformedError struct {
	Status int
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("billing: unusable %d answer: %s", e.Status, e.Reason)
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// errorBody covers the error shapes of the three API versions: ARM common
// types v5 (2024-04-01), Microsoft.Billing 2020-05-01 and Cost Management
// 2023-11-01 all nest {code, message, target, details} under "error"; some
// gateways answer with the fields at the top level.
type errorBody struct {
	Error *errorDetail `json:"error"`
	errorDetail
}

type errorDetail struct {
	Code           string                     `json:"code"`
	Message        string                     `json:"message"`
	Target         string                     `json:"target"`
	Details        []messages.AzureErrorEntry `json:"details"`
	AdditionalInfo []messages.AdditionalInfo  `json:"additionalInfo"`
}

// maxErrorText bounds the text taken from an error body into an event.
const maxErrorText = 1024

// ParseError builds the AzureError of a non-success answer. It never fails:
// a body that is not JSON becomes the message (trimmed and redacted).
func ParseError(status int, header http.Header, body []byte) messages.AzureError {
	ae := messages.AzureError{
		Status:        status,
		RequestID:     header.Get("x-ms-request-id"),
		CorrelationID: header.Get("x-ms-correlation-request-id"),
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err == nil {
		d := eb.errorDetail
		if eb.Error != nil {
			d = *eb.Error
		}
		ae.Code, ae.Message, ae.Target = clean(d.Code), clean(d.Message), clean(d.Target)
		for i, e := range d.Details {
			if i == 10 {
				break
			}
			ae.Details = append(ae.Details, messages.AzureErrorEntry{Code: clean(e.Code), Message: clean(e.Message), Target: clean(e.Target)})
		}
		if len(d.AdditionalInfo) > 0 {
			ae.AdditionalInfo = d.AdditionalInfo[:min(len(d.AdditionalInfo), 10)]
		}
	}
	if ae.Code == "" && ae.Message == "" {
		if text := strings.TrimSpace(string(body)); text != "" && !strings.HasPrefix(text, "{") {
			ae.Message = clean(text)
		}
		if ae.Message == "" {
			ae.Message = http.StatusText(status)
		}
	}
	return ae
}

// clean bounds and redacts text from Azure before it goes into an event.
func clean(s string) string {
	if len(s) > maxErrorText {
		cut := maxErrorText
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return redact.String(strings.ToValidUTF8(s, "?"))
}
