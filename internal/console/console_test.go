package console_test

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/emulator"
	"github.com/azbilling/worker/internal/testwait"
	"github.com/azbilling/worker/pkg/client"
	"github.com/azbilling/worker/pkg/messages"
)

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

func TestOptionsRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	for name, o := range map[string]console.Options{
		"no client":                         {},
		"writes without a way to authorize": {Client: tb.stack.Client, Write: true},
		"a token without writes":            {Client: tb.stack.Client, Token: testToken},
		"a proxy header without writes":     {Client: tb.stack.Client, AuthHeader: "X-Forwarded-User"},
		"negative page size":                {Client: tb.stack.Client, PageSize: -1},
	} {
		if _, err := console.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Write actions: refused when off, without the token, with a wrong one or
// a forged cookie, and from another site even when logged in; done only
// after confirming.
func TestWriteActionsRefused(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{Write: true, Token: testToken})
	seq := tb.deadLetter(t, `{"version":1,"id":"w-1","kind":"invoice-summary","params":{}}`)
	del := tb.url + "/deadletters/" + strconv.FormatUint(seq, 10) + "/delete"
	replay := tb.url + "/deadletters/" + strconv.FormatUint(seq, 10) + "/replay"
	yes := url.Values{"confirm": {"yes"}}
	kept := func(what string) {
		t.Helper()
		if _, err := tb.stack.Client.DeadLetter(context.Background(), seq); err != nil {
			t.Fatalf("%s: the dead letter is gone: %v", what, err)
		}
	}
	c := httpClient(t)
	if res := post(t, c, del, yes, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("delete without logging in: %d", res.StatusCode)
	}
	if res := post(t, c, replay, url.Values{"confirm": {"yes"}, "mode": {"as-is"}}, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay without logging in: %d", res.StatusCode)
	}
	kept("no token")
	if n, _ := tb.stack.Client.DeadLetterCount(context.Background()); n != 1 {
		t.Errorf("a refused replay was sent: %d dead letters", n)
	}
	res := post(t, c, tb.url+"/login", url.Values{"token": {"wrong-token-000000000"}}, nil)
	if res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v", res.StatusCode, res.Cookies())
	}
	forged := httpClient(t)
	u, _ := url.Parse(tb.url)
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "billing_console_session", Value: "00112233"}})
	if res := post(t, forged, del, yes, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: %d", res.StatusCode)
	}
	kept("wrong token")

	// Logged in.
	res = post(t, c, tb.url+"/login", url.Values{"token": {testToken}}, nil)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("login: %d %v", res.StatusCode, res.Cookies())
	}
	if ck := res.Cookies()[0]; !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || strings.Contains(ck.Value, testToken) {
		t.Errorf("session cookie: %+v", ck)
	}
	for name, hdr := range map[string]map[string]string{
		"cross-site fetch metadata":   {"Sec-Fetch-Site": "cross-site"},
		"same-site, another origin":   {"Sec-Fetch-Site": "same-site"},
		"another Origin, no metadata": {"Sec-Fetch-Site": "", "Origin": "http://evil.example"},
	} {
		if res := post(t, c, del, yes, hdr); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, res.StatusCode)
		}
	}
	kept("cross-site")
	// Without confirm: the confirmation page, nothing deleted.
	if res := post(t, c, del, nil, nil); res.StatusCode != http.StatusOK {
		t.Errorf("unconfirmed delete: %d", res.StatusCode)
	}
	kept("unconfirmed")
	if res := post(t, c, del, yes, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("confirmed delete: %d", res.StatusCode)
	}
	if _, err := tb.stack.Client.DeadLetter(context.Background(), seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("after the confirmed delete: %v", err)
	}
	// Logged out: refused again.
	post(t, c, tb.url+"/logout", nil, nil)
	if res := post(t, c, del, yes, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logging out: %d", res.StatusCode)
	}
}

func TestReadOnlyByDefault(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	seq := tb.deadLetter(t, `not json`)
	c := httpClient(t)
	page := tb.url + "/deadletters/" + strconv.FormatUint(seq, 10)
	if code, body := get(t, c, page); code != http.StatusOK || strings.Contains(body, "<form method=\"post\"") || !strings.Contains(body, "read-only") {
		t.Errorf("dead letter page, read-only: %d %q", code, body)
	}
	for _, action := range []string{"/delete", "/replay"} {
		if res := post(t, c, page+action, url.Values{"confirm": {"yes"}}, nil); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s with writes off: %d", action, res.StatusCode)
		}
	}
	if res := post(t, c, tb.url+"/login", url.Values{"token": {""}}, nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("login with no token configured: %d", res.StatusCode)
	}
}

