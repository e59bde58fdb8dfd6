package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/internal/redact"
)

// ErrAuth is matched by every *AuthError.
var ErrAuth = errors.New("billing: no token")

// AuthError says the credential could not produce a token, so no request
// was sent to Azure.
type AuthError struct {
	// Permanent is true when the identity provider refused the credential
	// (400, 401 or 403, such as invalid_client or unauthorized_client);
	// false when it was unreachable, slow or failing (no answer, 404, 408,
	// 410, 429, 5xx, or an OAuth "temporarily_unavailable"), which waiting
	// may cure. IMDS answers 404 and 410 while a managed identity is being
	// set up.
	Permanent bool
	// Status is the identity provider's HTTP status; 0 when it did not
	// answer (or the credential runs a command, as azure-cli does).
	Status int
	// Code and Description are the OAuth error of the answer, when it
	// carried one ("invalid_client", "AADSTS7000215: Invalid client secret
	// provided. ..."); the description is cut before Entra ID's trace and
	// correlation ids and redacted.
	Code, Description string
	Err               error

	msg string // Error's text, made once: Err's own Error may not be safe to call concurrently
}

func (e *AuthError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return e.message()
}

func (e *AuthError) message() string {
	if e.Code != "" {
		msg := fmt.Sprintf("billing: could not get a token: %s: %d %s", credentialName(e.Err), e.Status, e.Code)
		if e.Description != "" {
			msg += ": " + e.Description
		}
		return msg
	}
	return "billing: could not get a token: " + redact.String(oneLine(e.Err.Error()))
}

func (e *AuthError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrAuth) true.
func (e *AuthError) Is(target error) bool { return target == ErrAuth }

// tagged wraps a credential so that its failures are told apart from
// failures of the call to Azure, and stay short and few:
//
//   - The credential gets the call's context cut AuthFailureMargin short of
//     its deadline, so that a token endpoint that hangs or keeps failing
//     ends in an *AuthError. (Were the call's own deadline to pass first,
//     azcore's retry policy would answer with a bare
//     context.DeadlineExceeded, and the failure would pass for a slow Azure.)
//   - A failure is remembered for failureMemory and answered at once to the
//     calls that come meanwhile. azcore's bearer-token policy lets one
//     goroutine fetch the token while the others wait, and then, when it
//     failed, each waiter try again in turn: without this, a burst of calls
//     would make one token request after the other, against an endpoint
//     that is down or refuses the credential, each waiter's deadline running
//     out in the queue.
type tagged struct {
	cred azcore.TokenCredential

	mu       sync.Mutex
	err      *AuthError // the remembered failure
	cause    string     // err.Err's text
	failedAt time.Time
}

func newTagged(cred azcore.TokenCredential) *tagged { return &tagged{cred: cred} }

// failureMemory is how long a failed token request answers for the calls
// that follow it.
const failureMemory = time.Second

// AuthFailureMargin bounds the part of a call's time kept back from getting
// the token: a tenth of what is left, at most this. A token request cut
// short by the call's deadline ends at most this long before it.
const AuthFailureMargin = 250 * time.Millisecond

func (t *tagged) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tk, err := t.getToken(ctx, opts)
	if ae := (*AuthError)(nil); errors.As(err, &ae) {
		if a := attemptOf(ctx); a != nil {
			a.failed(ae)
		}
	}
	return tk, err
}

func (t *tagged) getToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if err := ctx.Err(); err != nil {
		return azcore.AccessToken{}, newAuthError(err)
	}
	t.mu.Lock()
	if t.err != nil && time.Since(t.failedAt) < failureMemory {
		// A copy that shares nothing mutable: azidentity's error reads
		// its response body when asked for its text.
		cp := *t.err
		cp.Err = errors.New(t.cause)
		t.mu.Unlock()
		return azcore.AccessToken{}, &cp
	}
	t.mu.Unlock()
	if deadline, ok := ctx.Deadline(); ok {
		margin := min(time.Until(deadline)/10, AuthFailureMargin)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
		defer cancel()
	}
	tk, err := t.cred.GetToken(ctx, opts)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		ae := newAuthError(err)
		t.err, t.cause, t.failedAt = ae, oneLine(err.Error()), time.Now()
		return tk, ae
	}
	t.err = nil
	return tk, nil
}

// newAuthError classifies a credential's error.
func newAuthError(err error) *AuthError {
	ae := &AuthError{Err: err}
	defer func() { ae.msg = ae.message() }()
	var failed *azidentity.AuthenticationFailedError
	if !errors.As(err, &failed) || failed.RawResponse == nil {
		return ae
	}
	ae.Status = failed.RawResponse.StatusCode
	if body, rerr := runtime.Payload(failed.RawResponse); rerr == nil {
		var oauth struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		if json.Unmarshal(body, &oauth) == nil {
			ae.Code = cleanAuthText(oauth.Error, 64)
			ae.Description = cleanAuthText(cutTrace(oauth.ErrorDescription), 512)
		}
	}
	switch ae.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		ae.Permanent = ae.Code != "temporarily_unavailable"
	}
	return ae
}

// cutTrace drops what Entra ID appends to every description: " Trace ID:
// ... Correlation ID: ... Timestamp: ...".
func cutTrace(s string) string {
	if i := strings.Index(s, " Trace ID:"); i >= 0 {
		s = s[:i]
	}
	return s
}

func cleanAuthText(s string, limit int) string {
	s = oneLine(strings.ToValidUTF8(s, "?"))
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return redact.String(s)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// credentialName is the azidentity credential type that an error names
// first ("ClientSecretCredential authentication failed. ..."), or
// "credential".
func credentialName(err error) string {
	first, _, _ := strings.Cut(strings.TrimSpace(err.Error()), " ")
	first = strings.TrimSuffix(first, ":")
	if strings.HasSuffix(first, "Credential") {
		return first
	}
	return "credential"
}

// attempt is what one call met on its way to Azure: whether its request
// was handed to the transport, and the last token failure. azcore's retry
// policy answers with the bare context error of the call when the call's
// deadline has passed by the time the token policy returns, dropping the
// *AuthError (the margin the credential gets cannot prevent that on a
// loaded machine, least of all with a few milliseconds left); the attempt
// tells such a call, which sent nothing, from a call that Azure did not
// answer in time.
type attempt struct {
	mu   sync.Mutex
	sent bool
	auth *AuthError
}

type attemptKey struct{}

func withAttempt(ctx context.Context) (context.Context, *attempt) {
	a := &attempt{}
	return context.WithValue(ctx, attemptKey{}, a), a
}

func attemptOf(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}

func (a *attempt) failed(ae *AuthError) {
	a.mu.Lock()
	a.auth = ae
	a.mu.Unlock()
}

// result is the error of the call, err from the pipeline: when nothing
// was sent, an *AuthError (the credential's own, when it failed).
func (a *attempt) result(err error) error {
	a.mu.Lock()
	sent, ae := a.sent, a.auth
	a.mu.Unlock()
	if sent || errors.As(err, new(*AuthError)) {
		return err
	}
	switch {
	case ae != nil:
		return ae
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The time ran out waiting for a token another call was getting.
		return newAuthError(err)
	}
	return err
}

// sentPolicy, the last before the transport, records that the request was
// sent.
type sentPolicy struct{}

func (sentPolicy) Do(req *policy.Request) (*http.Response, error) {
	if a := attemptOf(req.Raw().Context()); a != nil {
		a.mu.Lock()
		a.sent = true
		a.mu.Unlock()
	}
	return req.Next()
}
