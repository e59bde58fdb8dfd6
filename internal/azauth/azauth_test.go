package azauth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/internal/azauth"
	"github.com/azbilling/worker/internal/emulator"
)

// The clouds' values as Microsoft documents them: the ARM audience is the
// classic one, so the scope asked for is "<audience>/.default" with its
// double slash, as azcore's arm package asks.
func TestCloudsByName(t *testing.T) {
	t.Parallel()
	want := map[string]azauth.Cloud{
		"public": {Name: "public", ARMEndpoint: "https://management.azure.com", Audience: "https://management.core.windows.net/", AuthorityHost: "https://login.microsoftonline.com/"},
		"china":  {Name: "china", ARMEndpoint: "https://management.chinacloudapi.cn", Audience: "https://management.core.chinacloudapi.cn/", AuthorityHost: "https://login.chinacloudapi.cn/"},
		"usgov":  {Name: "usgov", ARMEndpoint: "https://management.usgovcloudapi.net", Audience: "https://management.core.usgovcloudapi.net/", AuthorityHost: "https://login.microsoftonline.us/"},
	}
	azcoreClouds := map[string]cloud.Configuration{"public": cloud.AzurePublic, "china": cloud.AzureChina, "usgov": cloud.AzureGovernment}
	for name, w := range want {
		got, err := azauth.ResolveCloud(name, "", "", "")
		if err != nil || got != w {
			t.Errorf("ResolveCloud(%s) = %+v, %v; want %+v", name, got, err, w)
		}
		// The same values as azcore's cloud package, which is where they come from.
		ac := azcoreClouds[name]
		if rm := ac.Services[cloud.ResourceManager]; rm.Audience != w.Audience || rm.Endpoint != w.ARMEndpoint || ac.ActiveDirectoryAuthorityHost != w.AuthorityHost {
			t.Errorf("azcore's %s cloud = %+v %s", name, rm, ac.ActiveDirectoryAuthorityHost)
		}
		if !reflect.DeepEqual(got.Configuration(), cloud.Configuration{
			ActiveDirectoryAuthorityHost: w.AuthorityHost,
			Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Audience: w.Audience, Endpoint: w.ARMEndpoint}},
		}) {
			t.Errorf("%s: Configuration() = %+v", name, got.Configuration())
		}
	}
}

func TestResolveCloudOverrides(t *testing.T) {
	t.Parallel()
	// A named cloud keeps its audience when only the endpoints move (a
	// private link, or the emulator standing in for China).
	c, err := azauth.ResolveCloud("china", "https://127.0.0.1:8443", "", "https://127.0.0.1:8443/")
	if err != nil || c.Audience != "https://management.core.chinacloudapi.cn/" || c.ARMEndpoint != "https://127.0.0.1:8443" || c.AuthorityHost != "https://127.0.0.1:8443/" {
		t.Errorf("china with overrides = %+v, %v", c, err)
	}
	c, err = azauth.ResolveCloud("custom", "https://management.local.azurestack.external", "https://management.adfs.azurestack.local/4a9d", "https://login.local.azurestack.external/")
	if err != nil || c.Name != "custom" || c.Audience != "https://management.adfs.azurestack.local/4a9d" {
		t.Errorf("custom = %+v, %v", c, err)
	}
	for _, args := range [][4]string{
		{"custom", "", "", ""},
		{"custom", "https://arm", "", "https://login/"},
		{"custom", "https://arm", "aud", ""},
		{"custom", "", "aud", "https://login/"},
		{"germany", "", "", ""},
		{"Public", "", "", ""},
	} {
		if c, err := azauth.ResolveCloud(args[0], args[1], args[2], args[3]); err == nil {
			t.Errorf("ResolveCloud%q = %+v, want an error", args, c)
		}
	}
}

