package console_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/azbilling/worker/internal/console"
	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/internal/operation"
	"github.com/azbilling/worker/pkg/messages"
)

var scaleT0 = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)

// scaleKinds are the kinds fill spreads the operations over, in turn.
var scaleKinds = []messages.Kind{messages.KindSubscriptionInvoice, messages.KindInvoiceSummary,
	messages.KindSubscriptionDocuments, messages.KindInvoicePriceSheet, messages.KindInvoice}

// fill writes n operation states straight into the stack's bucket, as a
// busy worker leaves them: most completed, some failed, some waiting, a
// few in flight, each with a few calls in its history. Operation i was
// accepted at scaleT0 + i seconds.
func fill(tb testing.TB, stack *devstack.Stack, n int) {
	tb.Helper()
	ctx := context.Background()
	js, err := jetstream.New(stack.Conn)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stack.Client.Layout().StateBucket())
	if err != nil {
		tb.Fatal(err)
	}
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	flush := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				tb.Fatal(err)
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		kind := scaleKinds[i%len(scaleKinds)]
		at := scaleT0.Add(time.Duration(i) * time.Second)
		st := operation.NewState(devstack.Sample(kind, fmt.Sprintf("scale-%06d", i), devstack.InvoiceName("SCL", i)), at, time.Hour, 24*time.Hour)
		st.TraceParent = fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
		for c := range 3 {
			st.Calls = append(st.Calls, operation.CallRecord{At: at.Add(time.Duration(c) * time.Second), Poll: c > 0, Status: 202,
				Outcome: "running", Wait: time.Second, WaitSource: "retry-after"})
		}
		st.AzureCalls, st.Polls, st.Location, st.Started = 3, 2, "https://management.azure.com/op/"+strconv.Itoa(i), true
		switch i % 20 {
		case 0:
			st.Claim("worker-1", at, at.Add(time.Minute))
		case 1, 2, 3:
			st.Phase, st.NextAt, st.Wake = operation.PhaseWaiting, at.Add(time.Hour), 3
		case 4, 5, 6, 7:
			st.Fail(messages.Failed{Version: 1, ID: st.Request.ID, Kind: kind, Code: messages.CodeAzureError,
				Message: "azure answered 400", FailedAt: at.Add(3 * time.Second)}, at.Add(3*time.Second))
		default:
			exp := at.Add(time.Hour)
			st.Complete(messages.Completed{Version: 1, ID: st.Request.ID, Kind: kind, URL: "https://blob.example/doc.pdf?sv=1&sig=abc",
				ExpiryTime: &exp, AcceptedAt: at, CompletedAt: at.Add(3 * time.Second), AzureCalls: 3}, at.Add(3*time.Second))
		}
		f, err := js.PublishAsync("$KV."+stack.Client.Layout().StateBucket()+"."+st.Request.ID, operation.Encode(&st))
		if err != nil {
			tb.Fatal(err)
		}
		if futures = append(futures, f); len(futures) == cap(futures) {
			flush()
		}
	}
	flush()
	if s, err := kv.Status(ctx); err != nil || s.Values() != uint64(n) {
		tb.Fatalf("bucket: %v values, %v", s.Values(), err)
	}
}

var rowIDRE = regexp.MustCompile(`<td class="id"><a href="/operations/([^"]+)">`)

// The first page of a large bucket is its newest operations, in order;
// the filters count every match (operations written straight into the
// bucket, which the stack's idle worker leaves alone). The time it took is reported, not
// asserted (BenchmarkOperationsFirstPage measures it).
func TestOperationsListLargeBucket(t *testing.T) {
	t.Parallel()
	const n = 3000
	stack, err := devstack.Start(devstack.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stack.Close)
	fill(t, stack, n)
	tb := serveConsole(t, stack, console.Options{})
	c := httpClient(t)
	start := time.Now()
	code, body := get(t, c, tb.url+"/operations")
	t.Logf("first page of %d operations in %s", n, time.Since(start))
	rows := rowIDRE.FindAllStringSubmatch(body, -1)
	if code != http.StatusOK || len(rows) != console.DefaultPageSize {
		t.Fatalf("%d, %d rows", code, len(rows))
	}
	for i, r := range rows {
		if want := fmt.Sprintf("scale-%06d", n-1-i); r[1] != want {
			t.Fatalf("row %d: %s, want %s", i, r[1], want)
		}
	}
	if !strings.Contains(body, fmt.Sprintf("%d of %d operations match", n, n)) {
		t.Error("the count of matches is missing")
	}
	// Waiting: i%20 in 1..3; invoice-summary: i%5 == 1; both: i%20 == 1.
	_, body = get(t, c, tb.url+"/operations?state=waiting&kind=invoice-summary")
	if !strings.Contains(body, fmt.Sprintf("%d of %d operations match", n/20, n)) {
		t.Errorf("waiting summaries: %s", regexp.MustCompile(`\d+ of \d+ operations match`).FindString(body))
	}
	_, body = get(t, c, tb.url+"/operations?state=waiting")
	if !strings.Contains(body, fmt.Sprintf("%d of %d operations match", n/20*3, n)) {
		t.Errorf("waiting: %s", regexp.MustCompile(`\d+ of \d+ operations match`).FindString(body))
	}
	_, body = get(t, c, tb.url+"/")
	if !strings.Contains(body, `id="total">`+strconv.Itoa(n)+`<`) {
		t.Error("the overview does not count every operation")
	}
}

// BenchmarkOperationsFirstPage measures the operations list's first page
// over a bucket of 1,000 and of 10,000 operations, served by cmd/console
// as a process of its own (so that its memory is its own, not the
// embedded NATS server's): ms per page, and the console's peak RSS.
//
//	go test ./internal/console -run '^$' -bench OperationsFirstPage -benchtime 20x
func BenchmarkOperationsFirstPage(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "console")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/console").CombinedOutput(); err != nil {
		b.Fatalf("build cmd/console: %v\n%s", err, out)
	}
	for _, n := range []int{1000, 10000} {
		b.Run("operations="+strconv.Itoa(n), func(b *testing.B) {
			stack, err := devstack.Start(devstack.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer stack.Close()
			fill(b, stack, n)
			cmd := exec.Command(bin, "--console-listen", "127.0.0.1:0", "--log-level", "warn")
			cmd.Env = append(os.Environ(), "BILLING_NATS_URL="+stack.NATS.ClientURL())
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			addr := regexp.MustCompile(`http://[0-9.:]+`).FindString(line)
			c := &http.Client{Timeout: time.Minute}
			page := func() {
				res, err := c.Get(addr + "/operations")
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || len(rowIDRE.FindAllString(string(body), -1)) != console.DefaultPageSize {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
			page() // connect, parse, warm
			idle := rss(b, cmd.Process.Pid, "VmRSS")
			b.ResetTimer()
			for b.Loop() {
				page()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
			b.ReportMetric(idle, "idle-RSS-MiB")
			b.ReportMetric(rss(b, cmd.Process.Pid, "VmHWM"), "peak-RSS-MiB")
		})
	}
}

// rss reads a process's memory figure (VmRSS, VmHWM) in MiB.
func rss(b *testing.B, pid int, field string) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == field+":" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
