package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/internal/testwait"
)

// registered are the clients of the token tests: one with a secret, one with federated
// credentials (client assertions).
var registered = map[string]Client{
	testClient: {Tenant: testTenant, Secret: testSecret},
	"wi-app":   {Tenant: testTenant},
}

func TestAzidentityCredentials(t *testing.T) {
	t.Parallel()
	assertion := func(context.Context) (string, error) { return "eyJhbGciOi.federated.token", nil }
	tests := []struct {
		name       string
		credential func(t *testing.T, srv *Server) azcore.TokenCredential
		wantStatus int // of the token request
	}{
		{"client secret", func(t *testing.T, srv *Server) azcore.TokenCredential {
			return secretCredential(t, srv, testTenant, testClient, testSecret)
		}, http.StatusOK},
		{"client assertion", func(t *testing.T, srv *Server) azcore.TokenCredential {
			cred, err := azidentity.NewClientAssertionCredential(testTenant, "wi-app", assertion,
				&azidentity.ClientAssertionCredentialOptions{ClientOptions: clientOptions(srv), DisableInstanceDiscovery: true})
			if err != nil {
				t.Fatal(err)
			}
			return cred
		}, http.StatusOK},
		{"wrong secret", func(t *testing.T, srv *Server) azcore.TokenCredential {
			return secretCredential(t, srv, testTenant, testClient, "wrong")
		}, http.StatusUnauthorized},
		{"unknown client", func(t *testing.T, srv *Server) azcore.TokenCredential {
			return secretCredential(t, srv, testTenant, "33333333-0000-0000-0000-000000000000", testSecret)
		}, http.StatusBadRequest},
		{"other tenant", func(t *testing.T, srv *Server) azcore.TokenCredential {
			return secretCredential(t, srv, "99999999-0000-0000-0000-000000000000", testClient, testSecret)
		}, http.StatusBadRequest},
		{"assertion for a client with a secret", func(t *testing.T, srv *Server) azcore.TokenCredential {
			cred, err := azidentity.NewClientAssertionCredential(testTenant, testClient, assertion,
				&azidentity.ClientAssertionCredentialOptions{ClientOptions: clientOptions(srv), DisableInstanceDiscovery: true})
			if err != nil {
				t.Fatal(err)
			}
			return cred
		}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := Start(Options{Clients: registered})
			t.Cleanup(srv.Close)
			tok, err := tt.credential(t, srv).GetToken(t.Context(), policyScopes())
			reqs := srv.TokenRequests()
			if len(reqs) != 1 {
				t.Fatalf("token requests = %+v, want 1", reqs)
			}
			if r := reqs[0]; r.Status != tt.wantStatus || r.Tenant == "" || r.ClientID == "" ||
				r.GrantType != "client_credentials" || !strings.Contains(r.Scope, DefaultAudience+"/.default") {
				t.Errorf("token request = %+v, want status %d", r, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				var authErr *azidentity.AuthenticationFailedError
				if !errors.As(err, &authErr) {
					t.Fatalf("GetToken error = %v, want an AuthenticationFailedError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetToken: %v", err)
			}
			b := &testBundle{srv: srv, token: tok.Token}
			resp, body := b.call(t, opRequest(OpInvoiceGet, testInv))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET invoice with the token: %d %s", resp.StatusCode, body)
			}
			if c := lastCall(t, srv); c.Tenant != testTenant {
				t.Errorf("call tenant = %q, want %q", c.Tenant, testTenant)
			}
		})
	}
}

