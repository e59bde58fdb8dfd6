package console

import (
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:                "850ms",
		12*time.Second + 340*time.Millisecond: "12.3s",
		3*time.Minute + 5*time.Second:         "3m05s",
		2*time.Hour + 10*time.Minute:          "2h10m",
		-90 * time.Second:                     "-1m30s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %q, want %q", d, got, want)
		}
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	if got := relative(now, now.Add(90*time.Second)); got != "in 1m30s" {
		t.Errorf("relative, later: %q", got)
	}
	if got := relative(now, now.Add(-2*time.Second)); got != "2s ago" {
		t.Errorf("relative, earlier: %q", got)
	}
	if got := relative(now, time.Time{}); got != "" {
		t.Errorf("relative, zero: %q", got)
	}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	c := cursor{At: time.Date(2026, 11, 27, 12, 0, 0, 123456789, time.UTC), ID: "req~1"}
	got, err := parseCursor(c.String())
	if err != nil || !got.At.Equal(c.At) || got.ID != c.ID {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	for _, bad := range []string{"", "x", "2026-11-27~", "nope~id"} {
		if _, err := parseCursor(bad); err == nil {
			t.Errorf("parseCursor(%q) accepted", bad)
		}
	}
	older, sameTimeLowerID := cursor{At: c.At.Add(-time.Second), ID: "z"}, cursor{At: c.At, ID: "a"}
	if !c.newer(older) || !c.newer(sameTimeLowerID) || older.newer(c) || c.newer(c) {
		t.Error("newest first: by time, then by id")
	}
}
