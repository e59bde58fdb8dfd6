package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azbilling/worker/internal/devstack"
)

// The in-process alternative: what a user writes instead of the queue. An
// azcore pipeline with a bearer-token policy on an azidentity credential,
// the POST of "Invoices - Download Summary By Billing Account", and
// runtime.NewPoller on its answer (Location polling; a 200 is done at
// once), driven by PollUntilDone, which sleeps on Retry-After.

// docResult is the DocumentDownloadResult of the 2024-04-01 API.
type docResult struct {
	URL        string `json:"url"`
	ExpiryTime string `json:"expiryTime"`
}

// azLoop calls the emulator the way a user's program calls Azure.
type azLoop struct {
	pl       runtime.Pipeline
	endpoint string
}

// newTransport returns the HTTP client both the worker and the azcore loop
// use against the emulator: it trusts roots and keeps up to conns idle
// connections (Go's default of 2 per host would make both open a TLS
// connection per call at concurrency above 2: the emulator speaks HTTP/1.1,
// where real ARM multiplexes HTTP/2). maxConns > 0 also caps open
// connections.
func newTransport(roots *x509.CertPool, conns, maxConns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	t.MaxIdleConns = max(conns, 100)
	t.MaxIdleConnsPerHost = conns
	t.MaxConnsPerHost = maxConns
	return &http.Client{Transport: t}
}

func newAzLoop(emuURL, secret string, transport policy.Transporter) (*azLoop, error) {
	cred, err := azidentity.NewClientSecretCredential(devstack.DevTenant, devstack.DevClientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: emuURL + "/"},
			Transport: transport,
		},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return nil, err
	}
	bearer := runtime.NewBearerTokenPolicy(cred, []string{devstack.DevAudience + "/.default"}, nil)
	pl := runtime.NewPipeline("bench-loop", "v1", runtime.PipelineOptions{}, &policy.ClientOptions{
		Transport:        transport,
		PerRetryPolicies: []policy.Policy{bearer},
	})
	return &azLoop{pl: pl, endpoint: emuURL}, nil
}

// begin POSTs the download and wraps the answer in a poller.
func (l *azLoop) begin(ctx context.Context, invoice string) (*runtime.Poller[docResult], error) {
	u := l.endpoint + "/providers/Microsoft.Billing/billingAccounts/" + url.PathEscape(devstack.SampleBillingAccount) +
		"/invoices/" + url.PathEscape(invoice) + "/downloadSummary?api-version=2024-04-01"
	req, err := runtime.NewRequest(ctx, http.MethodPost, u)
	if err != nil {
		return nil, err
	}
	req.Raw().Header.Set("Accept", "application/json")
	resp, err := l.pl.Do(req) //nolint:bodyclose // NewResponseError or the poller reads and closes it
	if err != nil {
		return nil, err
	}
	if !runtime.HasStatusCode(resp, http.StatusOK, http.StatusAccepted) {
		return nil, runtime.NewResponseError(resp)
	}
	return runtime.NewPoller(resp, l.pl, &runtime.NewPollerOptions[docResult]{FinalStateVia: runtime.FinalStateViaLocation})
}

// download runs one whole operation: begin, then PollUntilDone (which
// sleeps on the Retry-After of every 202, else freq).
func (l *azLoop) download(ctx context.Context, invoice string, freq time.Duration) (docResult, error) {
	p, err := l.begin(ctx, invoice)
	if err != nil {
		return docResult{}, err
	}
	return finish(ctx, p, freq)
}

func finish(ctx context.Context, p *runtime.Poller[docResult], freq time.Duration) (docResult, error) {
	res, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: freq})
	if err != nil {
		return res, err
	}
	if res.URL == "" {
		return res, errors.New("azcore loop: the result carries no url")
	}
	return res, nil
}

// certPool reads PEM certificates.
func certPool(pem []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in the CA file")
	}
	return pool, nil
}
