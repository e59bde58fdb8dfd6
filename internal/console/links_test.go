package console

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The trace id is escaped wherever the template puts it.
func TestTraceLinkEscapes(t *testing.T) {
	t.Parallel()
	for tmpl, want := range map[string]string{
		"https://jaeger.internal/trace/{trace_id}":         "https://jaeger.internal/trace/a%2Fb%3Fc%3Dd%26e%20f",
		"https://tempo.internal/search?traceID={trace_id}": "https://tempo.internal/search?traceID=a%2Fb%3Fc%3Dd%26e%20f",
	} {
		if got := traceLink(tmpl, "a/b?c=d&e f"); got != want {
			t.Errorf("%s: %s, want %s", tmpl, got, want)
		}
	}
	if traceLink("", "abc") != "" || traceLink("https://x.internal/{trace_id}", "") != "" {
		t.Error("a link without a template or an id")
	}
}

// What a download writes passes through only once the last bytes are
// released: a document refused at its end never arrives whole.
func TestHoldbackKeepsTheTail(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	started := 0
	h := &holdback{w: rec, start: func() { started++ }}
	data := strings.Repeat("x", 3*holdbackBytes+5)
	for i := 0; i < len(data); i += 1000 {
		if _, err := h.Write([]byte(data[i:min(i+1000, len(data))])); err != nil {
			t.Fatal(err)
		}
	}
	if started != 1 || rec.Body.Len() != len(data)-holdbackBytes {
		t.Fatalf("started %d times, %d bytes through of %d", started, rec.Body.Len(), len(data))
	}
	if err := h.flush(); err != nil || rec.Body.String() != data {
		t.Errorf("flushed: %v, %d bytes", err, rec.Body.Len())
	}
}
