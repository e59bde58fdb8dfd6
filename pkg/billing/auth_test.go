package billing

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/internal/azauth"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/pkg/messages"
)

// What the identity provider answered decides whether waiting may help.
func TestAuthErrorClassification(t *testing.T) {
	t.Parallel()
	answer := func(status int, body string) error {
		return &azidentity.AuthenticationFailedError{RawResponse: &http.Response{
			StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(strings.NewReader(body)),
		}}
	}
	aad := func(code, desc string) string {
		return `{"error":"` + code + `","error_description":"` + desc + ` Trace ID: 0f6e Correlation ID: 7a1c Timestamp: 2026-11-22 01:54:06Z","error_codes":[1]}`
	}
	cases := []struct {
		name      string
		err       error
		permanent bool
		status    int
		code      string
	}{
		{"invalid_client", answer(401, aad("invalid_client", "AADSTS7000215: Invalid client secret provided.")), true, 401, "invalid_client"},
		{"unauthorized_client", answer(400, aad("unauthorized_client", "AADSTS700016: Application not found.")), true, 400, "unauthorized_client"},
		{"invalid_scope", answer(400, aad("invalid_scope", "AADSTS1002012: bad scope.")), true, 400, "invalid_scope"},
		{"forbidden", answer(403, aad("access_denied", "AADSTS50105: not assigned.")), true, 403, "access_denied"},
		{"400 temporarily_unavailable", answer(400, aad("temporarily_unavailable", "AADSTS90033: transient.")), false, 400, "temporarily_unavailable"},
		{"503", answer(503, aad("temporarily_unavailable", "AADSTS90033: transient.")), false, 503, "temporarily_unavailable"},
		{"500 html", answer(500, "<html>oops</html>"), false, 500, ""},
		{"429", answer(429, `{"error":"throttled"}`), false, 429, "throttled"},
		{"408", answer(408, ""), false, 408, ""},
		{"IMDS 410 while starting", answer(410, `{"error":"unknown","error_description":"IMDS is starting"}`), false, 410, "unknown"},
		{"IMDS 404 identity not yet there", answer(404, ""), false, 404, ""},
		{"no answer", &azidentity.AuthenticationFailedError{}, false, 0, ""},
		{"deadline", context.DeadlineExceeded, false, 0, ""},
		{"unavailable credential", errors.New("AzureCLICredential: Azure CLI not found on path"), false, 0, ""},
	}
	for _, c := range cases {
		ae := newAuthError(c.err)
		if ae.Permanent != c.permanent || ae.Status != c.status || ae.Code != c.code {
			t.Errorf("%s: %+v; want permanent %v, status %d, code %q", c.name, ae, c.permanent, c.status, c.code)
		}
		if !errors.Is(ae, ErrAuth) || !errors.Is(ae, c.err) {
			t.Errorf("%s: %v does not match ErrAuth and its cause", c.name, ae)
		}
		if strings.Contains(ae.Error(), "Trace ID") || strings.Contains(ae.Error(), "\n") {
			t.Errorf("%s: message %q", c.name, ae.Error())
		}
	}
}

