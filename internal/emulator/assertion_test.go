package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A client registered with an Assertion accepts that federated token only;
// the token request log names the host the client addressed.
func TestTokenAssertionAndHost(t *testing.T) {
	t.Parallel()
	srv := Start(Options{Clients: map[string]Client{"aks-app": {Tenant: testTenant, Assertion: "eyJ.projected-sa-token.sig"}}})
	t.Cleanup(srv.Close)
	form := func(assertion string) string {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {"aks-app"}, "scope": {DefaultAudience + "/.default"},
			"client_assertion": {assertion}, "client_assertion_type": {clientAssertionType}}.Encode()
	}
	for _, tt := range []struct {
		assertion string
		status    int
		code      int
	}{
		{"eyJ.projected-sa-token.sig", http.StatusOK, 0},
		{"eyJ.another-token.sig", http.StatusUnauthorized, 700213},
	} {
		resp, body := send(t, srv.Client(), http.MethodPost, srv.URL()+"/"+testTenant+"/oauth2/v2.0/token", "", form(tt.assertion),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		if resp.StatusCode != tt.status {
			t.Fatalf("%s: status %d, want %d: %s", tt.assertion, resp.StatusCode, tt.status, body)
		}
		if tt.code != 0 {
			var e aadAnswer
			if err := json.Unmarshal(body, &e); err != nil || e.Error != "invalid_client" || len(e.ErrorCodes) != 1 || e.ErrorCodes[0] != tt.code {
				t.Errorf("%s: error %s", tt.assertion, body)
			}
		}
	}
	// A secret does not do for a federated client.
	resp, _ := send(t, srv.Client(), http.MethodPost, srv.URL()+"/"+testTenant+"/oauth2/v2.0/token", "",
		url.Values{"grant_type": {"client_credentials"}, "client_id": {"aks-app"}, "scope": {DefaultAudience + "/.default"}, "client_secret": {"x"}}.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("secret for a federated client: %d", resp.StatusCode)
	}
	host := strings.TrimPrefix(srv.URL(), "https://")
	for _, r := range srv.TokenRequests() {
		if r.Host != host {
			t.Errorf("token request host %q, want %q", r.Host, host)
		}
	}
}
