package k8s

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/config"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/messages"
)

// TestRender renders every kustomization with the kustomize Go API (what
// CI, with Go only, has) and, where kubectl is installed, with `kubectl
// kustomize` too, which must give the same objects. Every object must
// decode strictly into its API type (render does that); no Secret may be
// rendered (secrets are created by the operator, never kept here).
func TestRender(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(kustomizations) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			if len(r.objs) == 0 {
				t.Fatal("renders nothing")
			}
			for _, o := range r.objs {
				if o.gvk.Kind == "Secret" {
					t.Errorf("%s: secrets are referenced, never kept in the manifests", o)
				}
				checkLabels(t, o)
			}
			if isChart(dir) {
				return // rendered with the Helm Go SDK (helm_test.go)
			}
			out, ok, err := kubectlKustomize(dir)
			switch {
			case err != nil:
				t.Fatal(err)
			case !ok:
				t.Log("kubectl is not installed: rendered with the kustomize Go API only")
			default:
				if err := sameObjects(r.yaml, out); err != nil {
					t.Errorf("kubectl kustomize and the kustomize Go API render %s differently:\n%v", dir, err)
				}
			}
		})
	}
}

func checkLabels(t *testing.T, o *object) {
	t.Helper()
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := kjsonUnmarshalLoose(o.json, &meta); err != nil {
		t.Fatal(err)
	}
	for k, v := range meta.Metadata.Labels {
		if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			t.Errorf("%s: label %s=%s: %s", o, k, v, strings.Join(errs, "; "))
		}
	}
	if meta.Metadata.Labels["app.kubernetes.io/part-of"] != "azbilling" {
		t.Errorf("%s: missing label app.kubernetes.io/part-of=azbilling", o)
	}
}

// Environment variables the worker reads besides its settings: Azure's own,
// read by azidentity (the AKS workload identity webhook injects the first
// four), and the standard OpenTelemetry ones. Named one by one: a prefix
// would let a typo through.
var (
	azureVars = []string{
		"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
		"AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
		"AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
	}
	otelVars = []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_METRICS_EXPORTER", "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER",
	}
)

// readByWorker reports whether the worker reads the environment variable
// name: one of its settings (config.Settings), or Azure's or OpenTelemetry's
// standard variables above.
func readByWorker(name string) bool {
	for _, s := range config.Settings {
		if s.Env == name {
			return true
		}
	}
	return slices.Contains(azureVars, name) || slices.Contains(otelVars, name)
}

// secretValue stands for a value the manifests take from a Secret.
const secretValue = "<secret>"

// workerEnv returns the worker container's environment as the kubelet
// would build it from the rendered objects: envFrom ConfigMaps, then env.
func workerEnv(t *testing.T, r *rendering) map[string]string {
	t.Helper()
	d := r.deployment(t, workerDeployment)
	c := container(t, &d.Spec.Template.Spec, workerContainer)
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := r.configMap(t, ef.ConfigMapRef.Name)
			for k, v := range cm.Data {
				env[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			t.Errorf("%s: envFrom secret %s: its keys cannot be checked against the worker's settings; use env with secretKeyRef", r.dir, ef.SecretRef.Name)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			env[e.Name] = r.configMap(t, e.ValueFrom.ConfigMapKeyRef.Name).Data[e.ValueFrom.ConfigMapKeyRef.Key]
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secretValue
		default:
			// Downward API variables (pod name, limits...) are read by nothing in the worker.
			t.Errorf("%s: env %s comes from the downward API, which the worker does not read", r.dir, e.Name)
		}
	}
	return env
}

// workerConfig builds the worker's configuration from env exactly as
// cmd/worker does (Config.Bind), so a value the worker cannot parse fails.
func workerConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	var cfg config.Config
	fs := flag.NewFlagSet("manifests", flag.ContinueOnError)
	if err := cfg.Bind(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatalf("the worker rejects the manifests' settings: %v", err)
	}
	return cfg
}

