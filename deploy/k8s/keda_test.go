package k8s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// KEDA, as the README tells operators to install it. Its CRDs and the
// nats-jetstream scaler's parameters are read from its Go module (fetched
// through the module proxy into the module cache; never imported).
const (
	kedaModule  = "github.com/kedacore/keda/v2"
	kedaVersion = "v2.21.0"
)

var (
	kedaOnce   sync.Once
	kedaDirVal string
	kedaErr    error
)

// kedaDir downloads KEDA's module (go mod download, outside this module so
// that go.mod is untouched) and returns its directory.
func kedaDir(t *testing.T) string {
	t.Helper()
	kedaOnce.Do(func() {
		tmp, err := os.MkdirTemp("", "keda-download")
		if err != nil {
			kedaErr = err
			return
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("go", "mod", "download", "-json", kedaModule+"@"+kedaVersion)
		cmd.Dir = tmp
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var res struct{ Dir, Error string }
		if jerr := json.Unmarshal(out, &res); jerr != nil && err == nil {
			err = jerr
		}
		switch {
		case err != nil:
			kedaErr = fmt.Errorf("go mod download %s@%s: %w: %s%s", kedaModule, kedaVersion, err, out, stderr.String())
		case res.Error != "":
			kedaErr = fmt.Errorf("go mod download %s@%s: %s", kedaModule, kedaVersion, res.Error)
		default:
			kedaDirVal = res.Dir
		}
	})
	if kedaErr != nil {
		t.Fatalf("KEDA's schema is needed to check the ScaledObject (the Go module proxy must be reachable): %v", kedaErr)
	}
	return kedaDirVal
}

// crd is what the tests use of a CustomResourceDefinition.
type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

// crdValidator validates objects of one kind against its CRD's
// openAPIV3Schema, made strict, and lists the CRD's CEL rules (which a JSON
// Schema validator cannot run; the tests check the known ones by hand).
type crdValidator struct {
	schema   *jsonschema.Schema
	celRules []string
}

func loadCRD(t *testing.T, file, version string) *crdValidator {
	t.Helper()
	path := filepath.Join(kedaDir(t), "config", "crd", "bases", file)
	j, err := yaml.YAMLToJSON(readFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var c crd
	if err := json.Unmarshal(j, &c); err != nil {
		t.Fatal(err)
	}
	for _, v := range c.Spec.Versions {
		if v.Name != version {
			continue
		}
		if !v.Served {
			t.Fatalf("%s: version %s is not served", file, version)
		}
		var rules []string
		doc := toJSONSchema(v.Schema.OpenAPIV3Schema, &rules)
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4) // OpenAPI 3.0 schemas are draft-4 style
		url := "keda:" + file
		if err := c.AddResource(url, inst); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(url)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return &crdValidator{schema: s, celRules: rules}
	}
	t.Fatalf("%s: no version %s", file, version)
	return nil
}

func (v *crdValidator) validate(obj []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(obj))
	if err != nil {
		return err
	}
	return v.schema.Validate(inst)
}

// toJSONSchema turns a CRD's structural OpenAPI v3 schema into a JSON
// Schema that is as strict as the API server's pruning: an object schema
// with properties admits no others unless it preserves unknown fields.
// Kubernetes extensions become their JSON Schema meaning; CEL rules are
// collected into rules.
func toJSONSchema(s map[string]any, rules *[]string) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		switch k {
		case "properties":
			props := map[string]any{}
			for name, ps := range v.(map[string]any) {
				props[name] = toJSONSchema(ps.(map[string]any), rules)
			}
			out[k] = props
		case "items", "not":
			if m, ok := v.(map[string]any); ok {
				out[k] = toJSONSchema(m, rules)
			} else {
				out[k] = v
			}
		case "additionalProperties":
			if m, ok := v.(map[string]any); ok {
				out[k] = toJSONSchema(m, rules)
			} else {
				out[k] = v
			}
		case "anyOf", "allOf", "oneOf":
			var list []any
			for _, sub := range v.([]any) {
				list = append(list, toJSONSchema(sub.(map[string]any), rules))
			}
			out[k] = list
		case "x-kubernetes-validations":
			for _, r := range v.([]any) {
				*rules = append(*rules, fmt.Sprint(r.(map[string]any)["rule"]))
			}
		case "description", "nullable":
		default:
			if strings.HasPrefix(k, "x-kubernetes-") {
				continue
			}
			out[k] = v
		}
	}
	if s["x-kubernetes-int-or-string"] == true {
		delete(out, "type")
		if _, ok := out["anyOf"]; !ok {
			out["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
		}
	}
	if s["nullable"] == true {
		if typ, ok := out["type"].(string); ok {
			out["type"] = []any{typ, "null"}
		}
	}
	_, hasProps := out["properties"]
	_, hasAdditional := out["additionalProperties"]
	if out["type"] == "object" && hasProps && !hasAdditional && s["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out
}

// scalerParam is one parameter of a KEDA scaler, from the `keda:"..."`
// struct tag of its metadata type.
type scalerParam struct {
	name     string
	orders   []string // triggerMetadata, authParams, resolvedEnv
	optional bool
	hasDef   bool
	goType   string
}

func (p scalerParam) from(order string) bool {
	for _, o := range p.orders {
		if o == order {
			return true
		}
	}
	return false
}

// scalerParams reads the parameters of the metadata struct typeName in
// KEDA's scaler source file (pkg/scalers/<file>).
func scalerParams(t *testing.T, file, typeName string) map[string]scalerParam {
	t.Helper()
	path := filepath.Join(kedaDir(t), "pkg", "scalers", file)
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]scalerParam{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != typeName {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			t.Fatalf("%s is not a struct", typeName)
		}
		for _, fld := range st.Fields.List {
			if fld.Tag == nil {
				continue
			}
			raw, err := strconv.Unquote(fld.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			tag, ok := reflect.StructTag(raw).Lookup("keda")
			if !ok {
				continue
			}
			var p scalerParam
			if id, ok := fld.Type.(*ast.Ident); ok {
				p.goType = id.Name
			}
			for _, part := range strings.Split(tag, ",") {
				part = strings.TrimSpace(part)
				key, val, _ := strings.Cut(part, "=")
				switch key {
				case "name":
					p.name = val
				case "order":
					p.orders = strings.Split(val, ";")
				case "optional":
					p.optional = val == "" || val == "true"
				case "default":
					p.hasDef = true
				}
			}
			params[p.name] = p
		}
		return false
	})
	if len(params) == 0 {
		t.Fatalf("%s: no keda-tagged fields in %s (has KEDA's scaler changed shape?)", file, typeName)
	}
	return params
}

// checkParamValue parses a metadata value as KEDA would for the field's Go type.
func checkParamValue(p scalerParam, v string) error {
	var err error
	switch p.goType {
	case "int64", "int":
		_, err = strconv.ParseInt(v, 10, 64)
	case "bool":
		_, err = strconv.ParseBool(v)
	case "string":
		if v == "" {
			err = fmt.Errorf("empty")
		}
	}
	return err
}
