// Package docs holds the documentation pages; its test checks their links.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// pages are the documents whose relative links are checked, from the
// repository's root.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{"../README.md", "../AGENTS.md", "../examples/node/README.md", "../deploy/k8s/README.md"}
	out = append(out, docs...)
	return out
}

var (
	linkRE       = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	inlineCodeRE = regexp.MustCompile("`[^`]*`")
)

// prose returns a page's lines outside fenced code blocks, with inline
// code removed.
func prose(text string) []string {
	var out []string
	fence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if !fence {
			out = append(out, inlineCodeRE.ReplaceAllString(line, ""))
		}
	}
	return out
}

// anchors returns the anchors a renderer gives a page's headings: lower
// case, letters, digits, '-' and '_' kept, spaces made '-', the rest
// dropped; a repeated one gets -1, -2, ...
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	fence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fence = !fence
			continue
		}
		if fence || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[a+"-"+itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// Every relative link of README.md, AGENTS.md and docs/*.md (and of the
// example's and the deployment's READMEs) points at a file that exists,
// and an anchor at a heading of its page.
func TestRelativeLinks(t *testing.T) {
	t.Parallel()
	for _, page := range pages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range prose(string(data)) {
			for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				path := page
				if file != "" {
					path = filepath.Join(filepath.Dir(page), file)
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s links to %s: %v", page, target, err)
						continue
					}
				}
				if anchor == "" || !strings.HasSuffix(path, ".md") {
					continue
				}
				doc, err := os.ReadFile(path)
				if err != nil {
					t.Errorf("%s links to %s: %v", page, target, err)
					continue
				}
				if !anchors(string(doc))[anchor] {
					t.Errorf("%s links to %s: %s has no heading with anchor #%s", page, target, path, anchor)
				}
			}
		}
	}
}

// Every page of docs/ is reached in one link from README.md's table of
// where to go.
func TestEveryPageLinkedFromReadme(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "## Where to go")
	if !ok {
		t.Fatal("README.md has no section Where to go")
	}
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append(docs, "asyncapi.json") {
		if !strings.Contains(table, "](docs/"+d+")") {
			t.Errorf("README.md's Where to go does not link docs/%s", d)
		}
	}
	if len(strings.Split(string(readme), "\n")) > 250 {
		t.Errorf("README.md has more than 250 lines")
	}
}