// TestWorkerSettings: every variable the manifests set on the worker is one
// the worker reads, the required ones are set, and together they form a
// configuration the worker accepts (Config.Validate).
func TestWorkerSettings(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(append([]string{"base"}, overlays...)) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			env := workerEnv(t, r)
			for name := range env {
				if !readByWorker(name) {
					t.Errorf("the manifests set %s, which the worker does not read (config.Settings, Azure's or OpenTelemetry's variables)", name)
				}
			}
			if env["BILLING_NATS_URL"] == "" {
				t.Error("BILLING_NATS_URL is not set (the default is localhost)")
			}
			if got := env["BILLING_AZURE_CREDENTIAL"]; got != "workload-identity" {
				t.Errorf("BILLING_AZURE_CREDENTIAL = %q, want workload-identity", got)
			}
			if env["BILLING_NATS_CREDS"] == "" {
				t.Error("BILLING_NATS_CREDS is not set: the worker would connect without credentials")
			}
			cfg := workerConfig(t, env)
			if err := cfg.Validate(); err != nil {
				t.Errorf("the worker rejects the manifests' configuration: %v", err)
			}
			if !strings.HasSuffix(dir, "dev") && dir != "base" && !isChart(dir) && cfg.Replicas != 3 {
				t.Errorf("BILLING_REPLICAS = %d, want 3 on the production NATS cluster", cfg.Replicas)
			}
			if strings.HasSuffix(dir, "dev") && cfg.Replicas != 1 {
				t.Errorf("BILLING_REPLICAS = %d, want 1 in development", cfg.Replicas)
			}
			checkFilesMounted(t, r, env)
		})
	}
}

// checkFilesMounted: every file setting points into a volume the container
// mounts (the root filesystem is read-only and has nothing of ours).
func checkFilesMounted(t *testing.T, r *rendering, env map[string]string) {
	t.Helper()
	d := r.deployment(t, workerDeployment)
	c := container(t, &d.Spec.Template.Spec, workerContainer)
	for _, name := range []string{"BILLING_NATS_CREDS", "BILLING_NATS_CA", "BILLING_NATS_CERT", "BILLING_NATS_KEY",
		"BILLING_AZURE_CLIENT_SECRET_FILE", "BILLING_AZURE_CERTIFICATE_FILE", "BILLING_AZURE_PROFILES_FILE"} {
		path := env[name]
		if path == "" {
			continue
		}
		var vm *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if strings.HasPrefix(path, strings.TrimSuffix(c.VolumeMounts[i].MountPath, "/")+"/") {
				vm = &c.VolumeMounts[i]
			}
		}
		if vm == nil {
			t.Errorf("%s=%s is in no volume the container mounts", name, path)
			continue
		}
		file := strings.TrimPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			var items []corev1.KeyToPath
			switch {
			case v.Secret != nil:
				items = v.Secret.Items
			case v.ConfigMap != nil:
				items = v.ConfigMap.Items
			}
			if len(items) > 0 && !slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Path == file }) {
				t.Errorf("%s=%s: volume %s does not project %s", name, path, v.Name, file)
			}
		}
	}
}

// TestDrainWithinGracePeriod: the kubelet must not kill a worker that is
// still draining: the drain timeout plus the final flush (5 s in
// cmd/worker) and a margin fit in terminationGracePeriodSeconds.
func TestDrainWithinGracePeriod(t *testing.T) {
	t.Parallel()
	const afterDrain = 10 * time.Second
	for _, dir := range withCharts(append([]string{"base"}, overlays...)) {
		r := render(t, dir)
		cfg := workerConfig(t, workerEnv(t, r))
		d := r.deployment(t, workerDeployment)
		gp := d.Spec.Template.Spec.TerminationGracePeriodSeconds
		if gp == nil {
			t.Errorf("%s: terminationGracePeriodSeconds is not set (default 30s)", dir)
			continue
		}
		grace := time.Duration(*gp) * time.Second
		if cfg.DrainTimeout+afterDrain > grace {
			t.Errorf("%s: drain timeout %s + %s exceeds terminationGracePeriodSeconds (%s)", dir, cfg.DrainTimeout, afterDrain, grace)
		}
	}
}

// healthPort is the port the worker serves /livez, /readyz and /metrics
// on, given its environment (BILLING_HEALTH_ADDR or the worker's default).
func healthPort(t *testing.T, cfg config.Config) int {
	t.Helper()
	if cfg.HealthAddr == "" {
		t.Fatal("BILLING_HEALTH_ADDR is empty: the worker would serve no probes")
	}
	_, p, err := net.SplitHostPort(cfg.HealthAddr)
	if err != nil {
		t.Fatalf("health address %q: %v", cfg.HealthAddr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("health address %q: %v", cfg.HealthAddr, err)
	}
	return port
}

// resolvePort resolves a probe's, Service's or policy's port (a number or
// a container port name) against the container.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return -1
}

