package emulator

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenRequest is one logged request to the token endpoint.
type TokenRequest struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"` // the host the client addressed (the authority host)
	Tenant    string    `json:"tenant"`
	ClientID  string    `json:"clientId"`
	Scope     string    `json:"scope"`
	GrantType string    `json:"grantType"`
	Status    int       `json:"status"` // 0: the request was left hanging (TokenHang)
}

// Resource returns the scope asked for without the OpenID scopes MSAL
// adds to it (openid, offline_access, profile).
func (r TokenRequest) Resource() string {
	var out []string
	for _, f := range strings.Fields(r.Scope) {
		switch f {
		case "openid", "offline_access", "profile":
		default:
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

// tokenInfo is what the server knows about a token it issued.
type tokenInfo struct {
	tenant, clientID, audience string
	expires                    time.Time
}

// clientAssertionType is the only client assertion type Entra ID accepts.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// IssueToken mints a token for tenant and audience without the token endpoint, valid for
// Options.TokenLifetime.
func (s *Server) IssueToken(tenant, audience string) string {
	return s.mint(tenant, "", audience)
}

// mint issues an opaque token: 32 random bytes, base64url, known only to this server.
func (s *Server) mint(tenant, clientID, audience string) string {
	token := randomString(32, base64.RawURLEncoding)
	info := tokenInfo{tenant: tenant, clientID: clientID, audience: audience, expires: s.now().Add(s.opts.TokenLifetime)}
	s.tokMu.Lock()
	s.tokens[token] = info
	s.tokMu.Unlock()
	return token
}

func (s *Server) lookupToken(token string) (tokenInfo, bool) {
	s.tokMu.RLock()
	defer s.tokMu.RUnlock()
	info, ok := s.tokens[token]
	return info, ok
}

// expiresIn is the token lifetime in whole seconds as the token endpoint announces it: rounded
// down, so clients renew before the server refuses, and at least 1.
func (s *Server) expiresIn() int {
	return max(1, int(s.opts.TokenLifetime/time.Second))
}

// sameAudience compares audiences ignoring one trailing slash
// ("https://management.core.windows.net/" is "https://management.core.windows.net").
func sameAudience(a, b string) bool {
	return strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// scopeAudience returns the resource of a client-credentials scope: exactly one
// "<resource>/.default", besides the OIDC scopes MSAL adds.
func scopeAudience(scope string) (string, bool) {
	var audience string
	n := 0
	for _, f := range strings.Fields(scope) {
		switch f {
		case "openid", "offline_access", "profile":
			continue
		}
		resource, ok := strings.CutSuffix(f, "/.default")
		if !ok || resource == "" {
			return "", false
		}
		audience = resource
		n++
	}
	return audience, n == 1
}

// openIDConfig is the part of Entra ID's OpenID configuration that MSAL reads (issuer,
// authorization and token endpoints), plus the usual neighbours.
type openIDConfig struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TenantRegionScope                 string   `json:"tenant_region_scope"`
	CloudInstanceName                 string   `json:"cloud_instance_name"`
}

// serveOpenIDConfig answers GET /{tenant}/v2.0/.well-known/openid-configuration. The issuer
// is on this server, which is what MSAL checks against the authority.
func (s *Server) serveOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	authority := s.base(r) + "/" + r.PathValue("tenant")
	writeJSON(w, http.StatusOK, openIDConfig{
		Issuer:                            authority + "/v2.0",
		AuthorizationEndpoint:             authority + "/oauth2/v2.0/authorize",
		TokenEndpoint:                     authority + "/oauth2/v2.0/token",
		DeviceAuthorizationEndpoint:       authority + "/oauth2/v2.0/devicecode",
		TokenEndpointAuthMethodsSupported: []string{"client_secret_post", "private_key_jwt"},
		TenantRegionScope:                 "WW",
		CloudInstanceName:                 "microsoftonline.com",
	})
}

// tokenResponse is a successful token answer.
type tokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	ExtExpiresIn int    `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

// aadError is Entra ID's error shape.
type aadError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
}

// serveToken answers POST /{tenant}/oauth2/v2.0/token: the client credentials grant, with a
// client secret or a client assertion.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	parseErr := r.ParseForm()
	req := TokenRequest{
		Time:      s.now(),
		Host:      r.Host,
		Tenant:    r.PathValue("tenant"),
		ClientID:  r.PostForm.Get("client_id"),
		Scope:     r.PostForm.Get("scope"),
		GrantType: r.PostForm.Get("grant_type"),
	}
	s.mu.Lock()
	failure := s.st.tokenFailure
	s.mu.Unlock()
	if failure == TokenHang {
		s.recordToken(req)
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		panic(http.ErrAbortHandler) // never answer
	}
	var status int
	var body any
	if parseErr != nil {
		status, body = s.aadError(http.StatusBadRequest, "invalid_request", 900144, "The request body is not a valid form: "+parseErr.Error())
	} else {
		status, body = s.grant(req, r.PostForm, failure)
	}
	req.Status = status
	s.recordToken(req)
	writeJSON(w, status, body)
}

// grant decides a token request: a token, or an Entra ID error.
func (s *Server) grant(req TokenRequest, form url.Values, failure TokenFailure) (int, any) {
	if failure == TokenUnavailable {
		return s.aadError(http.StatusServiceUnavailable, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
	}
	if req.GrantType != "client_credentials" {
		return s.aadError(http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", req.GrantType))
	}
	if req.ClientID == "" {
		return s.aadError(http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
	}
	audience, ok := scopeAudience(req.Scope)
	if !ok {
		return s.aadError(http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope '%s' is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", req.Scope))
	}
	secret, assertion := form.Get("client_secret"), form.Get("client_assertion")
	switch {
	case assertion != "" && form.Get("client_assertion_type") != clientAssertionType:
		return s.aadError(http.StatusBadRequest, "invalid_request", 900144,
			"The request body must contain the following parameter: 'client_assertion_type' with the value '"+clientAssertionType+"'.")
	case secret == "" && assertion == "":
		return s.aadError(http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
	if len(s.opts.Clients) > 0 {
		c, ok := s.opts.Clients[req.ClientID]
		switch {
		case !ok || c.Tenant != "" && !strings.EqualFold(c.Tenant, req.Tenant):
			return s.aadError(http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
				"Application with identifier '%s' was not found in the directory '%s'.", req.ClientID, req.Tenant))
		case c.Secret == "" && assertion == "":
			return s.aadError(http.StatusUnauthorized, "invalid_client", 7000215,
				"Invalid client secret provided. The application has no secret: it authenticates with client assertions.")
		case c.Secret != "" && assertion != "":
			return s.aadError(http.StatusUnauthorized, "invalid_client", 700027, "Client assertion failed signature validation.")
		case c.Secret == "" && c.Assertion != "" && assertion != c.Assertion:
			return s.aadError(http.StatusUnauthorized, "invalid_client", 700213,
				"No matching federated identity record found for presented assertion subject.")
		case c.Secret != "" && secret != c.Secret:
			return s.aadError(http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", req.ClientID))
		}
	}
	n := s.expiresIn()
	return http.StatusOK, tokenResponse{TokenType: "Bearer", ExpiresIn: n, ExtExpiresIn: n, AccessToken: s.mint(req.Tenant, req.ClientID, audience)}
}

// aadError builds an Entra ID error: the description starts with "AADSTS<code>:" and ends with
// the trace and correlation IDs and the time, as Entra ID's do.
func (s *Server) aadError(status int, name string, code int, description string) (int, any) {
	timestamp := s.now().UTC().Format("2006-01-02 15:04:05Z")
	trace, correlation := newGUID(), newGUID()
	return status, aadError{
		Error: name,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			code, description, trace, correlation, timestamp),
		ErrorCodes:    []int{code},
		Timestamp:     timestamp,
		TraceID:       trace,
		CorrelationID: correlation,
	}
}

func (s *Server) recordToken(req TokenRequest) {
	s.mu.Lock()
	s.st.tokenReqs = append(s.st.tokenReqs, req)
	s.mu.Unlock()
	s.logf("emulator: token tenant=%s client=%s scope=%q -> %d", req.Tenant, req.ClientID, req.Scope, req.Status)
}
