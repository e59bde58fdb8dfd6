package k8s

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/engine"

	"github.com/azbilling/worker/internal/config"
)

// chartDir is the Helm chart, relative to this package's directory.
const chartDir = "../helm/billing-worker"

// chartRelease is the release name of every chart rendering the shared
// tests check: with it the chart names its objects as the kustomize base
// does (billing-worker, billing-console, ...).
const chartRelease = "billing-worker"

// chartOption is one way of installing the chart: a release name and the
// values given on top of values.yaml (as --set or -f would).
type chartOption struct {
	release, namespace string
	values             map[string]any
}

// chartOptions are the chart renderings the tests check. Those named here
// go through the same checks as the kustomize overlays (render accepts
// their names like a kustomization's directory); "helm" is the default
// install, the others turn one option on each, and "helm:all" all of them.
var chartOptions = map[string]chartOption{
	"helm":            {values: nil},
	"helm:console":    {values: map[string]any{"console": map[string]any{"enabled": true}}},
	"helm:monitoring": {values: map[string]any{"monitoring": map[string]any{"enabled": true}}},
	"helm:nats-tls":   {values: map[string]any{"nats": map[string]any{"tls": map[string]any{"enabled": true}}}},
	"helm:no-keda":    {values: map[string]any{"keda": map[string]any{"enabled": false}, "replicaCount": 1}},
	"helm:all": {values: map[string]any{
		"console":    map[string]any{"enabled": true, "env": map[string]any{"BILLING_CONSOLE_WRITE": false}},
		"monitoring": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"nats": map[string]any{
			"tls":     map[string]any{"enabled": true},
			"release": "msg", "namespace": "messaging",
		},
		"config": map[string]any{"replicas": 3, "healthAddr": ":9090", "prefix": "acme-billing", "logLevel": "debug"},
		"azure":  map[string]any{"workloadIdentity": map[string]any{"clientId": "6f1c2a9e-1d2b-4c3d-9e8f-0a1b2c3d4e5f"}},
		"image":  map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)},
		"extraEnv": []any{
			map[string]any{"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0.25"},
		},
		"podAnnotations": map[string]any{"example.com/team": "billing"},
		"nodeSelector":   map[string]any{"kubernetes.io/os": "linux"},
	}},
}

// charts are chartOptions' names, sorted.
var charts = slices.Sorted(maps.Keys(chartOptions))

func isChart(dir string) bool {
	_, ok := chartOptions[dir]
	return ok
}

// withCharts returns dirs followed by the chart renderings.
func withCharts(dirs []string, names ...string) []string {
	if len(names) == 0 {
		names = charts
	}
	return slices.Concat(dirs, names)
}

// helmTemplate renders the chart as `helm template` does, with the Helm Go
// SDK: values.yaml coalesced with the option's values, checked against
// values.schema.json, every template rendered in strict mode (a reference
// to a value that does not exist fails). It returns the objects' YAML
// stream and NOTES.txt.
func helmTemplate(o chartOption) (stream []byte, notes string, err error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", err
	}
	release, ns := o.release, o.namespace
	if release == "" {
		release = chartRelease
	}
	if ns == "" {
		ns = "billing"
	}
	vals, err := chartutil.ToRenderValues(ch, copyValues(o.values), common.ReleaseOptions{
		Name: release, Namespace: ns, Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Engine{Strict: true}.RenderWithContext(context.Background(), ch, vals)
	if err != nil {
		return nil, "", err
	}
	var buf strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		switch base := filepath.Base(name); {
		case base == "NOTES.txt":
			notes = files[name]
			continue
		case strings.HasPrefix(base, "_"):
			continue
		}
		if strings.TrimSpace(files[name]) == "" {
			continue
		}
		fmt.Fprintf(&buf, "---\n# Source: %s\n%s\n", name, files[name])
	}
	return []byte(buf.String()), notes, nil
}