// The real credentials against the emulator's token endpoint: a refused
// credential is permanent, a failing or silent endpoint is not, and nothing
// is sent to ARM without a token.
func TestAuthErrorsFromTheTokenEndpoint(t *testing.T) {
	t.Parallel()
	const tenant, secret, wrong = "aaaaaaaa-0000-0000-0000-00000000000a", "right-secret-Zq8", "wrong-secret-Xk2"
	cases := []struct {
		name      string
		client    string
		secret    string
		tenant    string
		failure   emulator.TokenFailure
		timeout   time.Duration // of the call; default 1s
		stopped   bool
		permanent bool
		status    int
		code      string
		desc      string
	}{
		{name: "wrong secret", client: "app", secret: wrong, tenant: tenant, permanent: true, status: 401, code: "invalid_client", desc: "AADSTS7000215: Invalid client secret provided."},
		{name: "unknown client", client: "nobody", secret: secret, tenant: tenant, permanent: true, status: 400, code: "unauthorized_client", desc: "AADSTS700016: Application with identifier 'nobody' was not found"},
		{name: "other tenant", client: "app", secret: secret, tenant: "bbbbbbbb-0000-0000-0000-00000000000b", permanent: true, status: 400, code: "unauthorized_client"},
		// Time for azidentity's three tries: the last answer is the error.
		{name: "endpoint unavailable", client: "app", secret: secret, tenant: tenant, failure: emulator.TokenUnavailable, timeout: 5 * time.Second, status: 503, code: "temporarily_unavailable", desc: "AADSTS90033: A transient error has occurred."},
		// The call's deadline cuts the tries short: still an AuthError.
		{name: "endpoint unavailable past the deadline", client: "app", secret: secret, tenant: tenant, failure: emulator.TokenUnavailable, timeout: 300 * time.Millisecond},
		{name: "endpoint hangs", client: "app", secret: secret, tenant: tenant, failure: emulator.TokenHang},
		{name: "endpoint gone", client: "app", secret: secret, tenant: tenant, stopped: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{"app": {Tenant: tenant, Secret: secret}}})
			t.Cleanup(emu.Close)
			emu.SetTokenFailure(c.failure)
			if c.timeout == 0 {
				c.timeout = time.Second
			}
			client := emulatorClient(t, emu, c.tenant, c.client, c.secret, c.timeout)
			if c.stopped {
				emu.Close()
			}
			_, err := client.Start(context.Background(), messages.KindInvoiceSummary, summaryParams)
			var ae *AuthError
			if !errors.As(err, &ae) || !errors.Is(err, ErrAuth) {
				t.Fatalf("error %v, want an AuthError", err)
			}
			if ae.Permanent != c.permanent || ae.Status != c.status || ae.Code != c.code || !strings.HasPrefix(ae.Description, c.desc) {
				t.Errorf("AuthError %+v (%v)", ae, err)
			}
			msg := err.Error()
			if strings.Contains(msg, secret) || strings.Contains(msg, wrong) || strings.Contains(msg, "Trace ID") {
				t.Errorf("message %q", msg)
			}
			if c.code != "" && (!strings.Contains(msg, "ClientSecretCredential") || !strings.Contains(msg, c.code)) {
				t.Errorf("message %q does not say which credential and what the endpoint answered", msg)
			}
			if calls := emu.Calls(); len(calls) != 0 {
				t.Errorf("ARM got %d calls without a token", len(calls))
			}
		})
	}
}

// Many calls at once while the token endpoint fails, hangs or refuses the
// credential: each ends, within its own deadline, in an *AuthError (never
// in a bare deadline error that would pass for a slow Azure), and the
// endpoint gets a few token requests, not one attempt per waiting call.
func TestAuthFailuresUnderLoad(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		failure   emulator.TokenFailure
		secret    string
		permanent bool
	}{
		{"unavailable", emulator.TokenUnavailable, "s", false},
		{"hang", emulator.TokenHang, "s", false},
		{"refused", emulator.TokenOK, "wrong", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{"app": {Tenant: "t1", Secret: "s"}}})
			t.Cleanup(emu.Close)
			emu.SetTokenFailure(tc.failure)
			const timeout = 700 * time.Millisecond
			client := emulatorClient(t, emu, "t1", "app", tc.secret, timeout)
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			start := time.Now()
			for range cap(errs) {
				wg.Go(func() {
					_, err := client.Start(context.Background(), messages.KindInvoiceSummary, summaryParams)
					if err != nil {
						_ = err.Error() // at once, from every goroutine: the race detector watches
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				var ae *AuthError
				if !errors.As(err, &ae) || ae.Permanent != tc.permanent {
					t.Errorf("error %v, want an AuthError, permanent %v", err, tc.permanent)
				}
			}
			if took := time.Since(start); took > 2*timeout {
				t.Errorf("the calls took %s", took)
			}
			if n := len(emu.TokenRequests()); n > 2*(int(azauth.IdentityRetry.MaxRetries)+1) {
				t.Errorf("%d token requests for one burst", n)
			}
			if len(emu.Calls()) != 0 {
				t.Errorf("ARM calls without a token: %+v", emu.Calls())
			}
		})
	}
}