// The probe paths the manifests use; TestWorkerUnderDeployedPermissions
// requests them from the real worker's health handler.
const (
	livenessPath  = "/livez"
	readinessPath = "/readyz"
)

// TestProbesAndPorts: the container port, the probes, the metrics Service,
// the scrape annotation and the NetworkPolicy's ingress all use the port
// the worker listens on. The worker's own default (config.Settings) counts
// when the manifests do not set BILLING_HEALTH_ADDR, so a change on either
// side alone fails here.
func TestProbesAndPorts(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(append([]string{"base"}, overlays...)) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			port := healthPort(t, workerConfig(t, workerEnv(t, r)))
			d := r.deployment(t, workerDeployment)
			c := container(t, &d.Spec.Template.Spec, workerContainer)
			if got := resolvePort(c, intstr.FromString("http")); got != port {
				t.Errorf("container port http = %d, the worker listens on %d", got, port)
			}
			probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe}
			want := map[string]string{"liveness": livenessPath, "readiness": readinessPath, "startup": livenessPath}
			for name, p := range probes {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s probe: want an HTTP GET of %s", name, want[name])
					continue
				}
				if p.HTTPGet.Path != want[name] {
					t.Errorf("%s probe path %s, want %s", name, p.HTTPGet.Path, want[name])
				}
				if got := resolvePort(c, p.HTTPGet.Port); got != port {
					t.Errorf("%s probe port %s = %d, the worker listens on %d", name, p.HTTPGet.Port.String(), got, port)
				}
			}
			if got := d.Spec.Template.Annotations["prometheus.io/port"]; got != strconv.Itoa(port) {
				t.Errorf("prometheus.io/port = %q, want %d", got, port)
			}
			svc := r.one(t, "Service", "billing-worker-metrics").typed.(*corev1.Service)
			if len(svc.Spec.Ports) != 1 || resolvePort(c, svc.Spec.Ports[0].TargetPort) != port || svc.Spec.Ports[0].Name != "metrics" {
				t.Errorf("metrics Service ports %+v: want one port named metrics to container port %d", svc.Spec.Ports, port)
			}
			if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("metrics Service selector %v does not select the worker pods", svc.Spec.Selector)
			}
			np := r.one(t, "NetworkPolicy", "billing-worker").typed.(*networkingv1.NetworkPolicy)
			for _, in := range np.Spec.Ingress {
				for _, p := range in.Ports {
					if p.Port == nil || resolvePort(c, *p.Port) != port {
						t.Errorf("NetworkPolicy admits ingress on %v; only the metrics port %d is needed", p.Port, port)
					}
				}
			}
		})
	}
}

func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(podLabels))
}

func labelSelects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// TestPodHardening checks every Deployment of every overlay: non-root,
// read-only root filesystem, no privilege escalation, no capabilities,
// RuntimeDefault seccomp, no API token, resources, pinned images.
func TestPodHardening(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(kustomizations) {
		r := render(t, dir)
		for _, o := range r.find("Deployment", "") {
			d := o.typed.(*appsv1.Deployment)
			t.Run(dir+"/"+d.Name, func(t *testing.T) {
				ps := d.Spec.Template.Spec
				psc := ps.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
					t.Error("pod securityContext: want runAsNonRoot and a numeric non-root runAsUser")
				}
				if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Error("pod securityContext: want seccompProfile RuntimeDefault")
				}
				if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
					t.Error("automountServiceAccountToken must be false: nothing here calls the Kubernetes API")
				}
				if ps.HostNetwork || ps.HostPID || ps.HostIPC {
					t.Error("host namespaces are not needed")
				}
				for _, v := range ps.Volumes {
					if v.HostPath != nil {
						t.Errorf("volume %s: hostPath", v.Name)
					}
				}
				for _, c := range append(ps.InitContainers, ps.Containers...) {
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("container %s: no securityContext", c.Name)
						continue
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
					case sc.Privileged != nil && *sc.Privileged:
						t.Errorf("container %s: privileged", c.Name)
					case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
						t.Errorf("container %s: capabilities must drop ALL and add none", c.Name)
					case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
						t.Errorf("container %s: seccompProfile must be RuntimeDefault", c.Name)
					}
					for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
						if req.IsZero() || lim.IsZero() {
							t.Errorf("container %s: want %s request and limit", c.Name, res)
						} else if req.Cmp(lim) > 0 {
							t.Errorf("container %s: %s request %s above its limit %s", c.Name, res, req.String(), lim.String())
						}
					}
					if !pinnedImage(c.Image) {
						t.Errorf("container %s: image %q is not pinned to a version", c.Name, c.Image)
					}
				}
			})
		}
	}
}

