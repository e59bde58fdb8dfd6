package messages_test

import (
	"errors"
	"fmt"

	"github.com/azbilling/worker/pkg/messages"
)

// Decode a request as the worker does: the JSON is read strictly (no
// unknown fields, at most MaxRequestBytes) and every rule is checked.
func ExampleDecodeRequest() {
	data := []byte(`{"version":1,"id":"inv-2026-03","kind":"invoice-summary",
		"params":{"billingAccountName":"12345678","invoiceName":"G000000001"},
		"labels":{"team":"finance"}}`)
	req, err := messages.DecodeRequest(data, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(req.ID, req.Kind, req.Params.InvoiceName, req.Labels["team"])
	fmt.Println("subject:", messages.NewLayout("").Request(req.Kind))
	// Output:
	// inv-2026-03 invoice-summary G000000001 finance
	// subject: billing.requests.invoice-summary
}

// A request that breaks rules is refused with the problems found, each
// naming the field (as a JSON path) and the rule broken; a document that
// does not decode (here, an unknown field) is refused for that alone. What
// could be read of the request (its id and kind) is returned too, so the
// refusal can still name them.
func ExampleDecodeRequest_invalid() {
	data := []byte(`{"version":1,"id":"inv-2026-04","kind":"invoice-summary",
		"params":{"billingAccountName":"12345678","invoiceName":"not an invoice name","colour":"blue"}}`)
	req, err := messages.DecodeRequest(data, 0)
	var verr *messages.ValidationError
	if errors.As(err, &verr) {
		fmt.Println("id:", req.ID, "invalid:", errors.Is(err, messages.ErrInvalid))
		for _, f := range verr.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Rule)
		}
	}

	// Without the unknown field, the document decodes and its rules are
	// checked.
	data = []byte(`{"version":1,"id":"inv-2026-04","kind":"invoice-summary",
		"params":{"billingAccountName":"12345678","invoiceName":"not an invoice name"}}`)
	_, err = messages.DecodeRequest(data, 0)
	if errors.As(err, &verr) {
		for _, f := range verr.Fields {
			fmt.Printf("%s: %s\n", f.Field, f.Rule)
		}
	}
	// Output:
	// id: inv-2026-04 invalid: true
	// params.colour: unknown_field
	// params.invoiceName: pattern
}

// Validate checks a request built in Go before it is sent.
func ExampleRequest_Validate() {
	req := messages.Request{Version: messages.Version, ID: "bad id", Kind: messages.KindInvoice,
		Params: messages.Params{BillingAccountName: "12345678"}}
	var verr *messages.ValidationError
	if err := req.Validate(); errors.As(err, &verr) {
		for _, f := range verr.Fields {
			fmt.Printf("%s (%s): %s\n", f.Field, f.Rule, f.Message)
		}
	}
	// Output:
	// id (pattern): "bad id" must match ^[A-Za-z0-9_-]{1,128}$ (1 to 128 letters, digits, '-' or '_')
	// params.invoiceName (required): is required for kind invoice
}