// One token for many calls; the scope asked for is the audience's
// "/.default" (with the classic audiences' double slash).
func TestAuthTokenReusedAndScopedToTheAudience(t *testing.T) {
	t.Parallel()
	audiences := []string{emulator.DefaultAudience, "api://stack-arm"}
	for _, name := range []string{"public", "china", "usgov"} {
		audiences = append(audiences, azauth.Clouds[name].Audience)
	}
	for _, audience := range audiences {
		t.Run(audience, func(t *testing.T) {
			t.Parallel()
			emu := emulator.Start(emulator.Options{Audience: audience, Default: []emulator.Reply{emulator.OK()},
				Clients: map[string]emulator.Client{"app": {Tenant: "t1", Secret: "s"}}})
			t.Cleanup(emu.Close)
			cred, err := azauth.NewCredential(secretProfile(t, "t1", "app", "s"), emulatorAuthOptions(emu))
			if err != nil {
				t.Fatal(err)
			}
			client, err := NewClient(cred, Options{Endpoint: emu.URL(), Audience: audience, Transport: emu.Client()})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 50)
			for range 50 {
				wg.Go(func() {
					if _, err := client.Start(context.Background(), messages.KindInvoiceSummary, summaryParams); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			reqs := emu.TokenRequests()
			if len(reqs) != 1 || reqs[0].Resource() != audience+"/.default" {
				t.Errorf("token requests %+v, want one for scope %s/.default", reqs, audience)
			}
		})
	}
}

var summaryParams = messages.Params{BillingAccountName: "12345678", InvoiceName: "G123456789"}

func secretProfile(t *testing.T, tenant, client, secret string) azauth.Profile {
	t.Helper()
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return azauth.Profile{Credential: azauth.CredentialSecret, TenantID: tenant, ClientID: client, ClientSecretFile: file}
}

func emulatorAuthOptions(emu *emulator.Server) azauth.Options {
	cl, err := azauth.ResolveCloud("custom", emu.URL(), emulator.DefaultAudience, emu.URL()+"/")
	if err != nil {
		panic(err)
	}
	return azauth.Options{Cloud: cl, Transport: emu.Client(), DisableInstanceDiscovery: true}
}

func emulatorClient(t *testing.T, emu *emulator.Server, tenant, client, secret string, timeout time.Duration) *Client {
	t.Helper()
	var cred azcore.TokenCredential
	cred, err := azauth.NewCredential(secretProfile(t, tenant, client, secret), emulatorAuthOptions(emu))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(cred, Options{Endpoint: emu.URL(), Audience: emulator.DefaultAudience, Transport: emu.Client(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var _ policy.Transporter = (*http.Client)(nil)

// slowCredential answers only once the call's own deadline has passed, as
// a token request cut short by its margin does when the machine is too
// loaded to return within it.
type slowCredential struct{ call context.Context }

func (c slowCredential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	<-c.call.Done()
	return azcore.AccessToken{}, errors.New("SlowCredential: the token endpoint did not answer")
}

// countingTransport counts the requests it is handed, and answers none.
type countingTransport struct{ n *int32 }

func (t countingTransport) Do(*http.Request) (*http.Response, error) {
	atomic.AddInt32(t.n, 1)
	return nil, errors.New("no ARM here")
}

// A token failure that comes back after the call's deadline is still an
// *AuthError, with the credential's own text: azcore's retry policy answers
// such a call with a bare deadline error, which passed for a call that
// Azure left unanswered (counted as sent, failing as a slow Azure).
func TestAuthFailureAfterTheCallDeadline(t *testing.T) {
	t.Parallel()
	var sent int32
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	client, err := NewClient(slowCredential{call: ctx}, Options{Endpoint: "https://management.example", Transport: countingTransport{&sent}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Start(ctx, messages.KindInvoiceSummary, summaryParams)
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrAuth) {
		t.Fatalf("error %v (%T), want an AuthError", err, err)
	}
	if ae.Permanent || !strings.Contains(err.Error(), "the token endpoint did not answer") {
		t.Errorf("AuthError %+v: %v", ae, err)
	}
	if n := atomic.LoadInt32(&sent); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}
