package k8s

import (
	"fmt"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// natsChartValues is what deploy/nats/values.yaml may set of the NATS Helm
// chart's values (1.x). Decoding is strict, so a misspelt or outdated key
// (such as the 0.x chart's nats.jetstream.fileStorage) fails.
type natsChartValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled          bool   `json:"enabled"`
					Size             string `json:"size"`
					StorageClassName string `json:"storageClassName"`
				} `json:"pvc"`
				MaxSize string `json:"maxSize"`
			} `json:"fileStore"`
			MemoryStore struct {
				Enabled bool   `json:"enabled"`
				MaxSize string `json:"maxSize"`
			} `json:"memoryStore"`
		} `json:"jetstream"`
		Monitor struct {
			Enabled bool `json:"enabled"`
			Port    int  `json:"port"`
		} `json:"monitor"`
		NATS struct {
			Port int `json:"port"`
			TLS  struct {
				Enabled    bool   `json:"enabled"`
				SecretName string `json:"secretName"`
			} `json:"tls"`
		} `json:"nats"`
		Resolver struct {
			Enabled bool           `json:"enabled"`
			Merge   map[string]any `json:"merge"`
			PVC     struct {
				Size             string `json:"size"`
				StorageClassName string `json:"storageClassName"`
			} `json:"pvc"`
		} `json:"resolver"`
		Merge map[string]any `json:"merge"`
	} `json:"config"`
	Container struct {
		Image struct {
			Repository string `json:"repository"`
			Tag        string `json:"tag"`
		} `json:"image"`
		Merge map[string]any    `json:"merge"`
		Env   map[string]string `json:"env"`
		Patch []jsonPatchOp     `json:"patch"`
	} `json:"container"`
	PodTemplate struct {
		Patch                     []jsonPatchOp `json:"patch"`
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints"`
	} `json:"podTemplate"`
	PodDisruptionBudget struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget"`
	NatsBox struct {
		Enabled bool `json:"enabled"`
	} `json:"natsBox"`
	// The chart's prometheus-nats-exporter sidecar and its PodMonitor.
	PromExporter struct {
		Enabled    bool `json:"enabled"`
		Port       int  `json:"port"`
		PodMonitor struct {
			Enabled bool `json:"enabled"`
		} `json:"podMonitor"`
	} `json:"promExporter"`

	monitorPort int
}

type jsonPatchOp struct {
	Op    string         `json:"op"`
	Path  string         `json:"path"`
	Value map[string]any `json:"value"`
}

var (
	natsValuesOnce sync.Once
	natsValuesVal  *natsChartValues
	natsValuesErr  error
)

func natsValues(t *testing.T) *natsChartValues {
	t.Helper()
	natsValuesOnce.Do(func() {
		var v natsChartValues
		natsValuesErr = strictYAML(readFile(t, repoRoot+"/deploy/nats/values.yaml"), &v)
		v.monitorPort = v.Config.Monitor.Port
		natsValuesVal = &v
	})
	if natsValuesErr != nil {
		t.Fatalf("deploy/nats/values.yaml: %v", natsValuesErr)
	}
	return natsValuesVal
}

// semver parses "2.12.1" (and "2.12.1-alpine") into numbers.
func semver(v string) ([3]int, error) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, fmt.Errorf("%q is not major.minor.patch", v)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return out, fmt.Errorf("%q: %w", v, err)
		}
		out[i] = n
	}
	return out, nil
}

// testedNATSServer is the nats-server version this module (deploy/go.mod)
// builds with: the one TestWorkerUnderDeployedPermissions runs the worker
// against. It must be the worker's own (the root go.mod's, which dev mode
// and the worker's tests embed), so that the deployed server is the one
// both modules test.
func testedNATSServer(t *testing.T) string {
	t.Helper()
	version := func(dir string) string {
		cmd := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}", "github.com/nats-io/nats-server/v2")
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -m nats-server (in %s): %v", dir, err)
		}
		return strings.TrimSpace(string(out))
	}
	here, worker := version("."), version(repoRoot)
	if here != worker {
		t.Errorf("deploy/go.mod builds with nats-server %s, the worker's go.mod with %s: run go mod tidy in deploy/ (or align the root go.mod)", here, worker)
	}
	return here
}

