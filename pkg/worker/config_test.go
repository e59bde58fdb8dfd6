package worker

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestBindReadsEnvironmentAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BILLING_CONCURRENCY": "8", "BILLING_ACK_WAIT": "2m", "BILLING_ALLOW_HTTP": "true", "BILLING_NATS_URL": "nats://a:4222"}
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := c.Bind(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-concurrency", "12"}); err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != 12 || c.AckWait != 2*time.Minute || !c.AllowHTTP || c.NATSURL != "nats://a:4222" || c.Prefix != "billing" {
		t.Errorf("config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestBindReportsEveryBadVariable(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BILLING_CONCURRENCY": "many", "BILLING_ACK_WAIT": "forever"}
	var c Config
	err := c.Bind(flag.NewFlagSet("t", flag.ContinueOnError), func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "BILLING_CONCURRENCY") || !strings.Contains(err.Error(), "BILLING_ACK_WAIT") {
		t.Fatalf("error %v", err)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.Concurrency = 0
	c.AckWait = time.Second // shorter than a claim
	c.Prefix = "a.b"
	err := c.Validate()
	for _, want := range []string{"concurrency", "ack-wait", "prefix"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	if d := DefaultConfig(); d.Validate() != nil {
		t.Errorf("defaults invalid: %v", d.Validate())
	}
}

func TestEverySettingHasFlagEnvAndUsage(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range Settings {
		if s.Flag == "" || s.Usage == "" || !strings.HasPrefix(s.Env, EnvPrefix) || seen[s.Env] {
			t.Errorf("setting %+v", s)
		}
		seen[s.Env] = true
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c Config
	_ = c.Bind(fs, func(string) string { return "" })
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
