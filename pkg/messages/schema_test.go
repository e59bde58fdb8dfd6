package messages_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/azbilling/worker/pkg/messages"
)

func compile(t *testing.T, name string) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	data, err := messages.Schemas.ReadFile("schema/" + name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatal(err)
	}
	return s, doc.(map[string]any)
}

func validate(s *jsonschema.Schema, data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// checkedSchemas are the schemas these tests hold to the Go types, with
// their $id and the Go type of their documents. The AsyncAPI document may
// reference only these (asyncapi_test.go).
var checkedSchemas = []struct {
	file string
	id   string
	typ  reflect.Type
}{
	{"request.schema.json", messages.SchemaIDRequest, reflect.TypeFor[messages.Request]()},
	{"completed.schema.json", messages.SchemaIDCompleted, reflect.TypeFor[messages.Completed]()},
	{"failed.schema.json", messages.SchemaIDFailed, reflect.TypeFor[messages.Failed]()},
	{"schedule.schema.json", messages.SchemaIDSchedule, reflect.TypeFor[messages.Schedule]()},
}

// The schemas name exactly the fields of the Go types, with the same
// required ones, all the way down.
func TestSchemasMatchGoTypes(t *testing.T) {
	t.Parallel()
	for _, c := range checkedSchemas {
		_, doc := compile(t, c.file)
		compareType(t, c.file, doc, doc, c.typ)
	}
}

func compareType(t *testing.T, path string, root, node map[string]any, typ reflect.Type) {
	node = resolve(root, node)
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
		if items, ok := node["items"].(map[string]any); ok {
			node = resolve(root, items)
		}
	}
	if typ.Kind() == reflect.Map {
		if ap, ok := node["additionalProperties"].(map[string]any); ok {
			compareType(t, path+"{}", root, ap, typ.Elem())
		}
		return
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
		return
	}
	if typ == reflect.TypeFor[messages.Params]() {
		if !hasParamsDefs(root) {
			// A schedule's template: the request schema describes them.
			if d, _ := node["description"].(string); !strings.Contains(d, "request.schema.json") {
				t.Errorf("%s: params neither defined per kind nor referred to request.schema.json", path)
			}
			return
		}
		compareParams(t, path, root)
		return
	}
	props, _ := node["properties"].(map[string]any)
	var goFields, goRequired []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		goFields = append(goFields, name)
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			goRequired = append(goRequired, name)
		}
		if p, ok := props[name].(map[string]any); ok {
			compareType(t, path+"."+name, root, p, f.Type)
		}
	}
	if got, want := sortedKeys(props), sorted(goFields); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: schema properties %v, Go fields %v", path, got, want)
	}
	var required []string
	if r, ok := node["required"].([]any); ok {
		for _, v := range r {
			required = append(required, v.(string))
		}
	}
	if got, want := sorted(required), sorted(goRequired); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: schema requires %v, Go always writes %v", path, got, want)
	}
}

func hasParamsDefs(root map[string]any) bool {
	defs, _ := root["$defs"].(map[string]any)
	for name := range defs {
		if strings.HasSuffix(name, "Params") {
			return true
		}
	}
	return false
}

// compareParams checks that the per-kind parameter definitions together
// name exactly the fields of Params.
func compareParams(t *testing.T, path string, root map[string]any) {
	defs := root["$defs"].(map[string]any)
	union := map[string]any{}
	for name, def := range defs {
		if !strings.HasSuffix(name, "Params") {
			continue
		}
		for p := range def.(map[string]any)["properties"].(map[string]any) {
			union[p] = true
		}
	}
	var goFields []string
	typ := reflect.TypeFor[messages.Params]()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		goFields = append(goFields, name)
	}
	if got, want := sortedKeys(union), sorted(goFields); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: schema parameters %v, Go fields %v", path, got, want)
	}
}

