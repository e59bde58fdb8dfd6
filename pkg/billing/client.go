package billing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// Defaults of Options.
const (
	DefaultEndpoint = "https://management.azure.com"
	DefaultAudience = "https://management.azure.com"
	DefaultTimeout  = 30 * time.Second
	moduleName      = "billing-worker"
	moduleVersion   = "v1"
	tracerName      = "github.com/azbilling/worker/pkg/billing"
)

// Options configure a Client.
type Options struct {
	// Endpoint is the ARM endpoint (default DefaultEndpoint). Every URL the
	// client calls, polling URLs included, must be on its host.
	Endpoint string
	// Audience is the token audience; the scope asked for is
	// Audience+"/.default" (default DefaultAudience).
	Audience string
	// AllowHTTP permits a plain-http Endpoint, for a local emulator only:
	// the bearer token then travels in clear text.
	AllowHTTP bool
	// Timeout bounds each HTTP call, token acquisition included (default
	// DefaultTimeout).
	Timeout time.Duration
	// Transport sends the requests (default: azcore's HTTP client).
	Transport policy.Transporter
	// TracerProvider receives a client span per HTTP call (default none).
	TracerProvider trace.TracerProvider
	// MeterProvider receives http.client.request.duration for every HTTP
	// call sent (default none).
	MeterProvider metric.MeterProvider
}

// Client calls the five operations on one ARM endpoint with one credential.
// It is safe for concurrent use; the bearer-token policy caches the token
// until shortly before it expires.
type Client struct {
	pl       runtime.Pipeline
	endpoint *url.URL
	timeout  time.Duration
}

