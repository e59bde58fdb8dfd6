package billing

import (
	"context"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"go.opentelemetry.io/otel/attribute"

	"github.com/azbilling/worker/internal/telemetry"
	"github.com/azbilling/worker/pkg/messages"
)

// metricPolicy records http.client.request.duration for every HTTP request
// sent to Azure, with billing.kind. It runs after the bearer-token policy,
// next to the transport: what it measures is the request on the wire,
// neither token acquisition nor a call that got no token (nothing was
// sent).
type metricPolicy struct{ d *telemetry.ClientDuration }

func (p metricPolicy) Do(req *policy.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := req.Next()
	raw := req.Raw()
	k, _ := raw.Context().Value(kindKey{}).(messages.Kind)
	kind := "unknown"
	if k.Valid() {
		kind = string(k)
	}
	p.d.Record(raw.Context(), start, raw, resp, err, attribute.String("billing.kind", kind))
	return resp, err
}

type kindKey struct{}

func withKind(ctx context.Context, k messages.Kind) context.Context {
	return context.WithValue(ctx, kindKey{}, k)
}
