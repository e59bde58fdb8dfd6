package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root, relative to this package's directory
// (where go test runs).
const repoRoot = "../.."

// The kustomizations the tests render: every overlay, the base, and the
// collector on its own.
var kustomizations = []string{
	"base",
	"overlays/dev",
	"overlays/production",
	"overlays/hpa",
	"overlays/azblob",
	"../otel-collector",
}

// Overlays are what an operator applies.
var overlays = []string{"overlays/dev", "overlays/production", "overlays/hpa", "overlays/azblob"}

// The worker's objects, as named in base/.
const (
	workerDeployment = "billing-worker"
	workerContainer  = "worker"
	workerConfigMap  = "billing-worker"
	natsSecret       = "billing-worker-nats"
)

// object is one rendered Kubernetes object, decoded strictly into its API
// type (typed) or, for KEDA's kinds, validated against KEDA's CRD schema.
type object struct {
	gvk             schema.GroupVersionKind
	name, namespace string
	json            []byte
	typed           any
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s/%s", o.gvk.Kind, o.namespace, o.name)
}

// rendering is the output of one kustomization, or of the Helm chart
// with one of chartOptions (helm_test.go).
type rendering struct {
	dir   string
	yaml  []byte
	objs  []*object
	notes string // the chart's NOTES.txt
}

// typedKinds maps every built-in kind the manifests may contain to its Go
// API type. Anything else (other than KEDA's kinds) fails the tests.
var typedKinds = map[schema.GroupVersionKind]func() any{
	{Version: "v1", Kind: "ServiceAccount"}:                                func() any { return &corev1.ServiceAccount{} },
	{Version: "v1", Kind: "ConfigMap"}:                                     func() any { return &corev1.ConfigMap{} },
	{Version: "v1", Kind: "Service"}:                                       func() any { return &corev1.Service{} },
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                     func() any { return &appsv1.Deployment{} },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:          func() any { return &policyv1.PodDisruptionBudget{} },
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}:     func() any { return &networkingv1.NetworkPolicy{} },
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}: func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	// The Prometheus Operator's (components/monitoring).
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}:     func() any { return &monitoringv1.PodMonitor{} },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return &monitoringv1.PrometheusRule{} },
}

// KEDA's kinds, checked against the CRDs of KEDA's module (keda_test.go).
var (
	scaledObjectGVK          = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}
	triggerAuthenticationGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}
)

var (
	renderMu    sync.Mutex
	renderCache = map[string]*rendering{}
)

// render renders the kustomization dir (relative to this directory) with
// the kustomize Go API, and decodes every object; dir may also name one of
// chartOptions, rendered with the Helm Go SDK. Results are cached.
func render(t *testing.T, dir string) *rendering {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if r, ok := renderCache[dir]; ok {
		return r
	}
	if isChart(dir) {
		r, err := renderChart(dir)
		if err != nil {
			t.Fatalf("helm template (%s): %v", dir, err)
		}
		renderCache[dir] = r
		return r
	}
	out, err := kustomizeBuild(dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	r := &rendering{dir: dir, yaml: out, objs: objs}
	renderCache[dir] = r
	return r
}

// kustomizeBuild is `kustomize build dir` with the defaults kubectl uses.
func kustomizeBuild(dir string) ([]byte, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		return nil, err
	}
	return m.AsYaml()
}

// kubectlKustomize renders dir with `kubectl kustomize`; ok is false when
// kubectl is not installed.
func kubectlKustomize(dir string) (out []byte, ok bool, err error) {
	path, err := exec.LookPath("kubectl")
	if err != nil {
		return nil, false, nil
	}
	cmd := exec.Command(path, "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		return nil, true, fmt.Errorf("kubectl kustomize %s: %w: %s", dir, err, stderr.String())
	}
	return out, true, nil
}

// splitYAML splits a multi-document YAML stream into its documents' JSON.
func splitYAML(stream []byte) ([][]byte, error) {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), stream...), []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		// Strict: duplicate keys are errors.
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, err
		}
		if string(j) == "null" {
			continue
		}
		docs = append(docs, j)
	}
	return docs, nil
}

