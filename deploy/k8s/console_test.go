package k8s

import (
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// consoleSettings are the environment variables the console reads: the
// first column of docs/console.md's console settings table (cmd/console's
// tests hold that table to its flags).
func consoleSettings(t *testing.T) []string {
	t.Helper()
	readme := string(readFile(t, repoRoot+"/docs/console.md"))
	start, end := strings.Index(readme, "<!-- console settings -->"), strings.Index(readme, "<!-- /console settings -->")
	if start < 0 || end < start {
		t.Fatal("docs/console.md has no console settings table")
	}
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(BILLING_[A-Z_]+)` \\|").FindAllStringSubmatch(readme[start:end], -1) {
		names = append(names, m[1])
	}
	return append(names, "BILLING_CONSOLE_TOKEN")
}

// TestConsoleComponent: components/console (in overlays/dev), and the
// chart with console.enabled, runs
// /console from the worker's image, on loopback, read-only, with its own
// NATS user, reachable from no network peer and reaching only NATS and
// DNS; the production overlays leave it out.
func TestConsoleComponent(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{"overlays/dev", "helm:console", "helm:all"} {
		t.Run(dir, func(t *testing.T) { checkConsoleObjects(t, render(t, dir)) })
	}
	for _, dir := range []string{"overlays/production", "overlays/hpa", "helm"} {
		if len(render(t, dir).find("Deployment", "billing-console")) != 0 {
			t.Errorf("%s deploys the console; it is optional (add components/console, or console.enabled)", dir)
		}
	}
}

func checkConsoleObjects(t *testing.T, r *rendering) {
	t.Helper()
	d := r.deployment(t, "billing-console")
	c := container(t, &d.Spec.Template.Spec, "console")
	w := container(t, &r.deployment(t, workerDeployment).Spec.Template.Spec, workerContainer)
	if c.Image != w.Image || !slices.Equal(c.Command, []string{"/console"}) {
		t.Errorf("console container: image %q command %q; want the worker's image %q and /console", c.Image, c.Command, w.Image)
	}
	if len(c.Ports) != 0 {
		t.Errorf("the console declares ports %v; it listens on loopback", c.Ports)
	}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Fatalf("envFrom %+v: only ConfigMaps", ef)
		}
		for k, v := range r.configMap(t, ef.ConfigMapRef.Name).Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	known := consoleSettings(t)
	for k := range env {
		if !slices.Contains(known, k) {
			t.Errorf("the console does not read %s", k)
		}
	}
	host, _, err := net.SplitHostPort(env["BILLING_CONSOLE_LISTEN"])
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Errorf("BILLING_CONSOLE_LISTEN=%q: want a loopback address", env["BILLING_CONSOLE_LISTEN"])
	}
	if v, ok := env["BILLING_CONSOLE_WRITE"]; ok {
		if b, err := strconv.ParseBool(v); err != nil || b {
			t.Errorf("BILLING_CONSOLE_WRITE=%q: the component is read-only", v)
		}
	}
	// The NATS credentials: the mounted Secret's file.
	creds := env["BILLING_NATS_CREDS"]
	found := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(creds) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "billing-console-nats" {
				for _, it := range v.Secret.Items {
					found = found || it.Path == path.Base(creds)
				}
			}
		}
	}
	if !found {
		t.Errorf("BILLING_NATS_CREDS=%s is not a file of the mounted Secret billing-console-nats", creds)
	}

	np := r.one(t, "NetworkPolicy", "billing-console").typed.(*networkingv1.NetworkPolicy)
	if !labelSelects(t, &np.Spec.PodSelector, d.Spec.Template.Labels) {
		t.Fatal("the NetworkPolicy does not select the console pod")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || len(np.Spec.Ingress) != 0 {
		t.Error("the console's NetworkPolicy must deny every ingress")
	}
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			if port := p.Port.IntValue(); port != 53 && port != 4222 {
				t.Errorf("the console may reach port %d; it needs NATS and DNS only", port)
			}
		}
	}

}
