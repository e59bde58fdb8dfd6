package console_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

// chromiumPath is Debian's chromium, which .ci/run installs; CHROMIUM
// names another.
func chromiumPath(t *testing.T) string {
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		// Outside CI a missing browser skips these tests, so that
		// go test ./... is green with Go alone; under CI it fails them.
		if os.Getenv("CI") != "" {
			t.Fatalf("the browser tests need Chromium at %s (apt-get install -y chromium; .ci/run installs it), or CHROMIUM=path: %v", p, err)
		}
		t.Skipf("Chromium is not at %s (apt-get install -y chromium, or CHROMIUM=path): browser test skipped", p)
	}
	return p
}

// browserPage is one headless Chromium tab, with what the pages did that
// they should not have: dialogs opened (an alert from injected script),
// exceptions and console errors.
type browserPage struct {
	ctx context.Context

	mu       sync.Mutex
	dialogs  []string
	problems []string
}

func newBrowser(t *testing.T) *browserPage {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browserPage{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatal(err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(d.Type)+": "+d.Message)
			b.mu.Unlock()
			// Close it, or the page would hang; not from this goroutine.
			go func() {
				_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || m.Type == "assert" {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs actions with a deadline.
func (b *browserPage) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](t *testing.T, b *browserPage, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: %s: %v", expr, err)
	}
	return v
}

// until evaluates a JavaScript predicate in the page until it is true,
// through navigations (a form post, a redirect).
func (b *browserPage) until(t *testing.T, what, expr string, timeout time.Duration) {
	t.Helper()
	err := testwait.UntilNoError(timeout, what+" ("+expr+")", func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && !ok {
			err = errors.New("false")
		}
		return err
	})
	if err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		t.Fatalf("browser: %v\npage text:\n%s", err, text)
	}
}

func (b *browserPage) text(t *testing.T, sel string) string {
	t.Helper()
	return eval[string](t, b, fmt.Sprintf("document.querySelector(%q).textContent", sel))
}

// screenshot saves the page as a PNG in CONSOLE_SCREENSHOTS (or the
// test's temporary directory) and returns its path.
func (b *browserPage) screenshot(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// clean fails the test if a page opened a dialog, threw, or logged an
// error other than the expected ones (messages containing one of
// expected); it forgets what it checked.
func (b *browserPage) clean(t *testing.T, expected ...string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dialogs) > 0 {
		t.Errorf("a page opened dialogs (script ran): %q", b.dialogs)
	}
next:
	for _, p := range b.problems {
		for _, e := range expected {
			if strings.Contains(p, e) {
				continue next
			}
		}
		t.Errorf("the console reported: %q", p)
	}
	b.dialogs, b.problems = nil, nil
}

