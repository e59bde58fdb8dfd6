package poll

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestDefaultPolicyIsValid(t *testing.T) {
	t.Parallel()
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*Policy)
		wants []string // substrings of the error; none means valid
	}{
		{"zero MinWait is allowed", func(p *Policy) { p.MinWait = 0 }, nil},
		{"MinWait equal to MaxWait", func(p *Policy) { p.MinWait = p.MaxWait }, nil},
		{"no jitter", func(p *Policy) { p.Jitter = 0 }, nil},
		{"Multiplier 1", func(p *Policy) { p.Multiplier = 1 }, nil},
		{"negative MinWait", func(p *Policy) { p.MinWait = -1 }, []string{"MinWait"}},
		{"zero MaxWait", func(p *Policy) { p.MaxWait = 0 }, []string{"MaxWait 0s is not positive", "MinWait 1s exceeds MaxWait"}},
		{"negative DefaultPollWait", func(p *Policy) { p.DefaultPollWait = -time.Second }, []string{"DefaultPollWait"}},
		{"zero InitialBackoff", func(p *Policy) { p.InitialBackoff = 0 }, []string{"InitialBackoff"}},
		{"zero MaxBackoff", func(p *Policy) { p.MaxBackoff = 0 }, []string{"MaxBackoff 0s is not positive", "InitialBackoff 1s exceeds MaxBackoff"}},
		{"MinWait above MaxWait", func(p *Policy) { p.MinWait = time.Hour }, []string{"MinWait 1h0m0s exceeds MaxWait 15m0s"}},
		{"InitialBackoff above MaxBackoff", func(p *Policy) { p.InitialBackoff = time.Hour }, []string{"InitialBackoff 1h0m0s exceeds"}},
		{"Multiplier below 1", func(p *Policy) { p.Multiplier = 0.5 }, []string{"Multiplier"}},
		{"Multiplier NaN", func(p *Policy) { p.Multiplier = math.NaN() }, []string{"Multiplier"}},
		{"Multiplier Inf", func(p *Policy) { p.Multiplier = math.Inf(1) }, []string{"Multiplier"}},
		{"Jitter 1", func(p *Policy) { p.Jitter = 1 }, []string{"Jitter"}},
		{"Jitter negative", func(p *Policy) { p.Jitter = -0.1 }, []string{"Jitter"}},
		{"Jitter NaN", func(p *Policy) { p.Jitter = math.NaN() }, []string{"Jitter"}},
		{"zero Policy", func(p *Policy) { *p = Policy{} }, []string{"MaxWait", "DefaultPollWait", "InitialBackoff", "MaxBackoff", "Multiplier"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := withPolicy(DefaultPolicy(), tt.edit).Validate()
			if len(tt.wants) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Validate() = %v, want ErrInvalidPolicy", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
			// errors.Join: one line, and one wrapped error, per problem.
			if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != len(tt.wants) {
				t.Errorf("Validate() reported %d problems, want %d: %v", n, len(tt.wants), err)
			}
		})
	}
}