func pinnedImage(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	tag := image[i+1:]
	return tag != "" && tag != "latest"
}

// TestWorkerPod checks what is particular to the worker's pod: workload
// identity, the NATS credentials Secret, topology spread, disruption budget.
func TestWorkerPod(t *testing.T) {
	t.Parallel()
	guid := regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	for _, dir := range withCharts(append([]string{"base"}, overlays...)) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			d := r.deployment(t, workerDeployment)
			ps := d.Spec.Template.Spec
			pod := d.Spec.Template.Labels
			if !labelSelects(t, d.Spec.Selector, pod) {
				t.Error("the Deployment's selector does not select its own pods")
			}

			// Workload identity: the webhook needs the pod label, and the
			// service account's client-id annotation names the identity.
			if pod["azure.workload.identity/use"] != "true" {
				t.Error(`pod label azure.workload.identity/use: "true" is missing`)
			}
			sa := r.one(t, "ServiceAccount", ps.ServiceAccountName).typed.(*corev1.ServiceAccount)
			if id := sa.Annotations["azure.workload.identity/client-id"]; !guid.MatchString(id) {
				t.Errorf("service account %s: annotation azure.workload.identity/client-id = %q, want a client id (GUID)", sa.Name, id)
			}

			// The NATS credentials come from the operator's Secret.
			var found bool
			for _, v := range ps.Volumes {
				if v.Secret != nil && v.Secret.SecretName == natsSecret {
					found = true
					if v.Secret.Optional != nil && *v.Secret.Optional {
						t.Errorf("volume %s: the credentials must not be optional", v.Name)
					}
				}
			}
			if !found {
				t.Errorf("no volume from Secret %s", natsSecret)
			}

			// Spread over nodes and zones.
			keys := map[string]bool{}
			for _, tsc := range ps.TopologySpreadConstraints {
				keys[tsc.TopologyKey] = true
				if tsc.LabelSelector == nil || !labelSelects(t, tsc.LabelSelector, pod) {
					t.Errorf("topology spread on %s does not select the worker pods", tsc.TopologyKey)
				}
			}
			for _, k := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
				if !keys[k] {
					t.Errorf("no topology spread constraint on %s", k)
				}
			}

			pdb := r.one(t, "PodDisruptionBudget", "billing-worker").typed.(*policyv1.PodDisruptionBudget)
			if !labelSelects(t, pdb.Spec.Selector, pod) {
				t.Error("the PodDisruptionBudget does not select the worker pods")
			}
			if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() < 1 {
				t.Error("the PodDisruptionBudget must allow one disruption (maxUnavailable >= 1), or a node with a single worker cannot be drained")
			}
		})
	}
}

// natsEndpoint is the NATS client URL of the manifests, split.
type natsEndpoint struct {
	scheme, release, namespace string
	port                       int
}

// parseNATSURL splits a NATS URL of the form
// <scheme>://<release>.<namespace>.svc.cluster.local:<port>.
func parseNATSURL(t *testing.T, raw string) natsEndpoint {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("BILLING_NATS_URL %q: %v", raw, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("BILLING_NATS_URL %q: want an explicit port", raw)
	}
	parts := strings.Split(u.Hostname(), ".")
	if len(parts) != 5 || parts[2] != "svc" {
		t.Fatalf("BILLING_NATS_URL %q: want <service>.<namespace>.svc.cluster.local", raw)
	}
	return natsEndpoint{scheme: u.Scheme, release: parts[0], namespace: parts[1], port: port}
}