// NewClient returns a client that authenticates with cred.
func NewClient(cred azcore.TokenCredential, opts Options) (*Client, error) {
	if cred == nil {
		return nil, errors.New("billing: a credential is required")
	}
	if opts.Endpoint == "" {
		opts.Endpoint = DefaultEndpoint
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	ep, err := url.Parse(strings.TrimRight(opts.Endpoint, "/"))
	if err != nil || ep.Host == "" || ep.User != nil {
		return nil, fmt.Errorf("billing: endpoint %q is not an absolute URL without user info", opts.Endpoint)
	}
	switch {
	case ep.Scheme == "https":
	case ep.Scheme == "http" && opts.AllowHTTP:
	default:
		return nil, fmt.Errorf("billing: endpoint %s must use https (plain http only for a local emulator, when allowed)", ep.Redacted())
	}
	// As azcore's arm package does: the classic audience
	// "https://management.core.windows.net/" becomes ".../" + "/.default".
	scope := opts.Audience + "/.default"
	bearer := runtime.NewBearerTokenPolicy(newTagged(cred), []string{scope}, &policy.BearerTokenOptions{
		InsecureAllowCredentialWithHTTP: opts.AllowHTTP,
	})
	var perCall []policy.Policy
	if opts.TracerProvider != nil {
		perCall = append(perCall, tracePolicy{tracer: opts.TracerProvider.Tracer(tracerName)})
	}
	perRetry := []policy.Policy{bearer}
	if opts.MeterProvider != nil {
		d, err := telemetry.NewClientDuration(opts.MeterProvider, tracerName)
		if err != nil {
			return nil, fmt.Errorf("billing: metrics: %w", err)
		}
		perRetry = append(perRetry, metricPolicy{d})
	}
	perRetry = append(perRetry, sentPolicy{})
	clientOpts := &policy.ClientOptions{
		Transport: opts.Transport,
		// Waiting belongs to the queue: one try per call, never a sleep.
		Retry:            policy.RetryOptions{MaxRetries: -1},
		PerCallPolicies:  perCall,
		PerRetryPolicies: perRetry,
		Logging: policy.LogOptions{
			// Not Location: a refused one could carry user info or a signature.
			AllowedHeaders:     []string{"Retry-After", "x-ms-ratelimit-microsoft.consumption-retry-after", "retry-after-ms", "x-ms-retry-after-ms"},
			AllowedQueryParams: []string{"api-version", "OperationType"},
		},
	}
	pl := runtime.NewPipeline(moduleName, moduleVersion, runtime.PipelineOptions{
		Tracing: runtime.TracingOptions{Namespace: "Microsoft.Billing"},
	}, clientOpts)
	return &Client{pl: pl, endpoint: ep, timeout: opts.Timeout}, nil
}

// Response is one answer from Azure that is not an error.
type Response struct {
	// Status is 200 or 202.
	Status int
	// Header holds the response headers (Retry-After and friends).
	Header http.Header
	// Location is the checked polling URL of a 202; empty when a poll's 202
	// names none (keep polling the previous one).
	Location string
	// Result is the outcome of a 200.
	Result *Result
}

// Done reports whether the operation finished.
func (r *Response) Done() bool { return r.Status == http.StatusOK }

// Start makes the operation's first call: the POST of a download, or the GET
// of an invoice. Errors are a *ResponseError for an answer other than 200 or
// 202, a *MalformedError or *LocationError for an unusable one, an *AuthError
// when no token could be had (nothing was sent), or a transport error.
func (c *Client) Start(ctx context.Context, kind messages.Kind, p messages.Params) (*Response, error) {
	op := OperationFor(kind)
	if op == nil {
		return nil, fmt.Errorf("billing: unknown kind %q", kind)
	}
	// The path segments are escaped by the descriptor; parse, don't join.
	u, err := url.Parse(c.endpoint.String() + op.Path(p) + "?" + op.Query(p).Encode())
	if err != nil {
		return nil, fmt.Errorf("billing: build URL: %w", err)
	}
	return c.do(withKind(ctx, kind), op, op.Method, u, op.Body(p), true)
}

// Poll GETs a Location handed back by an earlier 202 of operation kind, or
// the nextLink of a listing's page. The URL is checked again
// (CheckLocation) before anything is sent.
func (c *Client) Poll(ctx context.Context, kind messages.Kind, location string) (*Response, error) {
	op := OperationFor(kind)
	if op == nil {
		return nil, fmt.Errorf("billing: unknown kind %q", kind)
	}
	u, err := CheckLocation(c.endpoint, location)
	if err != nil {
		return nil, err
	}
	return c.do(withKind(ctx, kind), op, http.MethodGet, u, nil, false)
}

func (c *Client) do(ctx context.Context, op *Operation, method string, u *url.URL, body any, start bool) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ctx, at := withAttempt(ctx)
	req, err := runtime.NewRequest(ctx, method, u.String())
	if err != nil {
		return nil, fmt.Errorf("billing: build request: %w", err)
	}
	req.Raw().Header.Set("Accept", "application/json")
	if body != nil {
		if err := runtime.MarshalAsJSON(req, body); err != nil {
			return nil, fmt.Errorf("billing: encode body: %w", err)
		}
	} else if method == http.MethodPost {
		req.Raw().Header.Set("Content-Length", "0")
	}
	resp, err := c.pl.Do(req) //nolint:bodyclose // runtime.Payload below reads and closes it
	if err != nil {
		return nil, at.result(err)
	}
	payload, err := runtime.Payload(resp)
	if err != nil {
		return nil, fmt.Errorf("billing: read %d answer: %w", resp.StatusCode, err)
	}
	switch {
	case resp.StatusCode == http.StatusNoContent && op.NoContent:
		// Nothing found for the report: done, without files.
		return &Response{Status: http.StatusOK, Header: resp.Header, Result: &Result{NoData: true}}, nil
	case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusAccepted && !op.LongRunning:
		res, err := ParseResult(op.Result, payload)
		if err != nil {
			return nil, err
		}
		switch {
		case res.Failed != nil:
			ae := *res.Failed
			ae.RequestID, ae.CorrelationID = resp.Header.Get("x-ms-request-id"), resp.Header.Get("x-ms-correlation-request-id")
			return nil, &ResponseError{Azure: ae, Header: resp.Header}
		case res.Pending && start:
			return nil, &MalformedError{Status: http.StatusOK, Reason: "a report still running, answered without a Location to poll"}
		case res.Pending:
			// Still running: poll the same Location again.
			return &Response{Status: http.StatusAccepted, Header: resp.Header}, nil
		}
		if res.NextLink != "" {
			// The next page is fetched with the bearer token, as a Location is.
			next, err := CheckLocation(c.endpoint, res.NextLink)
			if err != nil {
				return nil, err
			}
			res.NextLink = next.String()
		}
		return &Response{Status: http.StatusOK, Header: resp.Header, Result: &res}, nil
	case resp.StatusCode == http.StatusAccepted:
		out := &Response{Status: http.StatusAccepted, Header: resp.Header}
		loc := resp.Header.Get("Location")
		if loc == "" {
			if start {
				return nil, &MalformedError{Status: http.StatusAccepted, Reason: "202 without a Location header"}
			}
			return out, nil
		}
		checked, err := CheckLocation(c.endpoint, loc)
		if err != nil {
			return nil, err
		}
		out.Location = checked.String()
		return out, nil
	default:
		return nil, &ResponseError{Azure: ParseError(resp.StatusCode, resp.Header, bytes.TrimSpace(payload)), Header: resp.Header}
	}
}