func resolve(root, node map[string]any) map[string]any {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		node = root["$defs"].(map[string]any)[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// The request schema and Validate agree on every case.
func TestRequestSchemaAgreesWithValidate(t *testing.T) {
	t.Parallel()
	s, _ := compile(t, "request.schema.json")
	cases := map[string]string{}
	for name, r := range validRequests() {
		b, _ := json.Marshal(r)
		cases["valid "+name] = string(b)
	}
	for name, doc := range invalidRequests() {
		cases[name] = doc
	}
	for name, doc := range cases {
		_, goErr := messages.DecodeRequest([]byte(doc), 0)
		schemaErr := validate(s, []byte(doc))
		if (goErr == nil) != (schemaErr == nil) {
			t.Errorf("%s: Go says %v, the schema says %v", name, goErr, schemaErr)
		}
		if strings.HasPrefix(name, "valid ") && goErr != nil {
			t.Errorf("%s: %v", name, goErr)
		}
	}
}

func TestEventsMatchSchemas(t *testing.T) {
	t.Parallel()
	completed, _ := compile(t, "completed.schema.json")
	failed, _ := compile(t, "failed.schema.json")
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	exp := now.Add(time.Hour)
	for name, ev := range map[string]any{
		"url": messages.Completed{Version: 1, ID: "a", Kind: messages.KindInvoicePriceSheet, URL: "https://x/y?sig=z",
			ExpiryTime: &exp, ValidTill: &exp, AcceptedAt: now, CompletedAt: now, AzureCalls: 3, Labels: map[string]string{"a": "b"}},
		"invoice": messages.Completed{Version: 1, ID: "b", Kind: messages.KindInvoice, AcceptedAt: now, CompletedAt: now, AzureCalls: 1,
			Invoice: &messages.Invoice{ID: "/x", Name: "G1", InvoiceDate: &now, Amounts: map[string]messages.Amount{"totalAmount": {Currency: "EUR", Value: 1.5}},
				Documents: []messages.InvoiceDocument{{Kind: "Invoice", Name: "G1", DocumentNumbers: []string{"1"}}}}},
		"cost report of several files": messages.Completed{Version: 1, ID: "c", Kind: messages.KindCostDetails, AcceptedAt: now, CompletedAt: now, AzureCalls: 3,
			Files:    []messages.ReportFile{{URL: "https://x/1.csv?sig=z", ByteCount: 10, ExpiryTime: &exp}, {URL: "https://x/2.csv?sig=z", ByteCount: 20, ExpiryTime: &exp}},
			Manifest: &messages.ReportManifest{ManifestVersion: "2025-03-01", DataFormat: "Csv", BlobCount: 2, ByteCount: 30},
			Archive:  &messages.Archive{Error: &messages.ArchiveError{Code: messages.ArchiveDownloadFailed, Message: "m"}}},
		"cost report archived whole": messages.Completed{Version: 1, ID: "c2", Kind: messages.KindCostDetails, AcceptedAt: now, CompletedAt: now, AzureCalls: 3,
			Files: []messages.ReportFile{{URL: "https://x/1.csv?sig=z", ByteCount: 10, Archive: &messages.Archive{Store: "nats", Bucket: "b", Name: "cost-details/x/1.csv", Size: 10, SHA256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", StoredAt: &now}},
				{URL: "https://x/2.csv?sig=z", ByteCount: 20, Archive: &messages.Archive{Store: "nats", Bucket: "b", Name: "cost-details/x/2.csv", Size: 20, SHA256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", StoredAt: &now}}},
			Archive: &messages.Archive{Store: "nats", Bucket: "b", Name: "cost-details/x/manifest.json", Size: 300, SHA256: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ContentType: "application/json", StoredAt: &now}},
		"no data": messages.Completed{Version: 1, ID: "d", Kind: messages.KindCostDetails, AcceptedAt: now, CompletedAt: now, AzureCalls: 2, NoData: true},
		"benefit report": messages.Completed{Version: 1, ID: "e", Kind: messages.KindBenefitUtilization, AcceptedAt: now, CompletedAt: now, AzureCalls: 2,
			URL: "https://x/b.csv?sig=z", SecondaryURL: "https://y/b.csv?sig=z", ExpiryTime: &exp, Files: []messages.ReportFile{{URL: "https://x/b.csv?sig=z", ExpiryTime: &exp}}},
	} {
		if err := validate(completed, mustMarshal(t, ev)); err != nil {
			t.Errorf("completed %s: %v", name, err)
		}
	}
	for name, ev := range map[string]any{
		"invalid": messages.Failed{Version: 1, Code: messages.CodeInvalidRequest, Message: "m", FailedAt: now,
			Fields: []messages.FieldError{{Field: "id", Rule: "pattern", Message: "x"}}},
		"azure": messages.Failed{Version: 1, ID: "c", Kind: messages.KindInvoice, Code: messages.CodeAccessDenied, Message: "m", FailedAt: now, AcceptedAt: &now,
			AzureCalls: 1, Azure: &messages.AzureError{Status: 403, Code: "AuthorizationFailed", Details: []messages.AzureErrorEntry{{Code: "x"}},
				AdditionalInfo: []messages.AdditionalInfo{{Type: "PolicyViolation", Info: map[string]any{"a": 1}}}}},
	} {
		if err := validate(failed, mustMarshal(t, ev)); err != nil {
			t.Errorf("failed %s: %v", name, err)
		}
	}
	// Every code the Go side knows is in the schema's enum.
	for _, c := range messages.Codes {
		ev := messages.Failed{Version: 1, Code: c, Message: "m", FailedAt: now}
		if err := validate(failed, mustMarshal(t, ev)); err != nil {
			t.Errorf("code %s: %v", c, err)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every schema is embedded and checked, and its $id is the constant that
// events name in ce-dataschema.
func TestSchemaIDs(t *testing.T) {
	t.Parallel()
	files, err := fs.Glob(messages.Schemas, "schema/*.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var checked []string
	for _, c := range checkedSchemas {
		checked = append(checked, "schema/"+c.file)
		_, doc := compile(t, c.file)
		if doc["$id"] != c.id {
			t.Errorf("%s: $id %v, want %s", c.file, doc["$id"], c.id)
		}
	}
	if !reflect.DeepEqual(sorted(files), sorted(checked)) {
		t.Errorf("embedded schemas %v, checked %v", files, checked)
	}
	if messages.DataSchema(messages.OutcomeCompleted) != messages.SchemaIDCompleted || messages.DataSchema(messages.OutcomeFailed) != messages.SchemaIDFailed {
		t.Error("DataSchema names the wrong schema")
	}
}

// Every property of every schema says what it is (the conditions of an
// if/then only restate properties described elsewhere).
func TestSchemaPropertiesDescribed(t *testing.T) {
	t.Parallel()
	for _, c := range checkedSchemas {
		_, doc := compile(t, c.file)
		var walk func(path string, node any)
		walk = func(path string, node any) {
			switch n := node.(type) {
			case map[string]any:
				if props, ok := n["properties"].(map[string]any); ok {
					for name, p := range props {
						if d, _ := p.(map[string]any)["description"].(string); strings.TrimSpace(d) == "" {
							t.Errorf("%s: %s/properties/%s has no description", c.file, path, name)
						}
					}
				}
				for k, v := range n {
					switch k {
					case "if", "then", "else", "examples", "const", "enum":
						continue
					}
					walk(path+"/"+k, v)
				}
			case []any:
				for i, v := range n {
					walk(path+"/"+strconv.Itoa(i), v)
				}
			}
		}
		walk("#", doc)
	}
}

// Every schema has examples; each validates against its schema and decodes
// into the Go type (a request passes DecodeRequest).
func TestSchemaExamplesValidate(t *testing.T) {
	t.Parallel()
	for _, c := range checkedSchemas {
		s, doc := compile(t, c.file)
		examples, _ := doc["examples"].([]any)
		if len(examples) == 0 {
			t.Errorf("%s: no examples", c.file)
		}
		for i, ex := range examples {
			data := mustMarshal(t, ex)
			if err := validate(s, data); err != nil {
				t.Errorf("%s: example %d: %v", c.file, i, err)
			}
			if c.typ == reflect.TypeFor[messages.Request]() {
				if _, err := messages.DecodeRequest(data, 0); err != nil {
					t.Errorf("%s: example %d: %v", c.file, i, err)
				}
				continue
			}
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.DisallowUnknownFields()
			if err := dec.Decode(reflect.New(c.typ).Interface()); err != nil {
				t.Errorf("%s: example %d: %v", c.file, i, err)
			}
		}
	}
}
