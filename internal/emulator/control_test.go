package emulator

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestControlAPI(t *testing.T) {
	t.Parallel()
	srv := Start(Options{})
	t.Cleanup(srv.Close)
	c := srv.Client()
	control := func(method, path, body string) int {
		t.Helper()
		resp, data := send(t, c, method, srv.URL()+"/_emulator/"+path, "", body, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode >= 300 {
			t.Logf("%s %s: %d %s", method, path, resp.StatusCode, data)
		}
		return resp.StatusCode
	}

	// A token from the convenience endpoint.
	resp, body := send(t, c, http.MethodGet, srv.URL()+"/_emulator/token?tenant=dev-tenant", "", "", nil)
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" || tok.ExpiresIn != 3600 {
		t.Fatalf("token: %d %s (%v)", resp.StatusCode, body, err)
	}
	b := &testBundle{srv: srv, token: tok.AccessToken}

	// A script with every field, as JSON.
	script := `[
		{"status": 429, "header": {"x-ms-ratelimit-microsoft.consumption-retry-after": "3"}, "errorCode": "TooManyRequests", "errorMessage": "slow down"},
		{"status": 202, "header": {"Retry-After": "2"}, "delay": "10ms"},
		{"status": 202, "noLocation": true},
		{"status": 202, "location": "https://elsewhere.example.com/op"},
		{"status": 400, "errorCode": "Bad", "errorMessage": "m", "errorTarget": "x"},
		{"status": 200, "body": "{}"},
		{"reset": true}
	]`
	if got := control(http.MethodPut, "scripts/"+testInv, script); got != http.StatusNoContent {
		t.Fatalf("PUT script: %d", got)
	}
	want := []int{429, 202, 202, 202, 400, 200}
	for i, w := range want {
		if resp, body := b.call(t, opRequest(OpPricesheetDownload, testInv)); resp.StatusCode != w {
			t.Fatalf("call %d: %d %s, want %d", i, resp.StatusCode, body, w)
		}
	}

	resp, body = send(t, c, http.MethodGet, srv.URL()+"/_emulator/calls?invoiceName="+testInv, "", "", nil)
	var calls []Call
	if err := json.Unmarshal(body, &calls); err != nil || len(calls) != len(want) || calls[0].RetryAfter != "3" || calls[1].Tenant != "dev-tenant" {
		t.Fatalf("calls: %d %s (%v)", resp.StatusCode, body, err)
	}

	// The default script, then reset.
	if got := control(http.MethodPut, "default", `[{"status": 200}]`); got != http.StatusNoContent {
		t.Fatalf("PUT default: %d", got)
	}
	if resp, _ := b.call(t, opRequest(OpInvoiceSummary, "G000000002")); resp.StatusCode != http.StatusOK {
		t.Errorf("with the default 200: %d", resp.StatusCode)
	}
	if got := control(http.MethodPost, "reset", ""); got != http.StatusNoContent {
		t.Fatalf("POST reset: %d", got)
	}
	_, body = send(t, c, http.MethodGet, srv.URL()+"/_emulator/calls", "", "", nil)
	if string(body) != "[]" {
		t.Errorf("calls after reset = %s, want []", body)
	}
	if resp, _ := b.call(t, opRequest(OpInvoiceSummary, "G000000002")); resp.StatusCode != http.StatusAccepted {
		t.Errorf("default after reset: %d, want 202", resp.StatusCode)
	}

	// Token failures.
	if got := control(http.MethodPut, "token-failure", `{"mode": "unavailable"}`); got != http.StatusNoContent {
		t.Fatalf("PUT token-failure: %d", got)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"a"}, "client_secret": {"b"}, "scope": {DefaultAudience + "/.default"}}
	if resp, _ := send(t, c, http.MethodPost, srv.URL()+"/t/oauth2/v2.0/token", "", form.Encode(),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("token with failure unavailable: %d", resp.StatusCode)
	}
	_, body = send(t, c, http.MethodGet, srv.URL()+"/_emulator/token-requests", "", "", nil)
	var reqs []TokenRequest
	if err := json.Unmarshal(body, &reqs); err != nil || len(reqs) != 1 || reqs[0].Status != http.StatusServiceUnavailable {
		t.Errorf("token requests = %s (%v)", body, err)
	}

	// Bad requests.
	for _, bad := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodPut, "scripts/" + testInv, `{"status": 200}`, http.StatusBadRequest},
		{http.MethodPut, "scripts/" + testInv, `[{"status": 200, "delay": "soon"}]`, http.StatusBadRequest},
		{http.MethodPut, "scripts/" + testInv, `[{"status": 42}]`, http.StatusBadRequest},
		{http.MethodPut, "scripts/" + testInv, `[{"statsu": 200}]`, http.StatusBadRequest},
		{http.MethodPut, "token-failure", `{"mode": "flaky"}`, http.StatusBadRequest},
		{http.MethodPut, "script/" + testInv, `[]`, http.StatusNotFound},
		{http.MethodGet, "reset", ``, http.StatusNotFound},
	} {
		if got := control(bad.method, bad.path, bad.body); got != bad.want {
			t.Errorf("%s %s %s: %d, want %d", bad.method, bad.path, bad.body, got, bad.want)
		}
	}
}