// TestNATSValues: the NATS chart values give what the worker and KEDA need:
// a three-node JetStream cluster on file storage (production streams have
// 3 replicas), the monitoring port KEDA reads, the client port and TLS the
// worker connects with, operator mode, and a server version with message
// schedules, the very one the tests run.
func TestNATSValues(t *testing.T) {
	t.Parallel()
	v := natsValues(t)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster: enabled %v, %d replicas; want a three-node cluster", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	for _, dir := range []string{"overlays/production", "overlays/hpa"} {
		cfg := workerConfig(t, workerEnv(t, render(t, dir)))
		if cfg.Replicas > c.Cluster.Replicas {
			t.Errorf("%s: BILLING_REPLICAS=%d exceeds the NATS cluster's %d nodes", dir, cfg.Replicas, c.Cluster.Replicas)
		}
	}
	js := c.JetStream
	if !js.Enabled || !js.FileStore.Enabled || !js.FileStore.PVC.Enabled {
		t.Error("jetstream: want JetStream with file storage on a persistent volume")
	}
	size, err := resource.ParseQuantity(js.FileStore.PVC.Size)
	if err != nil {
		t.Errorf("jetstream.fileStore.pvc.size %q: %v", js.FileStore.PVC.Size, err)
	}
	if max, err := resource.ParseQuantity(js.FileStore.MaxSize); err != nil || max.Cmp(size) >= 0 {
		t.Errorf("jetstream.fileStore.maxSize %q: want a quantity below the volume (%s)", js.FileStore.MaxSize, js.FileStore.PVC.Size)
	}
	if !c.Monitor.Enabled || c.Monitor.Port == 0 {
		t.Error("monitor: KEDA's nats-jetstream scaler needs the monitoring port")
	}
	// Stream and consumer figures for Prometheus (the dashboard's backlog).
	if pe := v.PromExporter; !pe.Enabled || !pe.PodMonitor.Enabled || pe.Port == c.Monitor.Port {
		t.Errorf("promExporter: want the exporter and its PodMonitor enabled, on a port of its own (have %+v)", pe)
	}

	natsPort := c.NATS.Port
	if natsPort == 0 {
		natsPort = 4222 // the chart's default
	}
	for _, dir := range overlays {
		nats := parseNATSURL(t, workerEnv(t, render(t, dir))["BILLING_NATS_URL"])
		if nats.port != natsPort {
			t.Errorf("%s: the worker connects to port %d, NATS listens on %d", dir, nats.port, natsPort)
		}
		if dir != "overlays/dev" && (nats.scheme != "tls") != !c.NATS.TLS.Enabled {
			t.Errorf("%s: the worker connects with %s://, NATS TLS enabled = %v", dir, nats.scheme, c.NATS.TLS.Enabled)
		}
	}
	if c.NATS.TLS.Enabled && c.NATS.TLS.SecretName == "" {
		t.Error("nats.tls: no secretName")
	}

	// Operator mode: the full resolver, and auth.conf from ConfigMap nats-auth.
	if !c.Resolver.Enabled || c.Resolver.Merge["type"] != "full" {
		t.Error("resolver: want the full (NATS-based) account resolver")
	}
	inc, _ := c.Merge["$include"].(string)
	includePath := path.Join("/etc/nats-config", inc)
	var mount, volume string
	for _, p := range v.Container.Patch {
		if p.Op == "add" && p.Path == "/volumeMounts/-" && strings.HasPrefix(includePath, fmt.Sprint(p.Value["mountPath"])+"/") {
			mount = fmt.Sprint(p.Value["name"])
		}
	}
	for _, p := range v.PodTemplate.Patch {
		if p.Op == "add" && p.Path == "/spec/volumes/-" && fmt.Sprint(p.Value["name"]) == mount {
			cm, _ := p.Value["configMap"].(map[string]any)
			volume = fmt.Sprint(cm["name"])
		}
	}
	if inc == "" || mount == "" || volume != "nats-auth" {
		t.Errorf("config.merge.$include %q (%s) is not in a volume from ConfigMap nats-auth (mount %q, volume from %q)", inc, includePath, mount, volume)
	}

	for _, key := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
		if _, ok := v.PodTemplate.TopologySpreadConstraints[key]; !ok {
			t.Errorf("podTemplate.topologySpreadConstraints: nothing on %s", key)
		}
	}

	// The server version: schedules need 2.12; and it must be the tested one.
	if v.Container.Image.Repository != "nats" {
		t.Errorf("container.image.repository %q, want the official nats image", v.Container.Image.Repository)
	}
	tag, err := semver(v.Container.Image.Tag)
	if err != nil {
		t.Fatalf("container.image.tag: %v (pin a version)", err)
	}
	if tag[0] != 2 || tag[1] < 12 {
		t.Errorf("container.image.tag %s: the worker needs nats-server 2.12 or newer (message schedules)", v.Container.Image.Tag)
	}
	tested := testedNATSServer(t)
	if tv, err := semver(tested); err != nil || tv != tag {
		t.Errorf("container.image.tag %s, but the tests run nats-server %s (go.mod, deploy/go.mod): deploy what is tested", v.Container.Image.Tag, tested)
	}
}

