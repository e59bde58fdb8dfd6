package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/azbilling/worker/internal/version"
)

// -version prints the build's version and exits without connecting.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	lookup := func(string) (string, bool) { return "", false }
	if err := run(context.Background(), []string{"-version"}, lookup, &out, &errb); err != nil {
		t.Fatalf("-version: %v (%s)", err, errb.String())
	}
	if got := strings.TrimSpace(out.String()); got != version.String() || got == "" {
		t.Errorf("-version printed %q, want %q", got, version.String())
	}
}
