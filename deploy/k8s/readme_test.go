package k8s

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadme: the deployment guide installs the KEDA release the tests
// check against, keeps its Capacity placeholders visible until BENCHMARKS.md
// fills them, covers every overlay, and its relative links resolve.
func TestReadme(t *testing.T) {
	t.Parallel()
	doc := string(readFile(t, "README.md"))
	if !strings.Contains(doc, "--version "+strings.TrimPrefix(kedaVersion, "v")) {
		t.Errorf("README.md does not install KEDA %s, the version whose CRDs the tests use", kedaVersion)
	}
	if !strings.Contains(doc, "\n## Capacity\n") {
		t.Error(`README.md has no "Capacity" section`)
	}
	for _, dir := range overlays {
		if !strings.Contains(doc, "`deploy/k8s/"+dir+"`") {
			t.Errorf("README.md does not describe %s", dir)
		}
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`).FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.FromSlash(m[1])); err != nil {
			t.Errorf("README.md links to %s: %v", m[1], err)
		}
	}
}