func decodeAll(stream []byte) ([]*object, error) {
	docs, err := splitYAML(stream)
	if err != nil {
		return nil, err
	}
	var objs []*object
	var errs []error
	for _, j := range docs {
		o, err := decodeObject(j)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, o)
	}
	return objs, errors.Join(errs...)
}

// decodeObject decodes one object strictly into its API type: an unknown
// or misspelt field (the API server's matching is case-sensitive, and so
// is this), a duplicate field or a value of the wrong type is an error, as
// is a kind this deployment does not expect.
func decodeObject(j []byte) (*object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := kjsonUnmarshalLoose(j, &head); err != nil {
		return nil, err
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	o := &object{gvk: gv.WithKind(head.Kind), name: head.Metadata.Name, namespace: head.Metadata.Namespace, json: j}
	if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
		return nil, fmt.Errorf("%s: name: %s", o, strings.Join(errs, "; "))
	}
	switch o.gvk {
	case scaledObjectGVK, triggerAuthenticationGVK:
		// Validated against KEDA's CRD schema by TestKEDAObjectsMatchCRDs.
		return o, nil
	}
	newT, ok := typedKinds[o.gvk]
	if !ok {
		return nil, fmt.Errorf("%s: kind %s is not one this deployment expects (add it to typedKinds with its API type)", o, o.gvk)
	}
	o.typed = newT()
	if err := strictUnmarshal(j, o.typed); err != nil {
		return nil, fmt.Errorf("%s: %w", o, err)
	}
	return o, nil
}

// strictUnmarshal decodes JSON as the API server does (sigs.k8s.io/json:
// case-sensitive field names), failing on unknown and duplicate fields.
func strictUnmarshal(j []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func kjsonUnmarshalLoose(j []byte, v any) error {
	_, err := kjson.UnmarshalStrict(j, v)
	return err
}

// find returns the objects of kind (and name, unless empty).
func (r *rendering) find(kind, name string) []*object {
	var out []*object
	for _, o := range r.objs {
		if o.gvk.Kind == kind && (name == "" || o.name == name) {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of kind and name, failing the test if
// there is not exactly one.
func (r *rendering) one(t *testing.T, kind, name string) *object {
	t.Helper()
	objs := r.find(kind, name)
	if len(objs) != 1 {
		t.Fatalf("%s: want one %s %q, have %d", r.dir, kind, name, len(objs))
	}
	return objs[0]
}

func (r *rendering) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	return r.one(t, "Deployment", name).typed.(*appsv1.Deployment)
}

// configMap finds a ConfigMap by the name in the manifests: a generated
// one carries a hash suffix, which Deployments' references carry too.
func (r *rendering) configMap(t *testing.T, name string) *corev1.ConfigMap {
	t.Helper()
	generated := regexp.MustCompile("^" + regexp.QuoteMeta(name) + "-[a-z0-9]{10}$")
	for _, o := range r.find("ConfigMap", "") {
		if o.name == name || generated.MatchString(o.name) {
			return o.typed.(*corev1.ConfigMap)
		}
	}
	t.Fatalf("%s: no ConfigMap %q", r.dir, name)
	return nil
}

func container(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// sameObjects reports the differences between two renderings of one
// kustomization, compared object by object (order aside).
func sameObjects(a, b []byte) error {
	index := func(stream []byte) (map[string]any, error) {
		docs, err := splitYAML(stream)
		if err != nil {
			return nil, err
		}
		m := map[string]any{}
		for _, d := range docs {
			var v map[string]any
			if err := yaml.Unmarshal(d, &v); err != nil {
				return nil, err
			}
			md, _ := v["metadata"].(map[string]any)
			key := fmt.Sprintf("%v/%v/%v/%v", v["apiVersion"], v["kind"], md["namespace"], md["name"])
			m[key] = v
		}
		return m, nil
	}
	ma, err := index(a)
	if err != nil {
		return err
	}
	mb, err := index(b)
	if err != nil {
		return err
	}
	var diffs []string
	for k, va := range ma {
		vb, ok := mb[k]
		switch {
		case !ok:
			diffs = append(diffs, "only in the kustomize API's output: "+k)
		case !reflect.DeepEqual(va, vb):
			diffs = append(diffs, "differs: "+k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			diffs = append(diffs, "only in kubectl's output: "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, "\n"))
	}
	return nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