// TestNetworkPolicy: the worker's egress admits what its settings point at
// (NATS, the collector, Entra ID and ARM on 443, DNS) and its ingress only
// the metrics port (checked in TestProbesAndPorts).
func TestNetworkPolicy(t *testing.T) {
	t.Parallel()
	for _, dir := range withCharts(append([]string{"base"}, overlays...)) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			env := workerEnv(t, r)
			d := r.deployment(t, workerDeployment)
			np := r.one(t, "NetworkPolicy", "billing-worker").typed.(*networkingv1.NetworkPolicy)
			if !labelSelects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
				t.Fatal("the NetworkPolicy does not select the worker pods")
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				t.Error("the NetworkPolicy must restrict both ingress and egress")
			}
			allows := func(port int, proto corev1.Protocol, peer func(networkingv1.NetworkPolicyPeer) bool) bool {
				for _, e := range np.Spec.Egress {
					peerOK := len(e.To) == 0
					for _, p := range e.To {
						peerOK = peerOK || peer(p)
					}
					if !peerOK {
						continue
					}
					for _, p := range e.Ports {
						pr := corev1.ProtocolTCP
						if p.Protocol != nil {
							pr = *p.Protocol
						}
						if p.Port != nil && p.Port.IntValue() == port && pr == proto {
							return true
						}
					}
				}
				return false
			}
			inNamespace := func(ns string) func(networkingv1.NetworkPolicyPeer) bool {
				return func(p networkingv1.NetworkPolicyPeer) bool {
					return p.NamespaceSelector != nil && p.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == ns
				}
			}
			sameNamespace := func(app string) func(networkingv1.NetworkPolicyPeer) bool {
				return func(p networkingv1.NetworkPolicyPeer) bool {
					return p.NamespaceSelector == nil && p.PodSelector != nil && p.PodSelector.MatchLabels["app.kubernetes.io/name"] == app
				}
			}
			public := func(p networkingv1.NetworkPolicyPeer) bool {
				return p.IPBlock != nil && p.IPBlock.CIDR == "0.0.0.0/0"
			}

			nats := parseNATSURL(t, env["BILLING_NATS_URL"])
			if !allows(nats.port, corev1.ProtocolTCP, inNamespace(nats.namespace)) {
				t.Errorf("no egress to NATS (namespace %s, port %d)", nats.namespace, nats.port)
			}
			if !allows(443, corev1.ProtocolTCP, public) {
				t.Error("no egress to Entra ID and ARM (443)")
			}
			if !allows(53, corev1.ProtocolUDP, inNamespace("kube-system")) || !allows(53, corev1.ProtocolTCP, inNamespace("kube-system")) {
				t.Error("no egress to the cluster DNS")
			}
			if ep := env["OTEL_EXPORTER_OTLP_ENDPOINT"]; ep != "" {
				u, err := url.Parse(ep)
				if err != nil {
					t.Fatal(err)
				}
				port, _ := strconv.Atoi(u.Port())
				if !allows(port, corev1.ProtocolTCP, sameNamespace("otel-collector")) {
					t.Errorf("no egress to the collector (port %d)", port)
				}
			}
		})
	}
}

// TestAutoscaling: one autoscaler per overlay (two would fight over the
// replica count), none in development, and it targets the worker.
func TestAutoscaling(t *testing.T) {
	t.Parallel()
	want := map[string]string{"base": "keda", "overlays/dev": "none", "overlays/production": "keda", "overlays/hpa": "hpa",
		"helm": "keda", "helm:all": "keda", "helm:no-keda": "none"}
	for dir, kind := range want {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			d := r.deployment(t, workerDeployment)
			sos, hpas := r.find("ScaledObject", ""), r.find("HorizontalPodAutoscaler", "")
			switch kind {
			case "none":
				if len(sos)+len(hpas) != 0 || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
					t.Error("development: want one replica and no autoscaler")
				}
				if len(r.find("TriggerAuthentication", "")) != 0 {
					t.Error("development: a TriggerAuthentication without KEDA")
				}
			case "keda":
				if len(sos) != 1 || len(hpas) != 0 {
					t.Fatalf("want one ScaledObject and no HPA, have %d and %d", len(sos), len(hpas))
				}
				if d.Spec.Replicas != nil {
					t.Error("spec.replicas is set: every apply would reset KEDA's count")
				}
			case "hpa":
				if len(hpas) != 1 || len(sos) != 0 || len(r.find("TriggerAuthentication", "")) != 0 {
					t.Fatalf("want one HPA and no KEDA objects, have %d HPA, %d ScaledObject", len(hpas), len(sos))
				}
				if d.Spec.Replicas != nil {
					t.Error("spec.replicas is set: every apply would reset the HPA's count")
				}
				h := hpas[0].typed.(*autoscalingv2.HorizontalPodAutoscaler)
				ref := h.Spec.ScaleTargetRef
				if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
					t.Errorf("HPA targets %+v", ref)
				}
				if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
					t.Errorf("HPA replicas %v..%d", h.Spec.MinReplicas, h.Spec.MaxReplicas)
				}
				if len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
					t.Error("HPA: want a CPU utilization metric")
				}
				if h.Namespace != d.Namespace {
					t.Errorf("HPA in namespace %q, Deployment in %q", h.Namespace, d.Namespace)
				}
			}
		})
	}
}