// Behind an authenticating proxy: the proxy's header authorizes writes,
// still only from the console's own pages.
func TestAuthProxyHeader(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{Write: true, AuthHeader: "X-Forwarded-User"})
	seq := tb.deadLetter(t, `not json either`)
	c := httpClient(t)
	del := tb.url + "/deadletters/" + strconv.FormatUint(seq, 10) + "/delete"
	yes := url.Values{"confirm": {"yes"}}
	if res := post(t, c, del, yes, nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("no proxy user: %d", res.StatusCode)
	}
	if res := post(t, c, del, yes, map[string]string{"X-Forwarded-User": "alice", "Sec-Fetch-Site": "cross-site"}); res.StatusCode != http.StatusForbidden {
		t.Errorf("proxy user, cross-site: %d", res.StatusCode)
	}
	if res := post(t, c, del, yes, map[string]string{"X-Forwarded-User": "alice"}); res.StatusCode != http.StatusSeeOther {
		t.Errorf("proxy user: %d", res.StatusCode)
	}
	if n, _ := tb.stack.Client.DeadLetterCount(context.Background()); n != 0 {
		t.Errorf("%d dead letters left", n)
	}
}

var sigRE = regexp.MustCompile(`sig=([^&"<\s]+)`)

// The SAS sig shows only as the completed operation's link, and not even
// there with HideSig; a payload's markup is escaped by the server too.
func TestSigAndEscaping(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	id := tb.submit(t, messages.KindInvoiceSummary, "sig-1", "G000000001")
	st := tb.state(t, id, client.Phase.Terminal)
	if st.Completed == nil || !strings.Contains(st.Completed.URL, "sig=") {
		t.Fatalf("completed: %+v", st.Completed)
	}
	sig := url.QueryEscape(sigRE.FindStringSubmatch(st.Completed.URL)[1])
	c := httpClient(t)
	_, body := get(t, c, tb.url+"/operations/"+id)
	_, query, _ := strings.Cut(st.Completed.URL, "sig=") // the link's tail from its sig on
	if !strings.Contains(body, "sig=") || !strings.Contains(strings.ReplaceAll(body, "&amp;", "&"), "sig="+query) {
		t.Errorf("the operation's page lacks its link: %s", body)
	}
	// The dev stack archives to the Object Store: the page names the
	// object and its digest.
	if a := st.Completed.Archive; a == nil || a.Error != nil || a.SHA256 == "" {
		t.Fatalf("archive: %+v", a)
	} else if !strings.Contains(body, html.EscapeString(a.Name)) || !strings.Contains(body, `<code id="archive-sha256">`+a.SHA256+`</code>`) {
		t.Errorf("the operation's page lacks its archive %s (%s): %s", a.Name, a.SHA256, body)
	}
	for _, page := range []string{"/", "/live/overview", "/operations", "/operations?state=completed", "/deadletters"} {
		if code, body := get(t, c, tb.url+page); code != http.StatusOK || strings.Contains(body, "sig=") {
			t.Errorf("%s: %d, shows a sig", page, code)
		}
	}
	hidden := serveConsole(t, tb.stack, console.Options{HideSig: true})
	_, body = get(t, c, hidden.url+"/operations/"+id)
	if strings.Contains(body, sig) || !strings.Contains(body, "sig=REDACTED") || !strings.Contains(body, "signature hidden") {
		t.Errorf("HideSig: the page shows the sig, or no link: %s", body)
	}

	seq := tb.deadLetter(t, `<script>alert(1)</script><img src=x onerror=alert(2)> sig=abc`)
	res, err := c.Get(tb.url + "/deadletters/" + strconv.FormatUint(seq, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	page := string(b)
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img src=x") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("payload not escaped: %s", page)
	}
	if strings.Contains(page, "sig=abc") {
		t.Error("a sig in a dead letter is shown")
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers: %v", res.Header)
	}
}

// Paging walks every operation once, newest first, with filters kept.
func TestOperationsPaging(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{PageSize: 2})
	var ids []string
	for i := range 5 {
		ids = append(ids, tb.submit(t, messages.KindInvoice, "page-"+strconv.Itoa(i), "G00000000"+strconv.Itoa(i+1)))
	}
	tb.submit(t, messages.KindInvoiceSummary, "other-kind", "G000000009")
	for _, id := range ids {
		tb.state(t, id, client.Phase.Terminal)
	}
	c := httpClient(t)
	rowRE := regexp.MustCompile(`<td class="id"><a href="/operations/([^"]+)">`)
	nextRE := regexp.MustCompile(`<a href="([^"]+)" id="next-page"`)
	var seen []string
	next := "/operations?kind=invoice&state=completed"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		code, body := get(t, c, tb.url+strings.ReplaceAll(next, "&amp;", "&"))
		if code != http.StatusOK {
			t.Fatalf("%s: %d", next, code)
		}
		rows := rowRE.FindAllStringSubmatch(body, -1)
		if len(rows) > 2 {
			t.Errorf("page of %d rows", len(rows))
		}
		for _, r := range rows {
			seen = append(seen, r[1])
		}
		next = ""
		if m := nextRE.FindStringSubmatch(body); m != nil {
			next = m[1]
		}
	}
	if len(seen) != 5 {
		t.Fatalf("walked %q, want the 5 invoices", seen)
	}
	for i := 1; i < len(seen); i++ {
		a, b := tb.state(t, seen[i-1], anyPhase), tb.state(t, seen[i], anyPhase)
		if a.AcceptedAt.Before(b.AcceptedAt) || seen[i] == seen[i-1] {
			t.Errorf("not newest first: %s (%s) before %s (%s)", seen[i-1], a.AcceptedAt, seen[i], b.AcceptedAt)
		}
	}
	for _, bad := range []string{"/operations?state=nope", "/operations?kind=nope", "/operations?before=nope", "/deadletters?from=x"} {
		if code, _ := get(t, c, tb.url+bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	for _, missing := range []string{"/operations/nobody", "/operations/~bad", "/deadletters/99", "/deadletters/x"} {
		if code, _ := get(t, c, tb.url+missing); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", missing, code)
		}
	}
}