func TestReplyJSON(t *testing.T) {
	t.Parallel()
	body := ""
	tests := []struct {
		reply Reply
		json  string
	}{
		{OK(), `{"status":200}`},
		{Accepted("2").After(1500 * time.Millisecond), `{"status":202,"header":{"Retry-After":"2"},"delay":"1.5s"}`},
		{Throttled(429, "retry-after-ms", "10"), `{"status":429,"header":{"retry-after-ms":"10"},"errorMessage":"Request is throttled. Retry after waiting for the time specified in the \"retry-after-ms\" header."}`},
		{Fail(404, "NotFound", "gone"), `{"status":404,"errorCode":"NotFound","errorMessage":"gone"}`},
		{ResetConn(), `{"status":0,"reset":true}`},
		{Reply{Status: 200, Body: &body}, `{"status":200,"body":""}`},
		{Reply{Status: 202, NoLocation: true, Location: "x", ErrorTarget: "t"}, `{"status":202,"noLocation":true,"location":"x","errorTarget":"t"}`},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tt.reply)
			if err != nil || string(got) != tt.json {
				t.Fatalf("Marshal = %s (%v), want %s", got, err, tt.json)
			}
			var back Reply
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if again, _ := json.Marshal(back); string(again) != tt.json {
				t.Errorf("round trip = %s, want %s", again, tt.json)
			}
		})
	}
}

func TestListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		plain bool
	}{
		{"tls", false},
		{"plain", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, err := Listen("127.0.0.1:0", Options{PlainHTTP: tt.plain})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			err = srv.WriteCACert(caFile)
			if tt.plain {
				if err == nil || srv.CertPool() != nil {
					t.Fatal("plain HTTP server wrote a certificate")
				}
				resp, _ := send(t, srv.Client(), http.MethodGet, srv.URL()+"/_emulator/calls", "", "", nil)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Another process would trust the PEM file; it names localhost as well as the IP.
			pem, err := os.ReadFile(caFile)
			if err != nil {
				t.Fatal(err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				t.Fatal("the CA file holds no certificate")
			}
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			t.Cleanup(client.CloseIdleConnections)
			u, _ := url.Parse(srv.URL())
			for _, host := range []string{u.Host, "localhost:" + u.Port()} {
				resp, _ := send(t, client, http.MethodGet, "https://"+host+"/_emulator/calls", "", "", nil)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d", host, resp.StatusCode)
				}
			}
		})
	}
}

func TestListenBusyAddress(t *testing.T) {
	t.Parallel()
	srv := Start(Options{})
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL())
	if s, err := Listen(u.Host, Options{}); err == nil {
		s.Close()
		t.Fatal("Listen on a busy address succeeded")
	}
}
