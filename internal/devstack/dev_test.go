package devstack_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/devstack"
	"github.com/azbilling/worker/pkg/messages"
)

// consoleProbe is dev mode's output: when the console's line is written,
// it loads the console's overview (the console serves by then).
type consoleProbe struct {
	mu     sync.Mutex
	out    bytes.Buffer
	status int
	body   string
	// coverage is the Coverage page over the sample collection's months.
	coverage string
}

var consoleLine = regexp.MustCompile(`dev mode: console (http://127\.0\.0\.1:\d+) \(.* token ([0-9a-f]{32})\)`)

func (p *consoleProbe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := consoleLine.FindSubmatch(b); m != nil && p.status == 0 {
		res, err := http.Get(string(m[1]) + "/")
		if err != nil {
			return 0, err
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		p.status, p.body = res.StatusCode, string(body)
		res, err = http.Get(string(m[1]) + "/coverage?from=2026-01&to=2026-03")
		if err != nil {
			return 0, err
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		p.coverage = string(body)
	}
	return p.out.Write(b)
}

// Dev mode serves the console, prints its address and a token, the
// samples complete, and the sample schedule fires.
func TestDevServesConsole(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := &consoleProbe{}
	if err := devstack.Dev(ctx, devstack.DevOptions{Out: p, Exit: true, ConsoleAddr: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status != http.StatusOK || !strings.Contains(p.body, "Overview") {
		t.Errorf("the console's overview: %d\n%s", p.status, p.out.String())
	}
	// The Coverage page shows the scopes dev mode registers.
	if !strings.Contains(p.coverage, "Contoso (sample MCA account)") || !strings.Contains(p.coverage, "Pay-as-you-go (sample subscription)") {
		t.Errorf("the console's coverage page:\n%s", p.coverage)
	}
	if n := strings.Count(p.out.String(), "COMPLETED"); n < len(messages.Kinds) {
		t.Errorf("%d samples completed:\n%s", n, p.out.String())
	}
	// The sample estate collected the small estate: every scope but the
	// one whose listing is refused, and the two it skips.
	if want := "scopes:     8: 5 completed, 1 failed, 2 skipped"; !strings.Contains(p.out.String(), want) {
		t.Errorf("no estate event with %q:\n%s", want, p.out.String())
	}
	// The discovery samples list the small estate.
	for _, kind := range []messages.Kind{messages.KindBillingAccounts, messages.KindBillingProfiles, messages.KindCustomers, messages.KindSubscriptions} {
		if strings.Contains(p.out.String(), " "+string(kind)+": ") {
			t.Errorf("the sample %s failed:\n%s", kind, p.out.String())
		}
	}
	// The sample schedule fired, and its request ended.
	fired := regexp.MustCompile(`(?m)^fired     ` + devstack.DevScheduleID + ` at (\d{8}T\d{6}Z)\n(COMPLETED|FAILED) ` + devstack.DevScheduleID + `-(\d{8}T\d{6}Z) `)
	if m := fired.FindStringSubmatch(p.out.String()); len(m) != 4 || m[1] != m[3] {
		t.Errorf("no fire of the sample schedule printed with its request:\n%s", p.out.String())
	}
}