// The console in a real browser against the dev stack: live counts, a
// waiting operation's next wake-up, a completed one's link, the timeline,
// escaping of a hostile dead letter, replay as edited and as it is, delete
// after confirming, and a cross-site form refused.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{Write: true, Token: testToken, Refresh: 300 * time.Millisecond, OverviewCache: 100 * time.Millisecond})
	b := newBrowser(t)

	// The overview, before any request.
	b.do(t, chromedp.Navigate(tb.url+"/"), chromedp.WaitVisible(chromedp.CSS("#recent-received")))
	if got := b.text(t, "#recent-received"); got != "0" {
		t.Fatalf("received before any request: %q", got)
	}
	// A mark that a reload would erase.
	eval[chromedp.Void](t, b, "window.noReload = true")

	// Requests of every kind (a collection comes at the end), one that
	// waits, one that Azure refuses, one throttled first.
	var ids []string
	for i, k := range devstack.ScriptedKinds() {
		ids = append(ids, tb.submit(t, k, fmt.Sprintf("br-%s", k), devstack.InvoiceName("BRW", i+1)))
	}
	slow := tb.submit(t, messages.KindInvoiceSummary, "br-slow", slowInvoice)
	failed := tb.submit(t, messages.KindInvoiceSummary, "br-fail", failInvoice)
	throttled := tb.submit(t, messages.KindInvoicePriceSheet, "br-throttled", throttleInvoc)
	total := len(ids) + 3

	// The counts change without a reload.
	b.until(t, "received counts every request", fmt.Sprintf(`document.querySelector("#recent-received").textContent == "%d"`, total), 20*time.Second)
	b.until(t, "completed and failed counted", fmt.Sprintf(`document.querySelector("#recent-completed").textContent == "%d" && document.querySelector("#recent-failed").textContent == "1"`, len(ids)+1), 30*time.Second)
	b.until(t, "one operation waits", `document.querySelector("#waiting").textContent.trim() == "1"`, 10*time.Second)
	if !eval[bool](t, b, "window.noReload === true") {
		t.Fatal("the overview reloaded; it should refresh in place")
	}
	if nw := b.text(t, "#next-wake"); !strings.Contains(nw, "next wake-up in") || !strings.Contains(nw, slow) {
		t.Errorf("next wake-up: %q", nw)
	}
	if c := b.text(t, "#consumers"); !strings.Contains(c, "requests") || !strings.Contains(c, "polls") {
		t.Errorf("consumers: %q", c)
	}

	// The operations list, filtered by state: the waiting one.
	b.do(t, chromedp.Navigate(tb.url+"/operations?state=waiting"), chromedp.WaitVisible(chromedp.CSS("#operations")))
	if rows := eval[int](t, b, `document.querySelectorAll("#operations tbody tr").length`); rows != 1 || !strings.Contains(b.text(t, "#operations"), slow) {
		t.Errorf("waiting operations: %d rows: %q", rows, b.text(t, "#operations"))
	}
	// Open it: its next wake-up and its first call.
	b.do(t, chromedp.Click(chromedp.CSS(`#operations a[href="/operations/br-slow"]`)), chromedp.WaitVisible(chromedp.CSS("#next-wake")))
	if nw := b.text(t, "#next-wake"); !strings.Contains(nw, "Next call in 9m") && !strings.Contains(nw, "Next call in 10m") || !strings.Contains(nw, "retry-after") {
		t.Errorf("waiting operation's next wake-up: %q", nw)
	}
	if tl := b.text(t, "#timeline"); !strings.Contains(tl, "first call") || !strings.Contains(tl, "202") || !strings.Contains(tl, "10m00s (retry-after)") || !strings.Contains(tl, "next call due") {
		t.Errorf("waiting operation's timeline: %q", tl)
	}
	b.screenshot(t, "console-waiting")
	st := tb.state(t, slow, anyPhase)
	if tid := b.text(t, "#trace-id"); st.TraceParent != "" && !strings.Contains(st.TraceParent, strings.TrimSpace(tid)) {
		t.Errorf("trace id %q, traceparent %q", tid, st.TraceParent)
	}

	b.do(t, chromedp.Navigate(tb.url+"/operations"), chromedp.WaitVisible(chromedp.CSS("#operations")))
	b.screenshot(t, "console-operations")

	// The list, filtered by kind and id, newest first.
	b.do(t, chromedp.Navigate(tb.url+"/operations?kind=invoice-pricesheet&id=br-"), chromedp.WaitVisible(chromedp.CSS("#operations")))
	newest, older := throttled, "br-invoice-pricesheet"
	if a, b := tb.state(t, newest, anyPhase), tb.state(t, older, anyPhase); b.AcceptedAt.After(a.AcceptedAt) {
		newest, older = older, newest
	}
	if got := eval[[]string](t, b, `[...document.querySelectorAll("#operations td.id")].map(td => td.textContent)`); len(got) != 2 || got[0] != newest || got[1] != older {
		t.Errorf("price sheets: %q, want newest first: %s, %s", got, newest, older)
	}

	// A throttled then completed operation: the timeline shows each call,
	// the Retry-After honoured, and the link with its signature.
	tb.state(t, throttled, client.Phase.Terminal)
	b.do(t, chromedp.Navigate(tb.url+"/operations/"+throttled), chromedp.WaitVisible(chromedp.CSS("#outcome-link")))
	tl := b.text(t, "#timeline")
	for _, want := range []string{"429", "throttled", "1s (retry-after)", "202", "running", "poll (GET Location)", "200", "done", "completed"} {
		if !strings.Contains(tl, want) {
			t.Errorf("throttled operation's timeline lacks %q: %q", want, tl)
		}
	}
	href := eval[string](t, b, `document.querySelector("#outcome-link").href`)
	if !strings.Contains(href, "sig=") || strings.Contains(href, "sig="+"REDACTED") || !strings.Contains(b.text(t, "#outcome"), "expires") {
		t.Errorf("completed operation's link: %q", href)
	}
	b.screenshot(t, "console-operation")
	// Its archived document: the download button fetches the bytes the
	// archive's SHA-256 names, with a file name.
	dl := eval[string](t, b, `document.querySelector("#download").getAttribute("href")`)
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch(document.querySelector("#download").href).then(async r => {
		const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", await r.arrayBuffer()));
		return r.status + " " + r.headers.get("Content-Disposition") + " " + [...sum].map(b => b.toString(16).padStart(2, "0")).join("");
	})`, chromedp.EvalAwaitPromise))
	cancel()
	if want := strings.TrimSpace(b.text(t, "#archive-sha256")); err != nil || dl != "/operations/"+throttled+"/document" ||
		!strings.HasPrefix(got, "200 attachment; filename=") || !strings.HasSuffix(got, " "+want) {
		t.Errorf("download %q: %q (%v), want the SHA-256 %s", dl, got, err, want)
	}

	// A trace id links to the tracing backend, from the template.
	traced := messages.Request{Version: 1, ID: "br-traced", Kind: messages.KindInvoice,
		Params: messages.Params{BillingAccountName: "12345678", InvoiceName: "G000000451"}}
	if _, err := tb.stack.Client.Submit(context.Background(), traced, nats.Header{"traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}); err != nil {
		t.Fatal(err)
	}
	tb.state(t, traced.ID, client.Phase.Terminal)
	total++ // received, in the overview's counts below
	linked := serveConsole(t, tb.stack, console.Options{TraceURL: "https://tempo.internal/trace?id={trace_id}&view=full"})
	b.do(t, chromedp.Navigate(linked.url+"/operations/"+traced.ID), chromedp.WaitVisible(chromedp.CSS("#trace-link")))
	if href := eval[string](t, b, `document.querySelector("#trace-link").href`); href != "https://tempo.internal/trace?id=4bf92f3577b34da6a3ce929d0e0e4736&view=full" {
		t.Errorf("trace link %q", href)
	}

	// The refused one: Azure's error, escaped.
	b.do(t, chromedp.Navigate(tb.url+"/operations/"+failed), chromedp.WaitVisible(chromedp.CSS("#azure-error")))
	if ae := b.text(t, "#azure-error"); !strings.Contains(ae, "InvalidInvoice") || !strings.Contains(ae, "<b>"+failInvoice+"</b>") {
		t.Errorf("Azure's error: %q", ae)
	}

	// Dead letters: a hostile payload, and a request with a bad field.
	hostile := `{"id":"x<script>alert(1)</script>","kind":"<img src=x onerror=alert(2)>"} <svg onload=alert(3)>`
	hostileSeq := tb.deadLetter(t, hostile)
	bad := mustJSON(t, map[string]any{"version": 1, "id": "br-fixed", "kind": "invoice-summary",
		"params": map[string]any{"billingAccountName": "12345678", "invoiceName": "not a valid name!"}})
	badSeq := tb.deadLetter(t, bad)
	asIsSeq := tb.deadLetter(t, `{"version":1,"id":"br-asis","kind":"invoice-summary","params":{}}`)

	// The overview counts them, live.
	b.do(t, chromedp.Navigate(tb.url+"/"), chromedp.WaitVisible(chromedp.CSS("#dead-letters")))
	b.until(t, "three dead letters", `document.querySelector("#dead-letters").textContent.trim() == "3"`, 10*time.Second)
	b.until(t, "three rejected, counted as received and failed", fmt.Sprintf(`document.querySelector("#recent-rejected") && document.querySelector("#recent-rejected").textContent == "3" && `+
		`document.querySelector("#recent-received").textContent == "%d" && document.querySelector("#recent-failed").textContent == "4"`, total+3), 10*time.Second)
	// Azure throttles a price sheet for five minutes: its scope of the
	// shared throttle shows paused, live.
	pausedInv := devstack.InvoiceName("PSD", 1)
	tb.stack.Emulator.Script(pausedInv, emulator.Throttled(http.StatusTooManyRequests, "Retry-After", "300"))
	tb.submit(t, messages.KindInvoicePriceSheet, "br-paused", pausedInv)
	b.until(t, "a throttled operation and its paused scope", `document.querySelector("#throttled").textContent == "1" && `+
		`document.querySelector("#paused-scopes") && document.querySelector("#paused-scopes").textContent.includes("1 of 3 scopes paused") && `+
		`document.querySelector("#scopes tr.paused") && document.querySelector("#scopes tr.paused").textContent.includes("costmanagement")`, 15*time.Second)
	b.screenshot(t, "console-overview")

	// The hostile payload renders as text, in the list and on its page.
	b.do(t, chromedp.Navigate(tb.url+"/deadletters"), chromedp.WaitVisible(chromedp.CSS("#deadletters")))
	b.screenshot(t, "console-deadletters")
	b.do(t, chromedp.Navigate(tb.url+"/deadletters/"+strconv.FormatUint(hostileSeq, 10)), chromedp.WaitVisible(chromedp.CSS("#payload")))
	if got := b.text(t, "#payload"); got != hostile {
		t.Errorf("payload shown as %q, want the text %q", got, hostile)
	}
	for expr, want := range map[string]int{
		`document.scripts.length`:                                 1, // console.js only
		`document.querySelectorAll("img, svg").length`:            0,
		`document.querySelectorAll("[onerror], [onload]").length`: 0,
	} {
		if got := eval[int](t, b, expr); got != want {
			t.Errorf("%s = %d, want %d", expr, got, want)
		}
	}
	// Not logged in: no write buttons, a way to log in.
	if n := eval[int](t, b, `document.querySelectorAll("#replay, #delete").length`); n != 0 {
		t.Errorf("write buttons shown before logging in: %d", n)
	}

	b.clean(t)

	// Log in with a wrong token (a 401), then the right one.
	b.do(t, chromedp.Navigate(tb.url+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), "wrong-token-0000000000"), chromedp.Click(chromedp.CSS("#login")))
	b.until(t, "wrong token refused", `document.querySelector(".error") && document.querySelector(".error").textContent.includes("not the token")`, 10*time.Second)
	b.do(t, chromedp.Navigate(tb.url+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), testToken), chromedp.Click(chromedp.CSS("#login")))
	b.until(t, "logged in", `document.querySelector(".mode.write") !== null && location.pathname == "/deadletters"`, 10*time.Second)

	// Replay the bad request, edited: confirm, then see it complete.
	fixed := strings.Replace(bad, "not a valid name!", devstack.InvoiceName("FIX", 1), 1)
	b.do(t, chromedp.Navigate(tb.url+"/deadletters/"+strconv.FormatUint(badSeq, 10)), chromedp.WaitVisible(chromedp.CSS("#edit")),
		chromedp.SetValue(chromedp.CSS("#edit"), fixed), chromedp.Click(chromedp.CSS("#replay-edited")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text(t, "#confirm-payload"); got != fixed {
		t.Errorf("confirmation shows %q, want %q", got, fixed)
	}
	if _, err := tb.stack.Client.Status(context.Background(), "br-fixed"); err == nil {
		t.Fatal("replayed before it was confirmed")
	}
	b.screenshot(t, "console-confirm")
	b.do(t, chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#done")))
	tb.state(t, "br-fixed", client.Phase.Terminal)
	b.do(t, chromedp.Navigate(tb.url+"/operations/br-fixed"), chromedp.WaitVisible(chromedp.CSS("#state")))
	b.until(t, "the replayed request completed", `document.querySelector("#state").textContent.includes("completed")`, 20*time.Second)

	b.do(t, chromedp.Navigate(tb.url+"/deadletters/"+strconv.FormatUint(hostileSeq, 10)), chromedp.WaitVisible(chromedp.CSS("#delete")))
	b.screenshot(t, "console-deadletter")

	// Replay one as it is: still invalid, so the worker keeps it again.
	b.do(t, chromedp.Navigate(tb.url+"/deadletters/"+strconv.FormatUint(asIsSeq, 10)), chromedp.WaitVisible(chromedp.CSS("#replay")),
		chromedp.Click(chromedp.CSS("#replay")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#done")))
	testwait.For(t, 15*time.Second, "the replayed copy kept again", func() bool {
		dls, _ := tb.stack.Client.DeadLetters(context.Background(), asIsSeq+1, 100)
		for _, dl := range dls {
			if string(dl.Data) == `{"version":1,"id":"br-asis","kind":"invoice-summary","params":{}}` {
				return true
			}
		}
		return false
	})

	// A cross-site form, posted from another origin while logged in, is
	// refused and deletes nothing.
	target := fmt.Sprintf("%s/deadletters/%d/delete", tb.url, hostileSeq)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s"><input name="confirm" value="yes"></form>`+
			`<script>document.getElementById("f").submit()</script>`, target)
	}))
	t.Cleanup(evil.Close)
	b.do(t, chromedp.Navigate(evil.URL))
	b.until(t, "the forged post answered", `location.pathname.endsWith("/delete") && document.body.innerText.includes("another site")`, 10*time.Second)
	if _, err := tb.stack.Client.DeadLetter(context.Background(), hostileSeq); err != nil {
		t.Fatalf("the cross-site post deleted the dead letter: %v", err)
	}

	// Delete, after confirming; cancelling first deletes nothing.
	page := tb.url + "/deadletters/" + strconv.FormatUint(hostileSeq, 10)
	b.do(t, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#delete")), chromedp.Click(chromedp.CSS("#delete")),
		chromedp.WaitVisible(chromedp.CSS("#cancel")), chromedp.Click(chromedp.CSS("#cancel")))
	b.do(t, chromedp.WaitVisible(chromedp.CSS("#delete"))) // back to the Delete button
	if _, err := tb.stack.Client.DeadLetter(context.Background(), hostileSeq); err != nil {
		t.Fatalf("cancelled, yet deleted: %v", err)
	}
	b.do(t, chromedp.Click(chromedp.CSS("#delete")), chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm")), chromedp.WaitVisible(chromedp.CSS("#deadletters")))
	if _, err := tb.stack.Client.DeadLetter(context.Background(), hostileSeq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("after delete: %v, want not found", err)
	}
	if strings.Contains(b.text(t, "#deadletters"), "onerror") {
		t.Error("the deleted dead letter is still listed")
	}
	// A collection: listed, its children fetched; the collections page
	// shows its progress, its page every child.
	coll := tb.submit(t, messages.KindCollection, "br-coll", "")
	cst := tb.state(t, coll, client.Phase.Terminal)
	if cst.Completed == nil || cst.Completed.Collected == nil || cst.Completed.Collected.Documents == 0 {
		t.Fatalf("the collection: %+v", cst.Completed)
	}
	docs := cst.Completed.Collected.Documents
	b.do(t, chromedp.Navigate(tb.url+"/collections"), chromedp.WaitVisible(chromedp.CSS("#collections")))
	if row := b.text(t, "#collections tbody tr"); !strings.Contains(row, coll) || !strings.Contains(row, "completed") || !strings.Contains(row, strconv.Itoa(docs)) {
		t.Errorf("collections list: %q", row)
	}
	b.do(t, chromedp.Click(chromedp.CSS(`#collections a[href="/collections/br-coll"]`)), chromedp.WaitVisible(chromedp.CSS("#children")))
	if p := b.text(t, "#progress"); !strings.Contains(p, fmt.Sprintf("%d of %d documents ended (100%%)", docs, docs)) {
		t.Errorf("collection progress: %q", p)
	}
	if n := eval[int](t, b, `[...document.querySelectorAll("#children tbody tr")].filter(tr => tr.textContent.includes("completed") || tr.textContent.includes("failed")).length`); n != docs {
		t.Errorf("%d children shown ended, want %d", n, docs)
	}
	b.screenshot(t, "console-collection")

	// The Schedules page, from the nav bar: none stored here.
	b.do(t, chromedp.Click(chromedp.CSS(`header nav a[href="/schedules"]`)), chromedp.WaitVisible(chromedp.CSS("#schedules")))
	if row := b.text(t, "#schedules tbody tr"); !strings.Contains(row, "No schedule is stored") {
		t.Errorf("schedules page: %q", row)
	}

	// The Coverage page, from the nav bar, over the collection's months:
	// its scope's cells link to it.
	b.do(t, chromedp.Click(chromedp.CSS(`header nav a[href="/coverage"]`)), chromedp.WaitVisible(chromedp.CSS("#coverage")))
	p := cst.Request.Params
	b.do(t, chromedp.Navigate(tb.url+"/coverage?from="+p.PeriodStartDate[:7]+"&to="+p.PeriodEndDate[:7]), chromedp.WaitVisible(chromedp.CSS("#coverage")))
	if n := eval[int](t, b, `document.querySelectorAll('#coverage td.cell a.coll[href="/collections/br-coll"]').length`); n == 0 {
		t.Errorf("no coverage cell links the collection: %q", b.text(t, "#coverage"))
	}
	b.screenshot(t, "console-coverage")
	b.do(t, chromedp.Click(chromedp.CSS(`#coverage td.cell a.coll[href="/collections/br-coll"]`)), chromedp.WaitVisible(chromedp.CSS("#children")))

	b.clean(t, "status of 401", "status of 403") // the wrong token, the forged post
}