// aadAnswer is Entra ID's error shape as a client decodes it.
type aadAnswer struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	srv := Start(Options{Clients: registered})
	t.Cleanup(srv.Close)
	form := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "client_secret": {testSecret},
			"scope": {DefaultAudience + "/.default openid offline_access profile"}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	tests := []struct {
		name       string
		tenant     string
		form       url.Values
		wantStatus int
		wantError  string
		wantCode   int
	}{
		{"ok", testTenant, form(), http.StatusOK, "", 0},
		{"wrong secret", testTenant, form("client_secret", "nope"), http.StatusUnauthorized, "invalid_client", 7000215},
		{"no credential", testTenant, form("client_secret", ""), http.StatusUnauthorized, "invalid_client", 7000218},
		{"unknown client", testTenant, form("client_id", "nobody"), http.StatusBadRequest, "unauthorized_client", 700016},
		{"wrong tenant", "contoso.onmicrosoft.com", form(), http.StatusBadRequest, "unauthorized_client", 700016},
		{"password grant", testTenant, form("grant_type", "password"), http.StatusBadRequest, "unsupported_grant_type", 70003},
		{"no client id", testTenant, form("client_id", ""), http.StatusBadRequest, "invalid_request", 900144},
		{"scope without .default", testTenant, form("scope", DefaultAudience+"/user_impersonation"), http.StatusBadRequest, "invalid_scope", 1002012},
		{"two resources", testTenant, form("scope", DefaultAudience+"/.default https://vault.azure.net/.default"), http.StatusBadRequest, "invalid_scope", 1002012},
		{"secret for a federated client", testTenant, form("client_id", "wi-app"), http.StatusUnauthorized, "invalid_client", 7000215},
		{"assertion without its type", testTenant, form("client_id", "wi-app", "client_secret", "", "client_assertion", "jwt"),
			http.StatusBadRequest, "invalid_request", 900144},
		{"assertion", testTenant, form("client_id", "wi-app", "client_secret", "", "client_assertion", "jwt", "client_assertion_type", clientAssertionType),
			http.StatusOK, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := send(t, srv.Client(), http.MethodPost, srv.URL()+"/"+tt.tenant+"/oauth2/v2.0/token", "", tt.form.Encode(),
				map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == http.StatusOK {
				var tok tokenResponse
				if err := json.Unmarshal(body, &tok); err != nil || tok.TokenType != "Bearer" || len(tok.AccessToken) < 43 || tok.ExpiresIn != 3600 {
					t.Errorf("token answer = %s (%v)", body, err)
				}
				return
			}
			var e aadAnswer
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("not an AAD error: %v: %s", err, body)
			}
			if e.Error != tt.wantError || len(e.ErrorCodes) != 1 || e.ErrorCodes[0] != tt.wantCode ||
				!strings.HasPrefix(e.ErrorDescription, "AADSTS") {
				t.Errorf("error = %+v, want %s AADSTS%d", e, tt.wantError, tt.wantCode)
			}
		})
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	t.Parallel()
	srv := Start(Options{})
	t.Cleanup(srv.Close)
	resp, body := send(t, srv.Client(), http.MethodGet, srv.URL()+"/"+testTenant+"/v2.0/.well-known/openid-configuration", "", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	authority := srv.URL() + "/" + testTenant
	for key, want := range map[string]string{
		"issuer":                        authority + "/v2.0",
		"authorization_endpoint":        authority + "/oauth2/v2.0/authorize",
		"token_endpoint":                authority + "/oauth2/v2.0/token",
		"device_authorization_endpoint": authority + "/oauth2/v2.0/devicecode",
	} {
		if got[key] != want {
			t.Errorf("%s = %q, want %q", key, got[key], want)
		}
	}
}

func TestTokenFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode       TokenFailure
		wantStatus int // logged for the token request
	}{
		{TokenUnavailable, http.StatusServiceUnavailable},
		{TokenHang, 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			srv := Start(Options{})
			t.Cleanup(srv.Close)
			srv.SetTokenFailure(tt.mode)
			cred := secretCredential(t, srv, testTenant, testClient, testSecret)
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			if _, err := cred.GetToken(ctx, policyScopes()); err == nil {
				t.Fatal("GetToken succeeded, want an error")
			}
			reqs := srv.TokenRequests()
			if len(reqs) != 1 || reqs[0].Status != tt.wantStatus {
				t.Fatalf("token requests = %+v, want one with status %d", reqs, tt.wantStatus)
			}
			srv.SetTokenFailure(TokenOK)
			if _, err := cred.GetToken(t.Context(), policyScopes()); err != nil {
				t.Fatalf("GetToken after TokenOK: %v", err)
			}
		})
	}

	t.Run("unavailable body", func(t *testing.T) {
		t.Parallel()
		srv := Start(Options{})
		t.Cleanup(srv.Close)
		srv.SetTokenFailure(TokenUnavailable)
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"b"}, "scope": {DefaultAudience + "/.default"}}
		resp, body := send(t, srv.Client(), http.MethodPost, srv.URL()+"/t/oauth2/v2.0/token", "", form.Encode(),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		var e aadAnswer
		if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != http.StatusServiceUnavailable || e.Error != "temporarily_unavailable" {
			t.Errorf("answer = %d %s (%v), want 503 temporarily_unavailable", resp.StatusCode, body, err)
		}
	})
}

// A hanging token request must not keep Close waiting.
func TestCloseEndsHangingTokenRequest(t *testing.T) {
	t.Parallel()
	srv := Start(Options{})
	srv.SetTokenFailure(TokenHang)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"b"}, "scope": {DefaultAudience + "/.default"}}
	errc := make(chan error, 1)
	go func() {
		resp, err := srv.Client().PostForm(srv.URL()+"/t/oauth2/v2.0/token", form)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	testwait.For(t, 5*time.Second, "the token request", func() bool { return len(srv.TokenRequests()) > 0 })
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a hanging token request")
	}
	if err := <-errc; err == nil {
		t.Error("hanging token request got an answer, want a dropped connection")
	}
}