// TestCollector: the worker's OTLP endpoint is the collector's Service and
// port for its protocol; the collector's receivers listen where its
// container and Service say; every pipeline uses defined components.
func TestCollector(t *testing.T) {
	t.Parallel()
	var cfg struct {
		Receivers struct {
			OTLP struct {
				Protocols map[string]struct {
					Endpoint string `json:"endpoint"`
				} `json:"protocols"`
			} `json:"otlp"`
		} `json:"receivers"`
		Processors map[string]any `json:"processors"`
		Exporters  map[string]any `json:"exporters"`
		Extensions map[string]any `json:"extensions"`
		Service    struct {
			Extensions []string `json:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `json:"receivers"`
				Processors []string `json:"processors"`
				Exporters  []string `json:"exporters"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	r := render(t, "../otel-collector")
	cm := r.configMap(t, "otel-collector")
	if err := strictYAML([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("collector config.yaml: %v", err)
	}
	if _, ok := cfg.Exporters["debug"]; !ok {
		t.Error("collector: no debug exporter")
	}
	for name, p := range cfg.Service.Pipelines {
		for _, rc := range p.Receivers {
			if rc != "otlp" {
				t.Errorf("pipeline %s: undefined receiver %s", name, rc)
			}
		}
		for _, pr := range p.Processors {
			if _, ok := cfg.Processors[pr]; !ok {
				t.Errorf("pipeline %s: undefined processor %s", name, pr)
			}
		}
		for _, ex := range p.Exporters {
			if _, ok := cfg.Exporters[ex]; !ok {
				t.Errorf("pipeline %s: undefined exporter %s", name, ex)
			}
		}
	}
	for _, ext := range cfg.Service.Extensions {
		if _, ok := cfg.Extensions[ext]; !ok {
			t.Errorf("undefined extension %s", ext)
		}
	}
	for _, sig := range []string{"traces", "metrics", "logs"} {
		if _, ok := cfg.Service.Pipelines[sig]; !ok {
			t.Errorf("no %s pipeline", sig)
		}
	}
	d := r.deployment(t, "otel-collector")
	c := container(t, &d.Spec.Template.Spec, "otel-collector")
	svc := r.one(t, "Service", "otel-collector").typed.(*corev1.Service)
	servicePort := map[string]int{} // OTLP protocol -> Service port
	for proto, portName := range map[string]string{"grpc": "otlp-grpc", "http": "otlp-http"} {
		ep := cfg.Receivers.OTLP.Protocols[proto].Endpoint
		_, p, err := net.SplitHostPort(ep)
		if err != nil {
			t.Fatalf("otlp %s endpoint %q: %v", proto, ep, err)
		}
		if got := resolvePort(c, intstr.FromString(portName)); strconv.Itoa(got) != p {
			t.Errorf("otlp %s listens on %s, container port %s is %d", proto, p, portName, got)
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Name == portName {
				if resolvePort(c, sp.TargetPort) != resolvePort(c, intstr.FromString(portName)) {
					t.Errorf("Service port %s targets %s", sp.Name, sp.TargetPort.String())
				}
				servicePort[proto] = int(sp.Port)
			}
		}
	}
	if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("the collector Service does not select the collector")
	}

	for _, dir := range overlays {
		env := workerEnv(t, render(t, dir))
		u, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
		if err != nil || u.Host == "" {
			t.Fatalf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %q", dir, env["OTEL_EXPORTER_OTLP_ENDPOINT"])
		}
		proto := env["OTEL_EXPORTER_OTLP_PROTOCOL"]
		if proto == "http/protobuf" || proto == "http/json" {
			proto = "http"
		}
		if u.Hostname() != svc.Name || u.Port() != strconv.Itoa(servicePort[proto]) {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT %s is not the collector's %s port (%s:%d)", dir, u, proto, svc.Name, servicePort[proto])
		}
		if len(render(t, dir).find("Deployment", "otel-collector")) != 1 {
			t.Errorf("%s: the collector the worker points at is not deployed with it", dir)
		}
	}
}

// strictYAML decodes YAML into v, failing on unknown fields.
func strictYAML(b []byte, v any) error {
	docs, err := splitYAML(b)
	if err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("want one document, have %d", len(docs))
	}
	return strictUnmarshal(docs[0], v)
}

// TestKEDA validates KEDA's objects against the CRDs of the KEDA release
// the README installs, made strict (no field the CRD does not define), and
// the nats-jetstream triggers against the parameters KEDA's scaler reads.
// The triggers must cover both consumers of the worker's work stream.
func TestKEDA(t *testing.T) {
	t.Parallel()
	so := loadCRD(t, "keda.sh_scaledobjects.yaml", scaledObjectGVK.Version)
	ta := loadCRD(t, "keda.sh_triggerauthentications.yaml", triggerAuthenticationGVK.Version)
	known := map[string]bool{
		"!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": true,
	}
	for _, rule := range append(so.celRules, ta.celRules...) {
		if !known[rule] {
			t.Errorf("KEDA's CRD has a validation rule this test does not check: %s", rule)
		}
	}
	params := scalerParams(t, "nats_jetstream_scaler.go", "natsJetStreamMetadata")
	builder := string(readFile(t, kedaDir(t)+"/pkg/scaling/scalers_builder.go"))

	for _, dir := range []string{"base", "overlays/production", "helm", "helm:all"} {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			env := workerEnv(t, r)
			cfg := workerConfig(t, env)
			d := r.deployment(t, workerDeployment)

			auths := map[string]*triggerAuthentication{}
			for _, o := range r.find("TriggerAuthentication", "") {
				if err := ta.validate(o.json); err != nil {
					t.Errorf("%s does not match KEDA's CRD: %v", o, err)
				}
				var a triggerAuthentication
				if err := kjsonUnmarshalLoose(o.json, &a); err != nil {
					t.Fatal(err)
				}
				auths[o.name] = &a
				for _, s := range a.Spec.SecretTargetRef {
					if s.Name != natsSecret {
						t.Errorf("%s reads Secret %s; the operator creates %s", o, s.Name, natsSecret)
					}
				}
			}

			o := r.one(t, "ScaledObject", "billing-worker")
			if err := so.validate(o.json); err != nil {
				t.Fatalf("%s does not match KEDA's CRD: %v", o, err)
			}
			var s scaledObject
			if err := kjsonUnmarshalLoose(o.json, &s); err != nil {
				t.Fatal(err)
			}
			if s.Spec.ScaleTargetRef.Name != d.Name || (s.Spec.ScaleTargetRef.Kind != "" && s.Spec.ScaleTargetRef.Kind != "Deployment") {
				t.Errorf("ScaledObject targets %+v", s.Spec.ScaleTargetRef)
			}
			if s.Spec.MinReplicaCount == nil || s.Spec.MaxReplicaCount == nil {
				t.Error("set minReplicaCount and maxReplicaCount explicitly (KEDA's defaults are 0 and 100)")
			} else if lo, hi := *s.Spec.MinReplicaCount, *s.Spec.MaxReplicaCount; lo < 1 || lo > hi {
				// Also KEDA's CEL rule on the CRD (min <= max).
				t.Errorf("replicas %d..%d: want 1 <= min <= max", lo, hi)
			}
			if s.Namespace != d.Namespace {
				t.Errorf("ScaledObject in namespace %q, Deployment in %q", s.Namespace, d.Namespace)
			}

			stream := messages.NewLayout(cfg.Prefix).WorkStream()
			consumers := map[string]bool{}
			for i, tr := range s.Spec.Triggers {
				if !strings.Contains(builder, `case "`+tr.Type+`":`) {
					t.Errorf("trigger %d: KEDA %s has no scaler %q", i, kedaVersion, tr.Type)
				}
				if tr.Type != "nats-jetstream" {
					t.Errorf("trigger %d: type %s, want nats-jetstream", i, tr.Type)
					continue
				}
				checkTrigger(t, i, tr, params, auths)
				if tr.Metadata["stream"] != stream {
					t.Errorf("trigger %d: stream %s, the worker's work stream is %s", i, tr.Metadata["stream"], stream)
				}
				consumers[tr.Metadata["consumer"]] = true
				checkMonitoringEndpoint(t, tr.Metadata["natsServerMonitoringEndpoint"], env)
			}
			want := map[string]bool{worker.RequestsConsumer: true, worker.PollsConsumer: true}
			if fmt.Sprint(consumers) != fmt.Sprint(want) {
				t.Errorf("triggers on consumers %v, want the worker's %v", consumers, want)
			}
		})
	}
}

type scaledObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32        `json:"minReplicaCount"`
		MaxReplicaCount *int32        `json:"maxReplicaCount"`
		Triggers        []kedaTrigger `json:"triggers"`
	} `json:"spec"`
}

type kedaTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
	} `json:"authenticationRef"`
}

type triggerAuthentication struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// checkTrigger checks a nats-jetstream trigger's parameters against the
// scaler's own (name, where KEDA reads it from, value type), and that
// every required one is given, in the metadata or the authentication.
func checkTrigger(t *testing.T, i int, tr kedaTrigger, params map[string]scalerParam, auths map[string]*triggerAuthentication) {
	t.Helper()
	given := map[string]bool{}
	for k, v := range tr.Metadata {
		p, ok := params[k]
		switch {
		case !ok:
			t.Errorf("trigger %d: KEDA's nats-jetstream scaler has no parameter %q", i, k)
		case !p.from("triggerMetadata"):
			t.Errorf("trigger %d: KEDA does not read %q from the trigger's metadata", i, k)
		default:
			if err := checkParamValue(p, v); err != nil {
				t.Errorf("trigger %d: %s=%q: %v", i, k, v, err)
			}
			given[k] = true
		}
	}
	if ref := tr.AuthenticationRef; ref != nil {
		a, ok := auths[ref.Name]
		if !ok || (ref.Kind != "" && ref.Kind != "TriggerAuthentication") {
			t.Errorf("trigger %d: authenticationRef %+v names no TriggerAuthentication of this rendering", i, *ref)
		} else {
			for _, s := range a.Spec.SecretTargetRef {
				p, ok := params[s.Parameter]
				if !ok || !p.from("authParams") {
					t.Errorf("trigger %d: KEDA does not read %q from a TriggerAuthentication", i, s.Parameter)
				}
				given[s.Parameter] = true
			}
		}
	}
	for name, p := range params {
		if !p.optional && !p.hasDef && !given[name] {
			t.Errorf("trigger %d: required parameter %q is not given", i, name)
		}
	}
	if !given["account"] && !given["accountID"] {
		t.Errorf("trigger %d: no account (KEDA needs account or accountID)", i)
	}
}

// checkMonitoringEndpoint: KEDA must reach the monitoring port of the NATS
// release the worker connects to, through its headless Service: in a
// cluster KEDA prefixes the host with each server's name to find the
// consumer's leader.
func checkMonitoringEndpoint(t *testing.T, endpoint string, env map[string]string) {
	t.Helper()
	nats := parseNATSURL(t, env["BILLING_NATS_URL"])
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Errorf("natsServerMonitoringEndpoint %q: %v", endpoint, err)
		return
	}
	want := fmt.Sprintf("%s-headless.%s.svc.cluster.local", nats.release, nats.namespace)
	if host != want {
		t.Errorf("natsServerMonitoringEndpoint host %s, want the headless Service %s of the NATS the worker uses", host, want)
	}
	if p := natsValues(t).monitorPort; port != strconv.Itoa(p) {
		t.Errorf("natsServerMonitoringEndpoint port %s, NATS monitors on %d (deploy/nats/values.yaml)", port, p)
	}
}
