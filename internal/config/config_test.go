package config

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/internal/worker"
	"github.com/azbilling/worker/pkg/poll"
)

func TestBindReadsEnvironmentAndFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BILLING_CONCURRENCY": "8", "BILLING_ACK_WAIT": "2m", "BILLING_ALLOW_HTTP": "true", "BILLING_NATS_URL": "nats://a:4222"}
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := c.Bind(fs, lookupIn(env)); err != nil {
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
	err := c.Bind(flag.NewFlagSet("t", flag.ContinueOnError), lookupIn(env))
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
	_ = c.Bind(fs, lookupIn(nil))
	if err := fs.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// A variable set but empty empties a text setting (the README says an
// empty BILLING_HEALTH_ADDR disables the listener) and leaves a number or
// duration at its default.
func TestEmptyVariables(t *testing.T) {
	t.Parallel()
	var c Config
	env := map[string]string{"BILLING_HEALTH_ADDR": "", "BILLING_CONCURRENCY": "", "BILLING_ACK_WAIT": ""}
	if err := c.Bind(flag.NewFlagSet("t", flag.ContinueOnError), lookupIn(env)); err != nil {
		t.Fatal(err)
	}
	if c.HealthAddr != "" {
		t.Errorf("health-addr %q, want empty (disabled)", c.HealthAddr)
	}
	if d := DefaultConfig(); c.Concurrency != d.Concurrency || c.AckWait != d.AckWait {
		t.Errorf("concurrency %d ack-wait %s, want the defaults", c.Concurrency, c.AckWait)
	}
}

// The settings' defaults are the worker's: the options a default
// configuration yields equal the worker's zero-value defaults.
func TestDefaultsAreTheWorkers(t *testing.T) {
	t.Parallel()
	d := DefaultConfig()
	got := d.Worker()
	if got.AckWait != worker.DefaultAckWait || got.Concurrency != worker.DefaultConcurrency ||
		got.MaxUnanswered != worker.DefaultMaxUnanswered || got.DeadLetterMaxBytes != worker.DefaultDeadLetterMaxBytes ||
		got.Policy != poll.DefaultPolicy() {
		t.Errorf("options from the default configuration: %+v", got)
	}
}
