package messages_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/schedule"
	"github.com/azbilling/worker/pkg/messages"
)

// compileSchedule decodes a schedule as the tools read one (no unknown
// fields) and compiles it.
func compileSchedule(doc string) error {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	var s messages.Schedule
	if err := dec.Decode(&s); err != nil {
		return err
	}
	_, err := schedule.Compile(s)
	return err
}

// The schedule schema accepts what schedule.Compile accepts, and refuses
// what breaks the schedule's own rules (the request's rules per kind are
// the request schema's).
func TestScheduleSchemaAgreesWithCompile(t *testing.T) {
	t.Parallel()
	s, doc := compile(t, "schedule.schema.json")
	cases := map[string]string{}
	for i, ex := range doc["examples"].([]any) {
		cases["valid example "+string(rune('0'+i))] = string(mustMarshal(t, ex))
	}
	for name, doc := range map[string]string{
		"five fields in a zone":    `{"version":1,"id":"a","cron":"0 6 10 * *","timeZone":"Australia/Sydney","period":"previous-month","request":{"kind":"collection","params":{"billingAccountName":"1"}}}`,
		"previous-n-days:366":      `{"version":1,"id":"a_b-1","cron":"0 0 7 * * mon","period":"previous-n-days:366","request":{"kind":"subscription-invoices","params":{"subscriptionId":"00000000-0000-0000-0000-000000000001"}}}`,
		"a macro, labels, profile": `{"version":1,"id":"a","cron":"@daily","period":"previous-day","request":{"kind":"account-invoices","params":{"billingAccountName":"1"},"labels":{"team":"x"},"profile":"finance","archive":false}}`,
		"@every, empty zone":       `{"version":1,"id":"a","cron":"@every 90s","timeZone":"","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"no period, empty period":  `{"version":1,"id":"a","cron":"*/5 * * * * *","period":"","request":{"kind":"invoice-summary","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
	} {
		cases["valid "+name] = doc
	}
	invalid := map[string]string{
		"version 2":                `{"version":2,"id":"a","cron":"@daily","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"id with a space":          `{"version":1,"id":"a b","cron":"@daily","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"id of 65":                 `{"version":1,"id":"` + strings.Repeat("a", 65) + `","cron":"@daily","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"no cron":                  `{"version":1,"id":"a","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"three fields":             `{"version":1,"id":"a","cron":"0 6 10","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"unknown macro":            `{"version":1,"id":"a","cron":"@fortnightly","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"unknown period":           `{"version":1,"id":"a","cron":"@daily","period":"last-month","request":{"kind":"collection","params":{"billingAccountName":"1"}}}`,
		"previous-n-days:0":        `{"version":1,"id":"a","cron":"@daily","period":"previous-n-days:0","request":{"kind":"collection","params":{"billingAccountName":"1"}}}`,
		"previous-n-days:367":      `{"version":1,"id":"a","cron":"@daily","period":"previous-n-days:367","request":{"kind":"collection","params":{"billingAccountName":"1"}}}`,
		"unknown kind":             `{"version":1,"id":"a","cron":"@daily","request":{"kind":"invoices","params":{"billingAccountName":"1"}}}`,
		"a period, a kind without": `{"version":1,"id":"a","cron":"@daily","period":"previous-day","request":{"kind":"invoice-summary","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"a period and its dates":   `{"version":1,"id":"a","cron":"@daily","period":"previous-day","request":{"kind":"collection","params":{"billingAccountName":"1","periodStartDate":"2026-01-01"}}}`,
		"@every in a zone":         `{"version":1,"id":"a","cron":"@every 1h","timeZone":"Europe/Amsterdam","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"an unknown field":         `{"version":1,"id":"a","cron":"@daily","every":"1h","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"an id in the template":    `{"version":1,"id":"a","cron":"@daily","request":{"id":"x","kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"}}}`,
		"no request":               `{"version":1,"id":"a","cron":"@daily"}`,
		"a label key with a space": `{"version":1,"id":"a","cron":"@daily","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"},"labels":{"a b":"c"}}}`,
		"a profile in upper case":  `{"version":1,"id":"a","cron":"@daily","request":{"kind":"invoice","params":{"billingAccountName":"1","invoiceName":"G012345678"},"profile":"Finance"}}`,
	}
	for name, doc := range invalid {
		cases[name] = doc
	}
	for name, doc := range cases {
		goErr := compileSchedule(doc)
		schemaErr := validate(s, []byte(doc))
		if (goErr == nil) != (schemaErr == nil) {
			t.Errorf("%s: Compile says %v, the schema says %v", name, goErr, schemaErr)
		}
		if _, bad := invalid[name]; !bad && goErr != nil {
			t.Errorf("%s: %v", name, goErr)
		}
	}
	// What only the request's rules refuse passes the schema: it says so.
	wrongParams := `{"version":1,"id":"a","cron":"@daily","request":{"kind":"invoice","params":{}}}`
	if compileSchedule(wrongParams) == nil || validate(s, []byte(wrongParams)) != nil {
		t.Error("a template missing its kind's parameters: refused by Compile, left to the request schema")
	}
	if !bytes.Contains(mustRead(t, "schedule.schema.json"), []byte("request.schema.json")) {
		t.Error("the schedule schema does not point at the request schema for params")
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := messages.Schemas.ReadFile("schema/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
