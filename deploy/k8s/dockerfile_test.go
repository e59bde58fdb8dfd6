package k8s

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goDirective is the go line of go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readFile(t, repoRoot+"/go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// dockerfileLines returns the Dockerfile's instructions, continuation
// lines joined and comments dropped.
func dockerfileLines(t *testing.T) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, repoRoot+"/Dockerfile")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// TestDockerfile: a multi-stage build on the Go version of go.mod that
// builds with deploy/build-static.sh (the script CI runs, so both build
// the same binary), into distroless static, as the nonroot user, with the
// binary as entrypoint.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	lines := dockerfileLines(t)
	var from []string
	var runsScript, user, entry, copied string
	for _, l := range lines {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, l)
		case "RUN":
			if strings.Contains(l, "deploy/build-static.sh") {
				runsScript = l
			}
			if strings.Contains(l, "go build") {
				t.Errorf("the Dockerfile runs go build itself (%s); run deploy/build-static.sh so that CI builds the same", l)
			}
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = strings.TrimSpace(strings.TrimPrefix(l, f[0]))
		case "COPY":
			if strings.Contains(l, "--from=") {
				copied = f[len(f)-1]
			}
		}
	}
	if len(from) != 2 {
		t.Fatalf("want two stages (build and runtime), have %d", len(from))
	}
	wantGo := "golang:" + goDirective(t)
	if !strings.Contains(from[0], wantGo+" ") && !strings.HasSuffix(from[0], wantGo) && !strings.Contains(from[0], wantGo+"-") {
		t.Errorf("build stage %q: want %s (go.mod's go directive)", from[0], wantGo)
	}
	if !strings.Contains(from[1], "gcr.io/distroless/static-debian12:nonroot") {
		t.Errorf("runtime stage %q: want gcr.io/distroless/static-debian12:nonroot", from[1])
	}
	if runsScript == "" {
		t.Error("the Dockerfile does not run deploy/build-static.sh")
	}
	out := regexp.MustCompile(`build-static\.sh\s+(\S+)`).FindStringSubmatch(runsScript)
	if out == nil {
		t.Fatalf("%q: give build-static.sh the output path", runsScript)
	}
	if !strings.HasPrefix(user, "nonroot") && !strings.HasPrefix(user, "65532") {
		t.Errorf("USER %q, want nonroot (65532, the runAsUser of the manifests)", user)
	}
	if entry != `["`+copied+`"]` {
		t.Errorf("ENTRYPOINT %s, want [%q] (the binary copied from the build stage)", entry, copied)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "COPY --from=build "+out[1]+" "+copied) {
		t.Errorf("the runtime stage does not copy the built %s", out[1])
	}
	// distroless's nonroot user is uid 65532; a name cannot be checked by
	// the kubelet's runAsNonRoot, so the pods must give the number.
	for _, dir := range overlays {
		d := render(t, dir).deployment(t, workerDeployment)
		if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Errorf("%s: the worker pod's runAsUser must be 65532, the image's nonroot user", dir)
		}
	}
}

// TestBuildStaticScript: the script builds what the issue asks for.
func TestBuildStaticScript(t *testing.T) {
	t.Parallel()
	s := string(readFile(t, repoRoot+"/deploy/build-static.sh"))
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/worker"} {
		if !strings.Contains(s, want) {
			t.Errorf("deploy/build-static.sh does not use %s", want)
		}
	}
}

// dockerignore is a .dockerignore file's patterns, matched as the Docker
// builder does: Go filepath.Match patterns relative to the context root,
// "**" for any number of directories, a pattern excluding a directory
// excludes everything in it, "!" re-includes, and the last match wins.
type dockerignore []struct {
	re     *regexp.Regexp
	negate bool
}

func parseDockerignore(t *testing.T, b []byte) dockerignore {
	t.Helper()
	var d dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(strings.TrimSpace(line))), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case c == '*' && i+1 < len(line) && line[i+1] == '*':
				i++
				if i+1 < len(line) && line[i+1] == '/' {
					i++
					re.WriteString("(.*/)?")
				} else {
					re.WriteString(".*")
				}
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		d = append(d, struct {
			re     *regexp.Regexp
			negate bool
		}{regexp.MustCompile(re.String()), neg})
	}
	return d
}

// excluded reports whether path (slash-separated, relative) is left out.
func (d dockerignore) excluded(path string) bool {
	var parents []string
	for p := path; p != "."; p = filepath.ToSlash(filepath.Dir(p)) {
		parents = append(parents, p)
	}
	out := false
	for _, p := range d {
		for _, cand := range parents {
			if p.re.MatchString(cand) {
				out = !p.negate
				break
			}
		}
	}
	return out
}

// TestImageBuildContext builds the worker exactly as the Dockerfile does,
// without Docker: the files .dockerignore lets into the build context are
// copied to a fresh directory, and deploy/build-static.sh runs there. A
// file the build needs but .dockerignore drops (a go:embed asset, a new
// package) fails here rather than in the image build.
func TestImageBuildContext(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the worker")
	}
	ignore := parseDockerignore(t, readFile(t, repoRoot+"/.dockerignore"))
	ctx := t.TempDir()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if e.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if ignore.excluded(rel) || !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(ctx, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, need := range []string{"go.mod", "go.sum", "deploy/build-static.sh", "cmd/worker/main.go"} {
		if ignore.excluded(need) {
			t.Errorf(".dockerignore leaves out %s", need)
		}
	}
	for _, drop := range []string{".git/config", "deploy/k8s/base/kustomization.yaml", "worker", "README.md", "tools/azurite/package.json", "examples/node/submit.mjs"} {
		if !ignore.excluded(drop) {
			t.Errorf(".dockerignore lets %s into the build context", drop)
		}
	}
	cmd := exec.Command("sh", "deploy/build-static.sh", filepath.Join(t.TempDir(), "worker"))
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building from the image's build context (%d files): %v\n%s", n, err, out)
	}
}
