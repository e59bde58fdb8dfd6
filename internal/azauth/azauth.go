// Package azauth builds the worker's Azure credentials and endpoints: the
// cloud (Azure public, China, US Government or a custom one), and one
// credential per named profile, so that one worker can download for billing
// accounts in several tenants.
package azauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	// arm/runtime fills in the ResourceManager endpoint and audience of
	// cloud.AzurePublic, AzureChina and AzureGovernment in its init; without
	// it Clouds would have none. (azidentity imports it too; this does not
	// depend on that.)
	_ "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Cloud is where the worker talks to: the ARM endpoint, the audience of its
// tokens and the Entra ID authority that issues them.
type Cloud struct {
	Name          string
	ARMEndpoint   string
	Audience      string
	AuthorityHost string
}

// Clouds known by name; their values come from azcore's cloud package.
var Clouds = map[string]Cloud{
	"public": fromAzcore("public", cloud.AzurePublic),
	"china":  fromAzcore("china", cloud.AzureChina),
	"usgov":  fromAzcore("usgov", cloud.AzureGovernment),
}

func fromAzcore(name string, c cloud.Configuration) Cloud {
	rm := c.Services[cloud.ResourceManager]
	return Cloud{Name: name, ARMEndpoint: rm.Endpoint, Audience: rm.Audience, AuthorityHost: c.ActiveDirectoryAuthorityHost}
}

// ResolveCloud returns the named cloud with any non-empty override applied.
// The name "custom" starts from nothing and needs all three overrides.
func ResolveCloud(name, armEndpoint, audience, authorityHost string) (Cloud, error) {
	c, ok := Clouds[name]
	if name == "custom" {
		c, ok = Cloud{Name: "custom"}, true
	}
	if !ok {
		return Cloud{}, fmt.Errorf("azure-cloud %q is not one of public, china, usgov, custom", name)
	}
	if armEndpoint != "" {
		c.ARMEndpoint = armEndpoint
	}
	if audience != "" {
		c.Audience = audience
	}
	if authorityHost != "" {
		c.AuthorityHost = authorityHost
	}
	if c.ARMEndpoint == "" || c.Audience == "" || c.AuthorityHost == "" {
		return Cloud{}, errors.New("a custom cloud needs arm-endpoint, arm-audience and authority-host")
	}
	return c, nil
}

// Configuration returns the azcore cloud configuration of c.
func (c Cloud) Configuration() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: c.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Audience: c.Audience, Endpoint: c.ARMEndpoint},
		},
	}
}

// Credential types a profile can select.
const (
	CredentialDefault     = "default"            // DefaultAzureCredential: environment, workload identity, managed identity, Azure CLI...
	CredentialWorkload    = "workload-identity"  // AKS workload identity: a federated service account token
	CredentialManaged     = "managed-identity"   // the VM's or pod's managed identity
	CredentialSecret      = "client-secret"      // a service principal with a secret
	CredentialCertificate = "client-certificate" // a service principal with a certificate
	CredentialCLI         = "azure-cli"          // the developer's az login
)

// CredentialTypes lists the credential types.
var CredentialTypes = []string{CredentialDefault, CredentialWorkload, CredentialManaged, CredentialSecret, CredentialCertificate, CredentialCLI}

// Profile is one named way to authenticate. Secrets are never inline: they
// are read from a file or an environment variable the profile names.
type Profile struct {
	// Credential is one of CredentialTypes (default "default").
	Credential string `json:"credential,omitempty"`
	// TenantID and ClientID of the identity (for managed identity ClientID
	// selects a user-assigned identity; empty means the system one).
	TenantID string `json:"tenantId,omitempty"`
	ClientID string `json:"clientId,omitempty"`
	// ClientSecretFile or ClientSecretEnv holds the client secret.
	ClientSecretFile string `json:"clientSecretFile,omitempty"`
	ClientSecretEnv  string `json:"clientSecretEnv,omitempty"`
	// CertificateFile is a PEM or PKCS#12 file with the certificate and
	// its private key; CertificatePasswordEnv names the variable holding
	// its password, if any.
	CertificateFile        string `json:"certificateFile,omitempty"`
	CertificatePasswordEnv string `json:"certificatePasswordEnv,omitempty"`
	// FederatedTokenFile is the workload identity token file (default:
	// AZURE_FEDERATED_TOKEN_FILE, as the AKS webhook sets it).
	FederatedTokenFile string `json:"federatedTokenFile,omitempty"`
}

