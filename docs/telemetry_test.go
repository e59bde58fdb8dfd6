package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// telemetry.md names every metric instrument the code creates, and has a
// row for every alert the monitoring component ships.
func TestTelemetryNamesMetricsAndAlerts(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("telemetry.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	instrument := regexp.MustCompile(`(?:Int64|Float64)(?:Observable)?(?:Counter|UpDownCounter|Histogram|Gauge)\("([a-z][a-z0-9_.]*)"`)
	n := 0
	for _, dir := range []string{"../internal", "../pkg"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range instrument.FindAllStringSubmatch(string(src), -1) {
				n++
				if !strings.Contains(doc, "`"+m[1]+"`") {
					t.Errorf("%s creates metric %s; docs/telemetry.md does not name it", path, m[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 10 {
		t.Errorf("found only %d metric instruments in the code", n)
	}
	rules, err := os.ReadFile("../deploy/k8s/components/monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) == 0 {
		t.Fatal("prometheusrule.yaml has no alerts")
	}
	for _, m := range alerts {
		if !strings.Contains(doc, "| `"+m[1]+"` |") {
			t.Errorf("alert %s has no row in docs/telemetry.md's alert table", m[1])
		}
	}
}
