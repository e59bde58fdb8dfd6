package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"https://x.blob.core.windows.net/c/f.pdf?sv=2023-11-03&se=2026-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D",
			"https://x.blob.core.windows.net/c/f.pdf?se=2026-01-01T00%3A00%3A00Z&sig=REDACTED&sv=2023-11-03"},
		{"https://user:pw@host/p", "https://REDACTED@host/p"},
		{"https://host/p?api-version=2024-04-01", "https://host/p?api-version=2024-04-01"},
		{"https://host/p?Signature=x&code=y", "https://host/p?Signature=REDACTED&code=REDACTED"},
	}
	for _, c := range cases {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	in := `Get "https://h/f?sv=1&sig=SECRETSIG&se=2": Authorization: Bearer eyJ0eXAi.abc-def_ghi; {"access_token":"TOKEN1","client_secret": "S3CRET"} url=https://h/x?client_secret=S2`
	out := String(in)
	for _, secret := range []string{"SECRETSIG", "eyJ0eXAi", "TOKEN1", "S3CRET", "S2"} {
		if strings.Contains(out, secret) {
			t.Errorf("String left %q in %q", secret, out)
		}
	}
	if !strings.Contains(out, "sv=1") || !strings.Contains(out, "se=2") {
		t.Errorf("String removed harmless parameters: %q", out)
	}
}

func TestStringBareParameters(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"sig=SECRET", "denied; sig=SECRET; retry", "(signature=SECRET)", "Access_Token=SECRET", "00sig=SECRET0",
		`Post "https://management.azure.com/x/download?api-version=2020-05-01&downloadToken=SECRET": EOF`, "X-Amz-Signature=SECRET"} {
		if out := String(in); strings.Contains(out, "SECRET") {
			t.Errorf("String(%q) = %q", in, out)
		}
	}
	if out := String("design=keep&api-version=keep"); out != "design=keep&api-version=keep" {
		t.Errorf("String changed harmless parameters: %q", out)
	}
}
