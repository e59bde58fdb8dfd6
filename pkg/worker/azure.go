package worker

import (
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/pkg/azauth"
	"github.com/azbilling/worker/pkg/billing"
)

// AzureDeps are what the Azure clients are built with besides the
// configuration: a transport (nil: azcore's default) and a tracing provider.
type AzureDeps struct {
	Transport policy.Transporter
	Tracing   trace.TracerProvider
}

// ProfileSet returns the credential profiles the configuration describes:
// the profiles file, or a single profile named "default" from the
// azure-credential settings.
func (c *Config) ProfileSet() (azauth.ProfileSet, error) {
	if c.AzureProfilesFile != "" {
		return azauth.LoadProfiles(c.AzureProfilesFile)
	}
	ps := azauth.ProfileSet{Default: "default", Profiles: map[string]azauth.Profile{"default": {
		Credential:         c.AzureCredential,
		TenantID:           c.AzureTenantID,
		ClientID:           c.AzureClientID,
		ClientSecretFile:   c.AzureClientSecretFile,
		CertificateFile:    c.AzureCertificateFile,
		FederatedTokenFile: c.AzureFederatedTokenFile,
	}}}
	return ps, ps.Validate()
}

// AzureProfiles builds one billing client per credential profile.
func (c *Config) AzureProfiles(deps AzureDeps) (Profiles, error) {
	cl, err := azauth.ResolveCloud(c.AzureCloud, c.ARMEndpoint, c.ARMAudience, c.AuthorityHost)
	if err != nil {
		return Profiles{}, err
	}
	ps, err := c.ProfileSet()
	if err != nil {
		return Profiles{}, err
	}
	out := Profiles{Default: ps.Default, Clients: map[string]Azure{}}
	for _, name := range ps.Names() {
		cred, err := azauth.NewCredential(ps.Profiles[name], azauth.Options{
			Cloud: cl, Transport: deps.Transport, DisableInstanceDiscovery: c.DisableInstanceDiscovery,
		})
		if err != nil {
			return Profiles{}, fmt.Errorf("profile %s: %w", name, err)
		}
		client, err := billing.NewClient(cred, billing.Options{
			Endpoint: cl.ARMEndpoint, Audience: cl.Audience, AllowHTTP: c.AllowHTTP,
			Timeout: c.HTTPTimeout, Transport: deps.Transport, TracerProvider: deps.Tracing,
		})
		if err != nil {
			return Profiles{}, fmt.Errorf("profile %s: %w", name, err)
		}
		out.Clients[name] = client
	}
	return out, nil
}