func TestProfileValidate(t *testing.T) {
	t.Parallel()
	ok := []azauth.Profile{
		{},
		{Credential: "default", TenantID: "t"},
		{Credential: "workload-identity"}, // the AKS webhook's variables
		{Credential: "workload-identity", TenantID: "t", ClientID: "c", FederatedTokenFile: "/var/run/secrets/azure/tokens/azure-identity-token"},
		{Credential: "managed-identity"},
		{Credential: "managed-identity", ClientID: "c"},
		{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: "/s"},
		{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretEnv: "SECRET"},
		{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: "/c.pem"},
		{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: "/c.pfx", CertificatePasswordEnv: "PW"},
		{Credential: "azure-cli"}, // no tenant needed: az login's
		{Credential: "azure-cli", TenantID: "t"},
	}
	for _, p := range ok {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := []struct {
		p    azauth.Profile
		want string
	}{
		{azauth.Profile{Credential: "client-secret", ClientID: "c", ClientSecretFile: "/s"}, "needs tenantId and clientId"},
		{azauth.Profile{Credential: "client-secret", TenantID: "t", ClientSecretFile: "/s"}, "needs tenantId and clientId"},
		{azauth.Profile{Credential: "client-secret", TenantID: "t", ClientID: "c"}, "one of clientSecretFile or clientSecretEnv"},
		{azauth.Profile{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: "/s", ClientSecretEnv: "S"}, "one of clientSecretFile or clientSecretEnv"},
		{azauth.Profile{Credential: "client-certificate", TenantID: "t", ClientID: "c"}, "needs certificateFile"},
		{azauth.Profile{Credential: "client-certificate", CertificateFile: "/c.pem"}, "needs tenantId and clientId"},
		{azauth.Profile{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: "/s", CertificateFile: "/c"}, "does not use certificateFile"},
		{azauth.Profile{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: "/c", ClientSecretEnv: "S"}, "does not use clientSecretEnv"},
		{azauth.Profile{ClientID: "c"}, "default credential does not use clientId"},
		{azauth.Profile{Credential: "default", ClientSecretFile: "/s"}, "does not use clientSecretFile"},
		{azauth.Profile{Credential: "managed-identity", TenantID: "t"}, "does not use tenantId"},
		{azauth.Profile{Credential: "workload-identity", ClientSecretFile: "/s"}, "does not use clientSecretFile"},
		{azauth.Profile{Credential: "azure-cli", ClientID: "c"}, "does not use clientId"},
		{azauth.Profile{Credential: "ClientSecret"}, `credential "ClientSecret" is not one of default, workload-identity`},
		{azauth.Profile{Credential: "environment"}, "is not one of"},
	}
	for _, b := range bad {
		err := b.p.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: error %v, want %q", b.p, err, b.want)
		}
		// NewCredential refuses what Validate refuses, before reading anything.
		if _, err := azauth.NewCredential(b.p, azauth.Options{}); err == nil {
			t.Errorf("%+v: NewCredential accepted it", b.p)
		}
	}
}

func TestLoadProfiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{
  "default": "contoso",
  "profiles": {
    "contoso":  {"credential": "workload-identity", "tenantId": "aaaaaaaa-0000-0000-0000-000000000001", "clientId": "bbbbbbbb-0000-0000-0000-000000000001"},
    "fabrikam": {"credential": "client-secret", "tenantId": "aaaaaaaa-0000-0000-0000-000000000002", "clientId": "bbbbbbbb-0000-0000-0000-000000000002", "clientSecretFile": "/var/run/secrets/billing/fabrikam"}
  }
}`)
	ps, err := azauth.LoadProfiles(good)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Default != "contoso" || !reflect.DeepEqual(ps.Names(), []string{"contoso", "fabrikam"}) || ps.Profiles["fabrikam"].ClientSecretFile != "/var/run/secrets/billing/fabrikam" {
		t.Errorf("profiles = %+v", ps)
	}
	for name, c := range map[string]struct{ content, want string }{
		"unknown field":   {`{"default":"a","profiles":{"a":{"credential":"azure-cli","clientSecret":"inline"}}}`, `unknown field "clientSecret"`},
		"no default":      {`{"default":"b","profiles":{"a":{"credential":"azure-cli"}}}`, `default profile "b" is not defined`},
		"no profiles":     {`{"default":"a","profiles":{}}`, "no profiles"},
		"bad name":        {`{"default":"Tenant_A","profiles":{"Tenant_A":{"credential":"azure-cli"}}}`, "must be a lower-case DNS label"},
		"bad profile":     {`{"default":"a","profiles":{"a":{"credential":"client-secret"}}}`, "profile a: client-secret credential needs tenantId and clientId"},
		"not json":        {`default: a`, "profiles file"},
		"every problem":   {`{"default":"x","profiles":{"a":{"credential":"client-secret"},"b":{"credential":"nope"}}}`, `is not one of`},
		"unknown default": {`{"profiles":{"a":{}}}`, `default profile "" is not defined`},
	} {
		_, err := azauth.LoadProfiles(write(strings.ReplaceAll(name, " ", "-")+".json", c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	if _, err := azauth.LoadProfiles(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file was accepted")
	}
}

// Each explicit credential type builds that credential and nothing else: no
// chain that could fall back to another identity.
func TestNewCredentialTypes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	tokenFile := filepath.Join(dir, "azure-identity-token")
	certFile := filepath.Join(dir, "cert.pem")
	for path, content := range map[string][]byte{secretFile: []byte("s3cret\n"), tokenFile: []byte("eyJ.k8s.token"), certFile: certificatePEM(t)} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := azauth.Options{Cloud: azauth.Clouds["public"]}
	cases := []struct {
		p    azauth.Profile
		want any
	}{
		{azauth.Profile{}, &azidentity.DefaultAzureCredential{}},
		{azauth.Profile{Credential: "default", TenantID: "t"}, &azidentity.DefaultAzureCredential{}},
		{azauth.Profile{Credential: "workload-identity", TenantID: "t", ClientID: "c", FederatedTokenFile: tokenFile}, &azidentity.WorkloadIdentityCredential{}},
		{azauth.Profile{Credential: "managed-identity"}, &azidentity.ManagedIdentityCredential{}},
		{azauth.Profile{Credential: "managed-identity", ClientID: "c"}, &azidentity.ManagedIdentityCredential{}},
		{azauth.Profile{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: secretFile}, &azidentity.ClientSecretCredential{}},
		{azauth.Profile{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: certFile}, &azidentity.ClientCertificateCredential{}},
		{azauth.Profile{Credential: "azure-cli"}, &azidentity.AzureCLICredential{}},
	}
	for _, c := range cases {
		cred, err := azauth.NewCredential(c.p, o)
		if err != nil {
			t.Errorf("%+v: %v", c.p, err)
			continue
		}
		if reflect.TypeOf(cred) != reflect.TypeOf(c.want) {
			t.Errorf("%+v: credential is a %T, want %T", c.p, cred, c.want)
		}
	}
	// Files that cannot be used fail at start, not at the first request.
	for _, p := range []azauth.Profile{
		{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: filepath.Join(dir, "missing")},
		{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretFile: emptyFile(t)},
		{Credential: "client-secret", TenantID: "t", ClientID: "c", ClientSecretEnv: "AZAUTH_TEST_SURELY_UNSET"},
		{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: secretFile},
		{Credential: "client-certificate", TenantID: "t", ClientID: "c", CertificateFile: filepath.Join(dir, "missing.pem")},
	} {
		if _, err := azauth.NewCredential(p, o); err == nil {
			t.Errorf("%+v: no error", p)
		}
	}
}

// A client secret can come from a variable the profile names (not
// parallel: it sets the environment).
func TestNewCredentialSecretFromEnv(t *testing.T) {
	emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{"app": {Tenant: "tenant-env", Secret: "from-env"}}})
	t.Cleanup(emu.Close)
	t.Setenv("BILLING_TEST_SECRET", "from-env")
	cred, err := azauth.NewCredential(azauth.Profile{Credential: "client-secret", TenantID: "tenant-env", ClientID: "app", ClientSecretEnv: "BILLING_TEST_SECRET"}, emulatorOptions(emu))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cred.GetToken(t.Context(), scopes()); err != nil {
		t.Fatal(err)
	}
}

// The real credentials get tokens from the emulator's token endpoint (over
// TLS, with its OpenID discovery), each the way it should: a secret, a
// federated token read from a file as on AKS, a certificate's assertion.
func TestCredentialsGetTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const tenant, saToken = "aaaaaaaa-1111-2222-3333-444444444444", "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig"
	secretFile, tokenFile, wrongTokenFile, certFile := filepath.Join(dir, "secret"), filepath.Join(dir, "token"), filepath.Join(dir, "wrong-token"), filepath.Join(dir, "cert.pem")
	for path, content := range map[string][]byte{secretFile: []byte("s3cret"), tokenFile: []byte(saToken), wrongTokenFile: []byte("another-token"), certFile: certificatePEM(t)} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{
		"secret-app": {Tenant: tenant, Secret: "s3cret"},
		"wi-app":     {Tenant: tenant, Assertion: saToken},
		"cert-app":   {Tenant: tenant},
	}})
	t.Cleanup(emu.Close)
	cases := []struct {
		name   string
		p      azauth.Profile
		status int
	}{
		{"client secret", azauth.Profile{Credential: "client-secret", TenantID: tenant, ClientID: "secret-app", ClientSecretFile: secretFile}, http.StatusOK},
		{"workload identity", azauth.Profile{Credential: "workload-identity", TenantID: tenant, ClientID: "wi-app", FederatedTokenFile: tokenFile}, http.StatusOK},
		{"workload identity, not the federated token", azauth.Profile{Credential: "workload-identity", TenantID: tenant, ClientID: "wi-app", FederatedTokenFile: wrongTokenFile}, http.StatusUnauthorized},
		{"client certificate", azauth.Profile{Credential: "client-certificate", TenantID: tenant, ClientID: "cert-app", CertificateFile: certFile}, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cred, err := azauth.NewCredential(c.p, emulatorOptions(emu))
			if err != nil {
				t.Fatal(err)
			}
			before := len(emu.TokenRequests())
			tk, err := cred.GetToken(t.Context(), scopes())
			reqs := emu.TokenRequests()[before:]
			if len(reqs) != 1 || reqs[0].ClientID != c.p.ClientID || reqs[0].Tenant != tenant || reqs[0].Status != c.status {
				t.Fatalf("token requests = %+v, want one by %s answered %d", reqs, c.p.ClientID, c.status)
			}
			if c.status != http.StatusOK {
				var afe *azidentity.AuthenticationFailedError
				if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != c.status {
					t.Fatalf("error = %v", err)
				}
				return
			}
			if err != nil || tk.Token == "" || time.Until(tk.ExpiresOn) < 50*time.Minute {
				t.Fatalf("token %+v, %v", tk, err)
			}
		})
	}
}

// A token endpoint that keeps failing costs a few quick tries, not
// azcore's default of three retries over about 10 s: the worker waits for
// it in the queue, not in a goroutine.
func TestIdentityRetryIsShort(t *testing.T) {
	t.Parallel()
	emu := emulator.Start(emulator.Options{Clients: map[string]emulator.Client{"app": {Tenant: "t1", Secret: "s"}}})
	t.Cleanup(emu.Close)
	emu.SetTokenFailure(emulator.TokenUnavailable)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := azauth.Profile{Credential: "client-secret", TenantID: "t1", ClientID: "app", ClientSecretFile: secretFile}
	try := func(o azauth.Options) (int, time.Duration) {
		cred, err := azauth.NewCredential(p, o)
		if err != nil {
			t.Fatal(err)
		}
		before := len(emu.TokenRequests())
		start := time.Now()
		if _, err := cred.GetToken(t.Context(), scopes()); err == nil {
			t.Fatal("got a token from a failing endpoint")
		}
		return len(emu.TokenRequests()) - before, time.Since(start)
	}
	n, took := try(emulatorOptions(emu))
	if n != int(azauth.IdentityRetry.MaxRetries)+1 || took > 3*time.Second {
		t.Errorf("default: %d token requests in %s, want %d within 3s", n, took, azauth.IdentityRetry.MaxRetries+1)
	}
	o := emulatorOptions(emu)
	o.Retry = &policy.RetryOptions{MaxRetries: -1}
	if n, _ := try(o); n != 1 {
		t.Errorf("no retries: %d token requests", n)
	}
}

func emulatorOptions(emu *emulator.Server) azauth.Options {
	c, err := azauth.ResolveCloud("custom", emu.URL(), emulator.DefaultAudience, emu.URL()+"/")
	if err != nil {
		panic(err)
	}
	return azauth.Options{Cloud: c, Transport: emu.Client(), DisableInstanceDiscovery: true}
}

func scopes() policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: []string{emulator.DefaultAudience + "/.default"}}
}

var _ azcore.TokenCredential = (*azidentity.ClientSecretCredential)(nil)

func emptyFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(p, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// certificatePEM returns a self-signed certificate and its RSA key, PEM.
func certificatePEM(t *testing.T) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "billing-worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(key))})...)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