// ProfileSet is the content of a profiles file.
type ProfileSet struct {
	// Default names the profile of requests that name none.
	Default  string             `json:"default"`
	Profiles map[string]Profile `json:"profiles"`
}

var profileName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// LoadProfiles reads a profiles file (JSON) and checks it.
func LoadProfiles(path string) (ProfileSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return ProfileSet{}, fmt.Errorf("profiles file: %w", err)
	}
	var ps ProfileSet
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ps); err != nil {
		return ProfileSet{}, fmt.Errorf("profiles file %s: %w", path, err)
	}
	return ps, ps.Validate()
}

// Validate returns every problem of the set.
func (ps ProfileSet) Validate() error {
	var errs []error
	if len(ps.Profiles) == 0 {
		errs = append(errs, errors.New("no profiles"))
	}
	if _, ok := ps.Profiles[ps.Default]; !ok {
		errs = append(errs, fmt.Errorf("default profile %q is not defined", ps.Default))
	}
	for _, name := range ps.Names() {
		if !profileName.MatchString(name) {
			errs = append(errs, fmt.Errorf("profile name %q must be a lower-case DNS label", name))
		}
		if err := ps.Profiles[name].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("profile %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Names returns the profile names, sorted.
func (ps ProfileSet) Names() []string {
	names := make([]string, 0, len(ps.Profiles))
	for n := range ps.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks that the profile names what its credential type needs,
// and nothing that type would ignore: a client id given to the default
// chain, say, would be silently replaced by AZURE_CLIENT_ID.
func (p Profile) Validate() error {
	var errs []error
	need := func(ok bool, what string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s credential needs %s", p.kind(), what))
		}
	}
	unused := func(fields ...string) {
		set := map[string]bool{
			"tenantId":               p.TenantID != "",
			"clientId":               p.ClientID != "",
			"clientSecretFile":       p.ClientSecretFile != "",
			"clientSecretEnv":        p.ClientSecretEnv != "",
			"certificateFile":        p.CertificateFile != "",
			"certificatePasswordEnv": p.CertificatePasswordEnv != "",
			"federatedTokenFile":     p.FederatedTokenFile != "",
		}
		for _, f := range fields {
			if set[f] {
				errs = append(errs, fmt.Errorf("%s credential does not use %s", p.kind(), f))
			}
		}
	}
	secretFields := []string{"clientSecretFile", "clientSecretEnv"}
	certFields := []string{"certificateFile", "certificatePasswordEnv"}
	switch p.kind() {
	case CredentialDefault:
		// The chain reads AZURE_CLIENT_ID and friends itself; only the
		// tenant can be passed to it.
		unused(append(append([]string{"clientId", "federatedTokenFile"}, secretFields...), certFields...)...)
	case CredentialWorkload:
		// tenantId, clientId and federatedTokenFile default to the
		// variables the AKS workload identity webhook sets.
		unused(append(secretFields, certFields...)...)
	case CredentialManaged:
		unused(append(append([]string{"tenantId", "federatedTokenFile"}, secretFields...), certFields...)...)
	case CredentialCLI:
		unused(append(append([]string{"clientId", "federatedTokenFile"}, secretFields...), certFields...)...)
	case CredentialSecret:
		need(p.TenantID != "" && p.ClientID != "", "tenantId and clientId")
		need((p.ClientSecretFile != "") != (p.ClientSecretEnv != ""), "one of clientSecretFile or clientSecretEnv")
		unused(append([]string{"federatedTokenFile"}, certFields...)...)
	case CredentialCertificate:
		need(p.TenantID != "" && p.ClientID != "", "tenantId and clientId")
		need(p.CertificateFile != "", "certificateFile")
		unused(append([]string{"federatedTokenFile"}, secretFields...)...)
	default:
		errs = append(errs, fmt.Errorf("credential %q is not one of %s", p.Credential, strings.Join(CredentialTypes, ", ")))
	}
	return errors.Join(errs...)
}

func (p Profile) kind() string {
	if p.Credential == "" {
		return CredentialDefault
	}
	return p.Credential
}

// IdentityRetry is the default Options.Retry: two quick retries of a token
// request, each try bounded. The worker does its own waiting: an operation
// that gets no token waits in the queue with backoff and tries again, so a
// dead or slow identity endpoint must not hold a worker goroutine (and, in
// azcore's bearer-token policy, every other goroutine that needs the same
// token) for azcore's default of three retries up to about 10 s.
var IdentityRetry = policy.RetryOptions{
	MaxRetries:    2,
	TryTimeout:    10 * time.Second,
	RetryDelay:    250 * time.Millisecond,
	MaxRetryDelay: time.Second,
}

// Options shared by every credential.
type Options struct {
	Cloud Cloud
	// Transport for the identity provider's requests (tests and the
	// emulator use one that trusts a local certificate).
	Transport policy.Transporter
	// DisableInstanceDiscovery skips Entra ID's instance metadata request:
	// for Azure Stack, private clouds and the emulator.
	DisableInstanceDiscovery bool
	// Retry is the retry policy of the identity provider's requests
	// (default IdentityRetry). Its StatusCodes are left to azidentity when
	// nil (a managed identity then retries what IMDS documents). Not used
	// by azure-cli, which runs the az command.
	Retry *policy.RetryOptions
}

// NewCredential builds the credential of a profile. An explicit credential
// type builds that credential alone, never a chain; only "default" builds
// DefaultAzureCredential.
func NewCredential(p Profile, o Options) (azcore.TokenCredential, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	retry := IdentityRetry
	if o.Retry != nil {
		retry = *o.Retry
	}
	co := azcore.ClientOptions{Cloud: o.Cloud.Configuration(), Transport: o.Transport, Retry: retry}
	switch p.kind() {
	case CredentialDefault:
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: co, TenantID: p.TenantID, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
		})
	case CredentialWorkload:
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, TenantID: p.TenantID, ClientID: p.ClientID, TokenFilePath: p.FederatedTokenFile,
			DisableInstanceDiscovery: o.DisableInstanceDiscovery,
		})
	case CredentialManaged:
		mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if p.ClientID != "" {
			mo.ID = azidentity.ClientID(p.ClientID)
		}
		return azidentity.NewManagedIdentityCredential(mo)
	case CredentialSecret:
		secret, err := readSecret(p.ClientSecretFile, p.ClientSecretEnv)
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientSecretCredential(p.TenantID, p.ClientID, secret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
		})
	case CredentialCertificate:
		data, err := os.ReadFile(p.CertificateFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		var password []byte
		if p.CertificatePasswordEnv != "" {
			password = []byte(os.Getenv(p.CertificatePasswordEnv))
		}
		certs, key, err := azidentity.ParseCertificates(data, password)
		if err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", p.CertificateFile, err)
		}
		return azidentity.NewClientCertificateCredential(p.TenantID, p.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions: co, DisableInstanceDiscovery: o.DisableInstanceDiscovery,
		})
	case CredentialCLI:
		return azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: p.TenantID})
	}
	return nil, p.Validate()
}

func readSecret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("client secret file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("client secret file %s is empty", file)
		}
		return s, nil
	}
	s := os.Getenv(env)
	if s == "" {
		return "", fmt.Errorf("client secret variable %s is empty", env)
	}
	return s, nil
}