// An operation waiting after a 429 counts as throttled on the overview,
// with when it calls again; the shared throttle's scopes show, paused.
func TestOverviewThrottled(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{OverviewCache: time.Millisecond})
	inv := devstack.InvoiceName("T4Z", 1)
	tb.stack.Emulator.Script(inv, emulator.Throttled(http.StatusTooManyRequests, "Retry-After", "600"))
	id := tb.submit(t, messages.KindInvoiceSummary, "throttled-1", inv)
	st := tb.state(t, id, func(p client.Phase) bool { return p == client.PhaseWaiting })
	c := httpClient(t)
	_, body := get(t, c, tb.url+"/live/overview")
	if !strings.Contains(body, `id="throttled">1<`) || !strings.Contains(body, st.NextAt.UTC().Format("15:04:05")) {
		t.Errorf("throttled tile: %s", body)
	}
	_, body = get(t, c, tb.url+"/operations/"+id)
	if !strings.Contains(body, "429") || !strings.Contains(body, "throttled") || !strings.Contains(body, "10m00s (retry-after)") {
		t.Errorf("the operation's timeline: %s", body)
	}

	// The 429 paused its scope of the shared throttle: the overview lists
	// the scope, paused until when Azure said; another request of the
	// scope is held, and its page says by what.
	_, body = get(t, c, tb.url+"/live/overview")
	if !strings.Contains(body, `id="scopes"`) || !strings.Contains(body, "billing.writes") || !strings.Contains(body, `class="paused"`) ||
		!strings.Contains(body, "1 of 1 scopes paused") || !strings.Contains(body, `<td class="learned">learned `) {
		t.Errorf("the overview's throttle scopes: %s", body)
	}
	held := tb.submit(t, messages.KindInvoiceSummary, "throttled-2", devstack.InvoiceName("T4Z", 2))
	hs := tb.state(t, held, func(p client.Phase) bool { return p == client.PhaseWaiting })
	if hs.Throttled == nil {
		t.Fatalf("the second request is not held: %+v", hs)
	}
	_, body = get(t, c, tb.url+"/operations/"+held)
	if !strings.Contains(body, `id="hold"`) || !strings.Contains(body, hs.Throttled.Scope) || !strings.Contains(body, "paused by Azure") {
		t.Errorf("the held operation's page: %s", body)
	}
}