func TestTokenLifetime(t *testing.T) {
	t.Parallel()
	const lifetime = 90 * time.Second
	srv := Start(Options{TokenLifetime: lifetime})
	t.Cleanup(srv.Close)

	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"b"}, "scope": {DefaultAudience + "/.default"}}
	_, body := send(t, srv.Client(), http.MethodPost, srv.URL()+"/"+testTenant+"/oauth2/v2.0/token", "", form.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	var raw tokenResponse
	if err := json.Unmarshal(body, &raw); err != nil || raw.ExpiresIn != 90 || raw.ExtExpiresIn != 90 {
		t.Fatalf("token answer = %s (%v), want expires_in 90", body, err)
	}

	tok, err := secretCredential(t, srv, testTenant, testClient, testSecret).GetToken(t.Context(),
		policyScopes())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(tok.ExpiresOn); d < lifetime-10*time.Second || d > lifetime {
		t.Errorf("azidentity token expires in %s, want about %s", d, lifetime)
	}
	issued := srv.IssueToken(testTenant, DefaultAudience)
	for _, token := range []string{tok.Token, raw.AccessToken, issued} {
		b := &testBundle{srv: srv, token: token}
		if resp, body := b.call(t, opRequest(OpInvoiceGet, testInv)); resp.StatusCode != http.StatusOK {
			t.Fatalf("fresh token refused: %d %s", resp.StatusCode, body)
		}
	}

	srv.clockSkew.Store(int64(lifetime + time.Second))
	for _, token := range []string{tok.Token, raw.AccessToken, issued} {
		b := &testBundle{srv: srv, token: token}
		resp, body := b.call(t, opRequest(OpInvoiceGet, testInv))
		wantError(t, resp, body, http.StatusUnauthorized, "ExpiredAuthenticationToken", "")
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	other := Start(Options{})
	t.Cleanup(other.Close)
	tests := []struct {
		name          string
		authorization string
		wantStatus    int
		wantTenant    string
	}{
		{"azidentity token", "Bearer " + b.token, http.StatusOK, testTenant},
		{"issued token", "Bearer " + b.srv.IssueToken("t1", DefaultAudience), http.StatusOK, "t1"},
		{"audience with trailing slash", "bearer " + b.srv.IssueToken("t2", DefaultAudience+"/"), http.StatusOK, "t2"},
		{"missing", "", http.StatusUnauthorized, ""},
		{"not bearer", "Basic dXNlcjpwdw==", http.StatusUnauthorized, ""},
		{"foreign token", "Bearer " + other.IssueToken(testTenant, DefaultAudience), http.StatusUnauthorized, ""},
		{"wrong audience", "Bearer " + b.srv.IssueToken("t3", "https://management.core.windows.net/"), http.StatusUnauthorized, "t3"},
		{"vault audience", "Bearer " + b.srv.IssueToken("t4", "https://vault.azure.net"), http.StatusUnauthorized, "t4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inv := "H1-" + strings.ToUpper(strings.ReplaceAll(tt.name, " ", ""))
			req := opRequest(OpInvoiceGet, inv)
			header := map[string]string{"Authorization": tt.authorization}
			resp, body := send(t, b.srv.Client(), req.method, b.srv.URL()+req.path, "", "", header)
			if tt.wantStatus == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d: %s", resp.StatusCode, body)
				}
			} else {
				wantError(t, resp, body, http.StatusUnauthorized, "InvalidAuthenticationToken", "")
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer authorization_uri="`) {
					t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
				}
			}
			calls := b.srv.CallsFor(inv)
			if len(calls) != 1 || calls[0].Status != tt.wantStatus || calls[0].Tenant != tt.wantTenant || calls[0].Operation != OpInvoiceGet {
				t.Errorf("calls = %+v, want one %s call with status %d, tenant %q", calls, OpInvoiceGet, tt.wantStatus, tt.wantTenant)
			}
		})
	}
}

// A server for the classic ARM audience takes the scope azcore's public cloud configuration
// asks for ("https://management.core.windows.net//.default") and refuses the other audience.
func TestClassicAudience(t *testing.T) {
	t.Parallel()
	const classic = "https://management.core.windows.net/"
	srv := Start(Options{Audience: classic})
	t.Cleanup(srv.Close)
	tests := []struct {
		audience   string
		wantStatus int
	}{
		{classic, http.StatusOK},
		{DefaultAudience, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.audience, func(t *testing.T) {
			t.Parallel()
			b := &testBundle{srv: srv, token: azToken(t, srv, testTenant, testClient, testSecret, tt.audience)}
			if resp, body := b.call(t, opRequest(OpInvoiceGet, testInv)); resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
		})
	}
}
