package console_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// download gets u and returns the response with its whole body (or the
// error reading it).
func download(t *testing.T, c *http.Client, u string) (*http.Response, []byte, error) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// An archived document is handed out from the console, read-only mode
// included: the emulator's bytes, with the archive's digest, content type
// and file name; the page has the button. Turned off, both are gone. A
// document replaced in the store after its event is refused.
func TestDocumentDownload(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	const inv = "G000000421"
	tb.stack.Emulator.SetDownload(inv, emulator.Download{Size: 200<<10 + 3}) // more than what is held back
	id := tb.submit(t, messages.KindInvoiceSummary, "dl-1", inv)
	st := tb.state(t, id, client.Phase.Terminal)
	if st.Completed == nil || st.Completed.Archive == nil || st.Completed.Archive.Error != nil {
		t.Fatalf("not archived: %+v", st.Completed)
	}
	a := st.Completed.Archive
	c := httpClient(t)
	_, page := get(t, c, tb.url+"/operations/"+id)
	if !strings.Contains(page, `id="download" href="/operations/`+id+`/document"`) {
		t.Errorf("the operation's page has no download button: %s", page)
	}

	res, body, err := download(t, c, tb.url+"/operations/"+id+"/document")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("download: %d %v", res.StatusCode, err)
	}
	sum := sha256.Sum256(body)
	want, _ := io.ReadAll(emulator.Document(path.Base(a.Name), a.Size))
	served := tb.stack.Emulator.ServedFor(inv)
	if len(served) == 0 || hex.EncodeToString(sum[:]) != served[len(served)-1].SHA256 || hex.EncodeToString(sum[:]) != a.SHA256 ||
		!bytes.Equal(body, want) || int64(len(body)) != a.Size {
		t.Errorf("downloaded %d bytes, SHA-256 %x; the archive says %d, %s; the emulator served %+v", len(body), sum, a.Size, a.SHA256, served)
	}
	if ct := res.Header.Get("Content-Type"); ct != a.ContentType || ct != "application/pdf" {
		t.Errorf("content type %q, archive %q", ct, a.ContentType)
	}
	if _, params, err := mime.ParseMediaType(res.Header.Get("Content-Disposition")); err != nil || params["filename"] != path.Base(a.Name) {
		t.Errorf("disposition %q (%v), want the file name %q", res.Header.Get("Content-Disposition"), err, path.Base(a.Name))
	}

	// Turned off: no button, and the address refuses.
	off := serveConsole(t, tb.stack, console.Options{NoDownloads: true})
	if _, page := get(t, c, off.url+"/operations/"+id); strings.Contains(page, "/document") {
		t.Error("downloads off: the page still offers one")
	}
	if res, _, _ := download(t, c, off.url+"/operations/"+id+"/document"); res.StatusCode != http.StatusForbidden {
		t.Errorf("downloads off: %d", res.StatusCode)
	}
	// Not archived (an invoice has no document): a clear 404.
	inv2 := tb.submit(t, messages.KindInvoice, "dl-invoice", "G000000422")
	tb.state(t, inv2, client.Phase.Terminal)
	if res, body, _ := download(t, c, tb.url+"/operations/"+inv2+"/document"); res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "No archived document") {
		t.Errorf("not archived: %d %s", res.StatusCode, body)
	}

	// Tampered: another content under the object's name.
	js, err := jetstream.New(tb.stack.Conn)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(context.Background(), a.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(context.Background(), a.Name, []byte("%PDF-1.4 not the invoice")); err != nil {
		t.Fatal(err)
	}
	res, body, _ = download(t, c, tb.url+"/operations/"+id+"/document")
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "does not match") || bytes.Contains(body, []byte("not the invoice")) {
		t.Errorf("tampered: %d %s", res.StatusCode, body)
	}
}

// The trace id links to the tracing backend through the template, its
// value escaped; a template without {trace_id} or not http(s) is refused.
func TestTraceLink(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req := messages.Request{Version: 1, ID: "traced-1", Kind: messages.KindInvoice,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G000000431"}}
	if _, err := tb.stack.Client.Submit(context.Background(), req, nats.Header{"traceparent": {"00-" + traceID + "-b7ad6b7169203331-01"}}); err != nil {
		t.Fatal(err)
	}
	st := tb.state(t, req.ID, client.Phase.Terminal)
	if !strings.Contains(st.TraceParent, traceID) {
		t.Fatalf("stored traceparent %q", st.TraceParent)
	}
	linked := serveConsole(t, tb.stack, console.Options{TraceURL: "https://grafana.internal/explore?left={\"queries\":[{\"query\":\"{trace_id}\"}]}"})
	c := httpClient(t)
	_, page := get(t, c, linked.url+"/operations/"+req.ID)
	if !strings.Contains(page, `id="trace-link" href="https://grafana.internal/explore?left=%7b%22queries%22:[%7b%22query%22:%22`+traceID+`%22%7d]%7d"`) {
		t.Errorf("no trace link from the template: %s", page)
	}
	if _, page := get(t, c, tb.url+"/operations/"+req.ID); strings.Contains(page, "trace-link") {
		t.Error("a trace link without a template")
	}
	for _, bad := range []string{"https://jaeger.internal/trace/", "javascript:alert('{trace_id}')", "/trace/{trace_id}"} {
		if _, err := console.New(console.Options{Client: tb.stack.Client, TraceURL: bad}); err == nil {
			t.Errorf("trace URL %q accepted", bad)
		}
	}
}

// A failed request links to its dead letter: one rejected as invalid has
// no stored operation, and its page is made from its failure event.
func TestFailedLinksToDeadLetter(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	seq := tb.deadLetter(t, `{"version":1,"id":"rejected-1","kind":"invoice-summary","params":{}}`)
	// Its failure event is published after the dead letter is kept.
	testwait.For(t, 15*time.Second, "the rejection's failure event", func() bool {
		o, ok, err := tb.stack.Client.Last(context.Background(), "rejected-1")
		return err == nil && ok && o.Failed != nil
	})
	c := httpClient(t)
	code, page := get(t, c, tb.url+"/operations/rejected-1")
	link := `<a href="/deadletters/` + strconv.FormatUint(seq, 10) + `">`
	if code != http.StatusOK || !strings.Contains(page, link) || !strings.Contains(page, "invalid_request") || !strings.Contains(page, `id="rejected"`) {
		t.Errorf("rejected request's page: %d %s", code, page)
	}
	if code, _ := get(t, c, tb.url+"/deadletters/"+strconv.FormatUint(seq, 10)); code != http.StatusOK {
		t.Errorf("its dead letter: %d", code)
	}
	// Once the dead letter is deleted, no link.
	if err := tb.stack.Client.DeleteDeadLetter(context.Background(), seq); err != nil {
		t.Fatal(err)
	}
	if _, page := get(t, c, tb.url+"/operations/rejected-1"); strings.Contains(page, link) || !strings.Contains(page, "no longer kept") {
		t.Errorf("after the delete: %s", page)
	}
	// An id nothing was said about: 404.
	if code, _ := get(t, c, tb.url+"/operations/never-seen"); code != http.StatusNotFound {
		t.Errorf("unknown id: %d", code)
	}
}