// copyValues deep-copies values (Helm's coalescing writes into the map it
// is given; the options are shared between tests).
func copyValues(v map[string]any) map[string]any {
	if v == nil {
		return map[string]any{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// renderChart renders one of chartOptions, decoded like a kustomization.
func renderChart(name string) (*rendering, error) {
	out, notes, err := helmTemplate(chartOptions[name])
	if err != nil {
		return nil, err
	}
	objs, err := decodeAll(out)
	if err != nil {
		return nil, err
	}
	return &rendering{dir: name, yaml: out, objs: objs, notes: notes}, nil
}

// chartValues is values.yaml, parsed as Helm parses it.
func chartValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := common.ReadValues(readFile(t, chartDir+"/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The settings the chart sets from other values than config.<name>, and
// the values that set them.
var derivedSettings = map[string]string{
	"nats-url":         "nats.release, nats.namespace, nats.port, nats.url, nats.tls.enabled",
	"nats-creds":       "nats.credentials",
	"nats-ca":          "nats.tls",
	"azure-credential": "azure.credential",
}

// settingKey is a setting's key under config: its flag in camelCase.
func settingKey(flagName string) string {
	parts := strings.Split(flagName, "-")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

// settingKind is the type of a setting's value, told by its default.
func settingKind(s config.Setting) string {
	if _, err := strconv.Atoi(s.Default); err == nil {
		return "integer"
	}
	if s.Default == "true" || s.Default == "false" {
		return "boolean"
	}
	if _, err := time.ParseDuration(s.Default); err == nil {
		return "duration"
	}
	if n, per, ok := strings.Cut(s.Default, "/"); ok {
		if _, err := strconv.ParseFloat(n, 64); err == nil {
			if _, err := time.ParseDuration(per); err == nil {
				return "rate"
			}
		}
	}
	return "string"
}

// valueText is a value of values.yaml as the chart writes it into the
// ConfigMap (YAML numbers are float64 to Helm).
func valueText(v any) string {
	switch x := v.(type) {
	case float64:
		return strconv.FormatInt(int64(x), 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// TestChartValuesAreTheWorkerSettings holds values.yaml's config section
// to the worker's settings (internal/config, which docs/configuration.md's
// table is held to): one key per setting, named after its flag, with the
// worker's default, and a schema entry of the setting's type; the few the
// chart derives from other values are named in derivedSettings.
func TestChartValuesAreTheWorkerSettings(t *testing.T) {
	t.Parallel()
	cfg, ok := chartValues(t)["config"].(map[string]any)
	if !ok {
		t.Fatal("values.yaml has no config section")
	}
	schema := chartSchema(t)
	props := schema.Properties.Config.Properties
	seen := map[string]bool{}
	for _, s := range config.Settings {
		key := settingKey(s.Flag)
		v, inValues := cfg[key]
		if how, derived := derivedSettings[s.Flag]; derived {
			if inValues {
				t.Errorf("values.yaml: config.%s is set by %s; remove the key", key, how)
			}
			continue
		}
		seen[key] = true
		if !inValues {
			t.Errorf("values.yaml: no config.%s for the worker's setting -%s (%s, default %q)", key, s.Flag, s.Env, s.Default)
			continue
		}
		if got := valueText(v); got != s.Default {
			t.Errorf("values.yaml: config.%s = %q, the worker's default is %q (docs/configuration.md)", key, got, s.Default)
		}
		p, ok := props[key]
		if !ok {
			t.Errorf("values.schema.json: no config.%s", key)
			continue
		}
		want := map[string]string{"integer": "integer", "boolean": "boolean", "duration": "#/definitions/duration", "rate": "#/definitions/rate", "string": "string"}[settingKind(s)]
		if got := p.Type + p.Ref; got != want {
			t.Errorf("values.schema.json: config.%s is %q, want %q", key, got, want)
		}
	}
	for key := range cfg {
		if !seen[key] {
			t.Errorf("values.yaml: config.%s is no setting of the worker", key)
		}
	}
	for key := range props {
		if !seen[key] {
			t.Errorf("values.schema.json: config.%s is no setting of the worker", key)
		}
	}
}

// TestChartReachesEverySetting: with every config value changed from its
// default, the worker, reading the rendered ConfigMap as cmd/worker does,
// runs with each of the changed values: each key reaches its BILLING_*
// variable.
func TestChartReachesEverySetting(t *testing.T) {
	t.Parallel()
	enums := map[string]string{"azure-cloud": "china", "archive-store": "azblob", "log-level": "debug", "health-addr": ":9091"}
	set, want := map[string]any{}, map[string]string{}
	for _, s := range config.Settings {
		if _, derived := derivedSettings[s.Flag]; derived {
			continue
		}
		var text string
		var v any
		switch settingKind(s) {
		case "integer":
			n, _ := strconv.Atoi(s.Default)
			v, text = n+1, strconv.Itoa(n+1)
		case "boolean":
			b := s.Default != "true"
			v, text = b, strconv.FormatBool(b)
		case "duration":
			d, _ := time.ParseDuration(s.Default)
			text = (d + time.Second).String()
			v = text
		case "rate":
			n, per, _ := strings.Cut(s.Default, "/")
			calls, _ := strconv.Atoi(n)
			text = strconv.Itoa(calls+1) + "/" + per
			v = text
		default:
			text = "probe-" + s.Flag
			if e, ok := enums[s.Flag]; ok {
				text = e
			}
			v = text
		}
		set[settingKey(s.Flag)], want[s.Flag] = v, text
	}
	out, _, err := helmTemplate(chartOption{values: map[string]any{"config": set}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendering{dir: "helm (every setting changed)", yaml: out, objs: objs}
	env := workerEnv(t, r)
	var cfg config.Config
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	if err := cfg.Bind(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("the worker rejects the rendered settings: %v", err)
	}
	for name, text := range want {
		if got := fs.Lookup(name).Value.String(); got != text {
			t.Errorf("config.%s = %s: the worker runs with -%s=%s", settingKey(name), text, name, got)
		}
	}
}

// schemaDoc is what the tests read of values.schema.json.
type schemaDoc struct {
	Properties struct {
		Config struct {
			Properties map[string]struct {
				Type string `json:"type"`
				Ref  string `json:"$ref"`
			} `json:"properties"`
		} `json:"config"`
	} `json:"properties"`
}

func chartSchema(t *testing.T) schemaDoc {
	t.Helper()
	var s schemaDoc
	if err := json.Unmarshal(readFile(t, chartDir+"/values.schema.json"), &s); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	return s
}

// TestChartSchemaRejectsBadValues: values.schema.json refuses, before
// anything renders, each of these mistakes, naming the value; and accepts
// good values written other ways than the defaults.
func TestChartSchemaRejectsBadValues(t *testing.T) {
	t.Parallel()
	cfg := func(k string, v any) map[string]any { return map[string]any{"config": map[string]any{k: v}} }
	bad := []struct {
		name   string
		values map[string]any
		path   string // what the error names
	}{
		{"duration that is no duration", cfg("ackWait", "soon"), "/config/ackWait"},
		{"duration without a unit", cfg("drainTimeout", "45"), "/config/drainTimeout"},
		{"zero where the worker wants a count", cfg("replicas", 0), "/config/replicas"},
		{"a count as text", cfg("concurrency", "many"), "/config/concurrency"},
		{"a size with a unit", cfg("deadletterMaxBytes", "1GiB"), "/config/deadletterMaxBytes"},
		{"a request bound over the server's", cfg("maxRequestBytes", 2<<20), "/config/maxRequestBytes"},
		{"a rate in words", cfg("throttleBillingWrites", "10 per second"), "/config/throttleBillingWrites"},
		{"an unknown log level", cfg("logLevel", "verbose"), "/config/logLevel"},
		{"an unknown archive store", cfg("archiveStore", "s3"), "/config/archiveStore"},
		{"a misspelt setting", cfg("ackwait", "1m"), "ackwait"},
		{"a setting the chart derives", cfg("natsUrl", "nats://elsewhere:4222"), "natsUrl"},
		{"a health address without a port", cfg("healthAddr", "localhost"), "/config/healthAddr"},
		{"an unknown top-level value", map[string]any{"replicas": 3}, "replicas"},
		{"TLS as text", map[string]any{"nats": map[string]any{"tls": map[string]any{"enabled": "yes"}}}, "/nats/tls/enabled"},
		{"a NATS URL of another scheme", map[string]any{"nats": map[string]any{"url": "http://nats:4222"}}, "/nats/url"},
		{"a client id that is no GUID", map[string]any{"azure": map[string]any{"workloadIdentity": map[string]any{"clientId": "billing-identity"}}}, "/azure/workloadIdentity/clientId"},
		{"an unknown credential", map[string]any{"azure": map[string]any{"credential": "password"}}, "/azure/credential"},
		{"the console on every address", map[string]any{"console": map[string]any{"listen": "0.0.0.0:8090"}}, "/console/listen"},
		{"a console token in a ConfigMap", map[string]any{"console": map[string]any{"env": map[string]any{"BILLING_CONSOLE_TOKEN": "s3cret"}}}, "/console/env"},
		{"a console variable of the worker", map[string]any{"console": map[string]any{"env": map[string]any{"BILLING_REPLICAS": "3"}}}, "BILLING_REPLICAS"},
		{"KEDA scaling to zero", map[string]any{"keda": map[string]any{"minReplicas": 0}}, "/keda/minReplicas"},
		{"a digest that is no digest", map[string]any{"image": map[string]any{"digest": "latest"}}, "/image/digest"},
		{"an unknown pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "/image/pullPolicy"},
		{"a namespace that is no DNS label", map[string]any{"nats": map[string]any{"namespace": "NATS_prod"}}, "/nats/namespace"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := helmTemplate(chartOption{values: c.values})
			if err == nil {
				t.Fatalf("the chart accepts %v", c.values)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.path) {
				t.Errorf("the error does not name %s as the schema's: %v", c.path, err)
			}
		})
	}
	good := []map[string]any{
		cfg("ackWait", "90s"),
		cfg("drainTimeout", "1m30s"),
		cfg("throttleBillingWrites", "5/s"),
		cfg("throttleCostmanagement", "0.5/1s"),
		cfg("deadletterMaxBytes", 268435456),
		{"nats": map[string]any{"url": "tls://a.example:4222,tls://b.example:4222"}},
		{"console": map[string]any{"env": map[string]any{"BILLING_CONSOLE_WRITE": true}}},
	}
	for _, v := range good {
		if _, _, err := helmTemplate(chartOption{values: v}); err != nil {
			t.Errorf("the chart refuses %v: %v", v, err)
		}
	}
}

// TestChartLint runs Helm's own linter (helm lint) on the chart, for its
// default values: no warning, no error.
func TestChartLint(t *testing.T) {
	t.Parallel()
	res := lint.RunAll(chartDir, map[string]any{}, "billing")
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %v", m)
		}
	}
}

// The labels the chart adds to the kustomize base's (Helm's own and the
// release's), and the annotation that rolls the pods on a settings change
// (the base's ConfigMap name carries a hash instead).
var (
	chartOnlyLabels     = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
	chartOnlyAnnotation = "checksum/config"
	generatedName       = regexp.MustCompile(`^(billing-(?:worker|console))-[a-z0-9]{10}$`)
)

// normalize makes a rendered object comparable between the chart and
// kustomize: no namespace (the overlays set it, Helm the release's), none
// of the chart's own labels or its checksum annotation, generated
// ConfigMap names without their hash, volumes and mounts by name.
func normalize(o *object) map[string]any {
	var v map[string]any
	if err := json.Unmarshal(o.json, &v); err != nil {
		panic(err)
	}
	var walk func(x any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
			// Lists the API server merges by name, in whatever order
			// (a kustomize patch puts its entries first).
			for _, k := range []string{"volumes", "volumeMounts"} {
				if l, ok := x[k].([]any); ok {
					slices.SortFunc(l, func(a, b any) int {
						return strings.Compare(fmt.Sprint(a.(map[string]any)["name"]), fmt.Sprint(b.(map[string]any)["name"]))
					})
				}
			}
			if md, ok := x["metadata"].(map[string]any); ok {
				delete(md, "namespace")
				if l, ok := md["labels"].(map[string]any); ok {
					for _, k := range chartOnlyLabels {
						delete(l, k)
					}
				}
				if a, ok := md["annotations"].(map[string]any); ok {
					delete(a, chartOnlyAnnotation)
					if len(a) == 0 {
						delete(md, "annotations")
					}
				}
			}
			return x
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
			return x
		case string:
			if m := generatedName.FindStringSubmatch(x); m != nil {
				return m[1]
			}
			return x
		default:
			return x
		}
	}
	return walk(v).(map[string]any)
}

// diffValues lists where a and b differ, by path.
func diffValues(path string, a, b any, out *[]string) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: %v / %v", path, a, b))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(av)) {
			if _, ok := bv[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: only in the chart (%v)", path, k, av[k]))
				continue
			}
			diffValues(path+"."+k, av[k], bv[k], out)
		}
		for _, k := range slices.Sorted(maps.Keys(bv)) {
			if _, ok := av[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: only in kustomize (%v)", path, k, bv[k]))
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			*out = append(*out, fmt.Sprintf("%s: chart %v, kustomize %v", path, a, b))
			return
		}
		for i := range av {
			diffValues(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], out)
		}
	default:
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, fmt.Sprintf("%s: chart %v, kustomize %v", path, a, b))
		}
	}
}

// composed renders the kustomize base with components, as an overlay
// that adds them to the base would.
func composed(t *testing.T, components ...string) *rendering {
	t.Helper()
	key := "base+" + strings.Join(components, "+")
	renderMu.Lock()
	r, ok := renderCache[key]
	renderMu.Unlock()
	if ok {
		return r
	}
	// Kustomize takes no absolute paths: the new kustomization refers to
	// the base and the components relative to its own directory.
	dir := t.TempDir()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err == nil {
			a, err = filepath.Rel(dir, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(a)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + abs("base") + "\n"
	if len(components) > 0 {
		k += "components:\n"
		for _, c := range components {
			k += "- " + abs("components/"+c) + "\n"
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := kustomizeBuild(dir)
	if err != nil {
		t.Fatalf("kustomize base with %v: %v", components, err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	r = &rendering{dir: key, yaml: out, objs: objs}
	renderMu.Lock()
	renderCache[key] = r
	renderMu.Unlock()
	return r
}

// TestChartMatchesKustomize: for its default values the chart renders the
// objects of the kustomize base, and with each optional part on, those of
// the base with the matching component. Objects are compared whole, less
// namespace, the chart's own labels and checksum annotation, and ConfigMap
// hashes; the worker's ConfigMap is compared as the configuration the
// worker builds from it (the chart writes every setting, the base only the
// ones it changes) and the other variables it sets.
func TestChartMatchesKustomize(t *testing.T) {
	t.Parallel()
	for chart, components := range map[string][]string{
		"helm":            nil,
		"helm:console":    {"console"},
		"helm:monitoring": {"monitoring"},
		"helm:nats-tls":   {"nats-tls"},
	} {
		t.Run(chart, func(t *testing.T) {
			t.Parallel()
			h, k := render(t, chart), composed(t, components...)
			index := func(r *rendering) map[string]*object {
				m := map[string]*object{}
				for _, o := range r.objs {
					name := o.name
					if g := generatedName.FindStringSubmatch(name); g != nil {
						name = g[1]
					}
					m[o.gvk.Kind+"/"+name] = o
				}
				return m
			}
			hi, ki := index(h), index(k)
			for _, key := range slices.Sorted(maps.Keys(ki)) {
				if _, ok := hi[key]; !ok {
					t.Errorf("%s is in the kustomize rendering only", key)
				}
			}
			for _, key := range slices.Sorted(maps.Keys(hi)) {
				ho, ok := hi[key]
				ko := ki[key]
				if !ok || ko == nil {
					t.Errorf("%s is in the chart only", key)
					continue
				}
				if key == "ConfigMap/"+workerConfigMap {
					compareWorkerSettings(t, h, k)
					continue
				}
				var diffs []string
				diffValues(key, normalize(ho), normalize(ko), &diffs)
				for _, d := range diffs {
					t.Error(d)
				}
			}
		})
	}
}

// compareWorkerSettings: the worker builds the same configuration from the
// chart's ConfigMap as from the base's, and the other variables (Azure's,
// OpenTelemetry's) are the same.
func compareWorkerSettings(t *testing.T, h, k *rendering) {
	t.Helper()
	he, ke := workerEnv(t, h), workerEnv(t, k)
	if hc, kc := workerConfig(t, he), workerConfig(t, ke); !reflect.DeepEqual(hc, kc) {
		var diffs []string
		hv, kv := reflect.ValueOf(hc), reflect.ValueOf(kc)
		for i := range hv.NumField() {
			if !reflect.DeepEqual(hv.Field(i).Interface(), kv.Field(i).Interface()) {
				diffs = append(diffs, fmt.Sprintf("%s: chart %v, kustomize %v", hv.Type().Field(i).Name, hv.Field(i), kv.Field(i)))
			}
		}
		t.Errorf("the worker's configuration differs:\n%s", strings.Join(diffs, "\n"))
	}
	for _, env := range []map[string]string{he, ke} {
		for name := range env {
			if strings.HasPrefix(name, config.EnvPrefix) {
				continue
			}
			if he[name] != ke[name] {
				t.Errorf("%s: chart %q, kustomize %q", name, he[name], ke[name])
			}
		}
	}
}

// TestChartNames: another release name renames every object and keeps
// every reference, selector and alert pointing at the renamed ones; two
// releases in one namespace share no object name.
func TestChartNames(t *testing.T) {
	t.Parallel()
	opt := chartOptions["helm:all"]
	opt.release = "acme"
	out, _, err := helmTemplate(opt)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendering{dir: "helm (release acme)", yaml: out, objs: objs}
	const worker, console = "acme-billing-worker", "acme-billing-console"
	d := r.deployment(t, worker)
	cd := r.deployment(t, console)
	for _, o := range r.objs {
		if !strings.HasPrefix(o.name, "acme-") {
			t.Errorf("%s is not named after the release", o)
		}
	}
	if d.Spec.Template.Spec.ServiceAccountName != worker {
		t.Errorf("service account %s", d.Spec.Template.Spec.ServiceAccountName)
	}
	r.one(t, "ServiceAccount", worker)
	if ref := d.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name; ref != worker {
		t.Errorf("worker envFrom ConfigMap %s", ref)
	}
	r.one(t, "ConfigMap", worker)
	if ref := cd.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name; ref != console {
		t.Errorf("console envFrom ConfigMap %s", ref)
	}
	r.one(t, "ConfigMap", console)
	for _, name := range []string{worker} {
		for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy", "ScaledObject", "PodMonitor", "PrometheusRule"} {
			r.one(t, kind, name)
		}
	}
	var so scaledObject
	if err := kjsonUnmarshalLoose(r.one(t, "ScaledObject", worker).json, &so); err != nil {
		t.Fatal(err)
	}
	if so.Spec.ScaleTargetRef.Name != worker {
		t.Errorf("ScaledObject targets %s", so.Spec.ScaleTargetRef.Name)
	}
	for _, tr := range so.Spec.Triggers {
		if tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != worker+"-nats" {
			t.Errorf("trigger %s: authenticationRef %+v", tr.Name, tr.AuthenticationRef)
		}
	}
	r.one(t, "TriggerAuthentication", worker+"-nats")
	rule := string(r.one(t, "PrometheusRule", worker).json)
	for _, want := range []string{`pod=~\"` + worker + `-[a-z0-9]+-[a-z0-9]+\"`, `job=~\".+/` + worker + `\"`, `(keda-hpa-)?` + worker} {
		if !strings.Contains(rule, want) {
			t.Errorf("the alerts do not select the renamed objects: no %s", want)
		}
	}
	// Two releases side by side: no name in common.
	names := func(r *rendering) map[string]bool {
		m := map[string]bool{}
		for _, o := range r.objs {
			m[o.gvk.Kind+"/"+o.name] = true
		}
		return m
	}
	other := names(render(t, "helm:all"))
	for n := range names(r) {
		if other[n] {
			t.Errorf("releases acme and %s both render %s", chartRelease, n)
		}
	}
}

// TestChartNotes: NOTES.txt names the objects to create, says how to open
// the console when it is installed and how to send a first request, and
// warns while the workload identity's client id is the placeholder.
func TestChartNotes(t *testing.T) {
	t.Parallel()
	def := render(t, "helm").notes
	for _, want := range []string{
		"Secret billing-worker-nats",
		"kubectl -n billing rollout status deployment/billing-worker",
		"azure.workloadIdentity.clientId is the all-zeros placeholder",
		"console.enabled=true",
		"kubectl -n nats port-forward service/nats 4222",
		"go run ./cmd/enqueue --server nats://127.0.0.1:4222",
		"--creds ./nats-secrets/billing-submitter.creds",
		"invoice-summary --billing-account",
	} {
		if !strings.Contains(def, want) {
			t.Errorf("NOTES.txt (defaults) lacks %q:\n%s", want, def)
		}
	}
	all := render(t, "helm:all").notes
	for _, want := range []string{
		"kubectl -n billing port-forward deployment/billing-console 8090",
		"http://127.0.0.1:8090",
		"Secret billing-console-nats",
		"ConfigMap billing-nats-ca",
		"--server tls://msg.messaging.svc.cluster.local:4222 --tlsca",
		"--prefix acme-billing",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("NOTES.txt (every option) lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "placeholder") {
		t.Error("NOTES.txt warns of the placeholder client id when one is set")
	}
	// The enqueue command NOTES.txt shows uses flags enqueue has.
	cli := string(readFile(t, repoRoot+"/docs/cli.md"))
	for _, f := range regexp.MustCompile(`\s(--[a-z-]+)`).FindAllStringSubmatch(def+all, -1) {
		if f[1] == "--set" || f[1] == "--reuse-values" {
			continue // helm's
		}
		if !strings.Contains(cli, "`"+f[1]) && !strings.Contains(cli, " "+f[1]+" ") {
			t.Errorf("NOTES.txt uses %s, which docs/cli.md does not list", f[1])
		}
	}
}

// TestChartConsoleEnv: the console's ConfigMap holds the settings the
// console reads, and console.env's values.
func TestChartConsoleEnv(t *testing.T) {
	t.Parallel()
	r := render(t, "helm:all")
	cm := r.configMap(t, "billing-console")
	known := consoleSettings(t)
	for k := range cm.Data {
		if !slices.Contains(known, k) {
			t.Errorf("the console's ConfigMap sets %s, which the console does not read", k)
		}
	}
	if cm.Data["BILLING_CONSOLE_WRITE"] != "false" {
		t.Errorf("console.env BILLING_CONSOLE_WRITE: ConfigMap has %q", cm.Data["BILLING_CONSOLE_WRITE"])
	}
	if cm.Data["BILLING_NATS_CA"] == "" || cm.Data["BILLING_NATS_URL"] != "tls://msg.messaging.svc.cluster.local:4222" {
		t.Errorf("the console does not use TLS to the worker's NATS: %v", cm.Data)
	}
}

// TestChartOtherCredential: with a credential other than workload
// identity, the pods lose the webhook's label and the service account its
// client id, and a client secret mounted through extraVolumes is where the
// worker looks for it.
func TestChartOtherCredential(t *testing.T) {
	t.Parallel()
	out, _, err := helmTemplate(chartOption{values: map[string]any{
		"azure":  map[string]any{"credential": "client-secret"},
		"config": map[string]any{"azureTenantId": "tenant", "azureClientId": "client", "azureClientSecretFile": "/var/run/secrets/billing/azure/secret"},
		"extraVolumes": []any{map[string]any{"name": "azure", "secret": map[string]any{
			"secretName": "billing-worker-azure", "items": []any{map[string]any{"key": "secret", "path": "secret"}},
		}}},
		"extraVolumeMounts": []any{map[string]any{"name": "azure", "mountPath": "/var/run/secrets/billing/azure", "readOnly": true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendering{dir: "helm (client secret)", yaml: out, objs: objs}
	env := workerEnv(t, r)
	cfg := workerConfig(t, env)
	if cfg.AzureCredential != "client-secret" || cfg.AzureClientSecretFile != "/var/run/secrets/billing/azure/secret" {
		t.Errorf("credential %q, secret file %q", cfg.AzureCredential, cfg.AzureClientSecretFile)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the worker rejects the configuration: %v", err)
	}
	checkFilesMounted(t, r, env)
	d := r.deployment(t, workerDeployment)
	if _, ok := d.Spec.Template.Labels["azure.workload.identity/use"]; ok {
		t.Error("the pods keep the workload identity label")
	}
	sa := r.one(t, "ServiceAccount", workerDeployment)
	if strings.Contains(string(sa.json), "azure.workload.identity/client-id") {
		t.Error("the service account keeps the workload identity client id")
	}
}