// natsPermissions is deploy/nats/permissions.yaml.
type natsPermissions struct {
	Users map[string]struct {
		Publish struct {
			Allow []string `json:"allow"`
		} `json:"publish"`
		Subscribe struct {
			Allow []string `json:"allow"`
		} `json:"subscribe"`
	} `json:"users"`
}

func loadPermissions(t *testing.T) natsPermissions {
	t.Helper()
	var p natsPermissions
	if err := strictYAML(readFile(t, repoRoot+"/deploy/nats/permissions.yaml"), &p); err != nil {
		t.Fatalf("deploy/nats/permissions.yaml: %v", err)
	}
	for _, u := range []string{"billing-worker", "billing-submitter", "billing-scheduler"} {
		if _, ok := p.Users[u]; !ok {
			t.Fatalf("deploy/nats/permissions.yaml: no user %s", u)
		}
	}
	return p
}

// TestNSCScriptGrantsThePermissions: deploy/nats/nsc-setup.sh creates each
// user of permissions.yaml with exactly its permissions.
func TestNSCScriptGrantsThePermissions(t *testing.T) {
	t.Parallel()
	perms := loadPermissions(t)
	script := strings.ReplaceAll(string(readFile(t, repoRoot+"/deploy/nats/nsc-setup.sh")), "\\\n", " ")
	nameRE := regexp.MustCompile(`--name\s+(\S+)`)
	allowRE := regexp.MustCompile(`--allow-(pub|sub)\s+'([^']*)'`)
	anyAllowRE := regexp.MustCompile(`--(allow|deny)-[a-z]+`)
	seen := map[string]bool{}
	for _, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "nsc add user") {
			continue
		}
		m := nameRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("nsc add user without --name: %s", line)
			continue
		}
		user := m[1]
		seen[user] = true
		var pub, sub []string
		for _, a := range allowRE.FindAllStringSubmatch(line, -1) {
			if a[1] == "pub" {
				pub = append(pub, a[2])
			} else {
				sub = append(sub, a[2])
			}
		}
		if n := len(anyAllowRE.FindAllString(line, -1)); n != len(pub)+len(sub) {
			t.Errorf("user %s: use only --allow-pub '...' and --allow-sub '...' (single-quoted), one subject each", user)
		}
		want, ok := perms.Users[user]
		if !ok {
			t.Errorf("nsc-setup.sh creates user %s, which permissions.yaml does not list", user)
			continue
		}
		slices.Sort(pub)
		slices.Sort(sub)
		wantPub, wantSub := slices.Sorted(slices.Values(want.Publish.Allow)), slices.Sorted(slices.Values(want.Subscribe.Allow))
		if !slices.Equal(pub, wantPub) {
			t.Errorf("user %s: nsc-setup.sh allows publishing to\n%v\npermissions.yaml:\n%v", user, pub, wantPub)
		}
		if !slices.Equal(sub, wantSub) {
			t.Errorf("user %s: nsc-setup.sh allows subscribing to %v, permissions.yaml %v", user, sub, wantSub)
		}
	}
	for u := range perms.Users {
		if !seen[u] {
			t.Errorf("nsc-setup.sh does not create user %s", u)
		}
	}
}