// The overview counts apart the waiting operations whose wake-up is past
// its time by more than the bound: here a console whose clock runs
// 20 minutes ahead sees a wake-up due in 10 as overdue.
func TestOverviewOverdue(t *testing.T) {
	t.Parallel()
	ahead := 20 * time.Minute
	tb := setup(t, console.Options{OverviewCache: time.Millisecond, Now: func() time.Time { return time.Now().Add(ahead) }})
	c := httpClient(t)
	if _, body := get(t, c, tb.url+"/live/overview"); !strings.Contains(body, `id="overdue">0<`) {
		t.Errorf("overdue tile with nothing waiting: %s", body)
	}
	inv := devstack.InvoiceName("T4O", 1)
	tb.stack.Emulator.Script(inv, emulator.Accepted("600"))
	id := tb.submit(t, messages.KindInvoiceSummary, "overdue-1", inv)
	st := tb.state(t, id, func(p client.Phase) bool { return p == client.PhaseWaiting })
	_, body := get(t, c, tb.url+"/live/overview")
	if !strings.Contains(body, `id="overdue">1<`) || !strings.Contains(body, st.NextAt.UTC().Format("15:04:05")) || !strings.Contains(body, id) {
		t.Errorf("overdue tile: %s", body)
	}
}

// A running collection: counted on the overview, listed with its
// progress, its page showing the children in flight.
func TestCollectionRunning(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{OverviewCache: time.Millisecond})
	tb.stack.Emulator.SetDefault(emulator.Accepted("600")) // the children wait
	id := tb.submit(t, messages.KindCollection, "coll-1", "")
	var st client.Operation
	testwait.For(t, 20*time.Second, "the collection's children", func() bool {
		st, _ = tb.stack.Client.Status(context.Background(), id)
		return st.Collection != nil && st.Collection.Spawned > 0
	})
	c := httpClient(t)
	_, body := get(t, c, tb.url+"/live/overview")
	if !strings.Contains(body, `id="collections-running"><a href="/collections">1</a>`) || !strings.Contains(body, "documents listed so far ended") {
		t.Errorf("overview: %s", body)
	}
	// A scan of the bucket can miss a key whose value is replaced while it
	// reads (the collection is still storing its children's progress):
	// the next reading shows it.
	testwait.For(t, 10*time.Second, "the collection listed", func() bool {
		_, body = get(t, c, tb.url+"/collections")
		return strings.Contains(body, `href="/collections/coll-1"`) && strings.Contains(body, "1 collections")
	})
	code, body := get(t, c, tb.url+"/collections/coll-1")
	if code != http.StatusOK || !strings.Contains(body, "in flight") || !strings.Contains(body, "phase-waiting") || !strings.Contains(body, `href="/operations/coll-1-`) {
		t.Errorf("collection page: %d %s", code, body)
	}
	if code, _ := get(t, c, tb.url+"/live/collections/coll-1"); code != http.StatusOK {
		t.Errorf("live part: %d", code)
	}
	// A child's page links its collection.
	child := regexp.MustCompile(`href="/operations/(coll-1-[0-9a-f]+)"`).FindStringSubmatch(body)
	if child == nil {
		t.Fatal("no child link")
	}
	if _, body := get(t, c, tb.url+"/operations/"+child[1]); !strings.Contains(body, `<a href="/collections/coll-1">coll-1</a>`) {
		t.Errorf("child page: %s", body)
	}
}

// An operation whose document is being archived says so on its page, and
// counts as accepted (a worker is at it) in the list's filter.
func TestOperationArchiving(t *testing.T) {
	t.Parallel()
	tb := setup(t, console.Options{})
	inv := devstack.InvoiceName("ARC", 1)
	// 1 MiB served in 64 KiB chunks with a pause after each: a few
	// seconds of archiving.
	tb.stack.Emulator.Script(inv, emulator.OK())
	tb.stack.Emulator.SetDownload(inv, emulator.Download{Size: 1 << 20, Delay: 200 * time.Millisecond})
	id := tb.submit(t, messages.KindInvoiceSummary, "archiving-1", inv)
	tb.state(t, id, func(p client.Phase) bool { return p == client.PhaseArchiving })
	c := httpClient(t)
	if _, body := get(t, c, tb.url+"/operations/"+id); !strings.Contains(body, `id="archiving"`) || !strings.Contains(body, "being archived") {
		t.Errorf("the page of an operation being archived does not say so: %s", body)
	}
	if _, body := get(t, c, tb.url+"/operations?state="+console.FilterAccepted); !strings.Contains(body, id) {
		t.Errorf("the accepted filter leaves out an operation being archived: %s", body)
	}
	st := tb.state(t, id, client.Phase.Terminal)
	if st.Completed == nil || st.Completed.Archive == nil || st.Completed.Archive.Size != 1<<20 {
		t.Fatalf("completed: %+v", st.Completed)
	}
}
