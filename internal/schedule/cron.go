// Package schedule is the pure arithmetic of recurring schedules: cron
// expressions as the NATS server reads them, the relative periods a fire
// covers, the request a period makes, and what a fire starts (the catch-up
// of periods missed while nothing fired). No I/O and no clock: times come
// in as arguments.
package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Cron is a parsed schedule expression.
type Cron struct {
	// expr is the expression as the server is given it (six fields, a
	// macro, or @every).
	expr string
	// every is the interval of an @every expression; zero for cron.
	every time.Duration
	// The fields' bit sets: bit i is set when value i matches.
	sec, min, hour, dom, month, dow uint64
	// domAny and dowAny record a '*' or '?' in day-of-month and
	// day-of-week: with both restricted, a day matches either.
	domAny, dowAny bool
}

// macros are the server's named expressions, in six fields.
var macros = map[string]string{
	"@yearly":   "0 0 0 1 1 *",
	"@annually": "0 0 0 1 1 *",
	"@monthly":  "0 0 0 1 * *",
	"@weekly":   "0 0 0 * * 0",
	"@daily":    "0 0 0 * * *",
	"@midnight": "0 0 0 * * *",
	"@hourly":   "0 0 * * * *",
}

type field struct {
	name     string
	min, max int
	names    map[string]int
}

var fields = [6]field{
	{name: "seconds", max: 59},
	{name: "minutes", max: 59},
	{name: "hours", max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day of week", max: 6, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

// ParseCron reads a schedule expression: six fields (seconds, minutes,
// hours, day of month, month, day of week), five fields (the classic
// form: seconds 0 is put in front), a macro (@yearly, @annually, @monthly,
// @weekly, @daily, @midnight, @hourly) or @every <Go duration> of at
// least a second.
func ParseCron(expr string) (Cron, error) {
	expr = strings.TrimSpace(expr)
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return Cron{}, fmt.Errorf("cron %q: the interval of @every must be a duration such as 90s or 1h: %w", expr, err)
		}
		if every < time.Second {
			return Cron{}, fmt.Errorf("cron %q: the interval of @every must be at least 1s", expr)
		}
		return Cron{expr: "@every " + every.String(), every: every}, nil
	}
	six := expr
	if strings.HasPrefix(expr, "@") {
		m, ok := macros[expr]
		if !ok {
			return Cron{}, fmt.Errorf("cron %q: unknown macro (use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>)", expr)
		}
		six = m
	}
	parts := strings.Fields(six)
	switch len(parts) {
	case 5:
		parts = append([]string{"0"}, parts...)
	case 6:
	default:
		return Cron{}, fmt.Errorf("cron %q: has %d fields; want 6 (seconds minutes hours day-of-month month day-of-week) or 5 (without seconds)", expr, len(parts))
	}
	c := Cron{expr: strings.Join(parts, " ")}
	if strings.HasPrefix(expr, "@") {
		c.expr = expr
	}
	sets := [6]*uint64{&c.sec, &c.min, &c.hour, &c.dom, &c.month, &c.dow}
	for i, p := range parts {
		bits, star, err := parseField(p, fields[i])
		if err != nil {
			return Cron{}, fmt.Errorf("cron %q: %s: %w", expr, fields[i].name, err)
		}
		*sets[i] = bits
		switch i {
		case 3:
			c.domAny = star
		case 5:
			c.dowAny = star
		}
	}
	return c, nil
}

// parseField reads a comma-separated list of '*', '?', n, n-m, each with
// an optional /step; star reports a '*' or '?' without a step above 1.
func parseField(s string, f field) (bits uint64, star bool, err error) {
	for part := range strings.SplitSeq(s, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			if step, err = strconv.Atoi(stepText); err != nil || step < 1 {
				return 0, false, fmt.Errorf("step %q must be a positive number", stepText)
			}
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*" || rng == "?":
			star = star || step == 1
		default:
			a, b, isRange := strings.Cut(rng, "-")
			if lo, err = value(a, f); err != nil {
				return 0, false, err
			}
			switch {
			case isRange:
				if hi, err = value(b, f); err != nil {
					return 0, false, err
				}
			case !hasStep:
				hi = lo
			}
			if lo > hi {
				return 0, false, fmt.Errorf("range %q starts after it ends", rng)
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << v
		}
	}
	if bits == 0 {
		return 0, false, errors.New("matches nothing")
	}
	return bits, star, nil
}

func value(s string, f field) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d is outside %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// String is the expression as the server is given it (Nats-Schedule):
// six fields, a macro, or @every.
func (c Cron) String() string { return c.expr }

// Every is the interval of an @every expression, zero for the others.
func (c Cron) Every() time.Duration { return c.every }

// yearsAhead bounds the search for the next fire (an expression such as
// "0 0 0 30 2 *" never fires).
const yearsAhead = 5

// Next returns the first fire strictly after t, read in loc (UTC when
// nil), as the server computes it: it walks forward in real time, so a
// time of day that a daylight-saving change skips does not fire that day,
// and one it repeats fires once. For @every it is t plus the interval.
// The zero time means it never fires.
func (c Cron) Next(t time.Time, loc *time.Location) time.Time {
	if c.every > 0 {
		return t.Add(c.every)
	}
	if loc == nil {
		loc = time.UTC
	}
	n := t.In(loc).Truncate(time.Second).Add(time.Second)
	limit := n.Year() + yearsAhead
	// cut records whether the smaller units have been reset to their start.
	cut := false
again:
	if n.Year() > limit {
		return time.Time{}
	}
	for c.month&(1<<int(n.Month())) == 0 {
		if !cut {
			cut = true
			n = time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, loc)
		}
		if n = n.AddDate(0, 1, 0); n.Month() == time.January {
			goto again
		}
	}
	for !c.dayMatches(n) {
		if !cut {
			cut = true
			n = time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, loc)
		}
		if n = n.AddDate(0, 0, 1); n.Day() == 1 {
			goto again
		}
	}
	for c.hour&(1<<n.Hour()) == 0 {
		if !cut {
			cut = true
			n = time.Date(n.Year(), n.Month(), n.Day(), n.Hour(), 0, 0, 0, loc)
		}
		if n = n.Add(time.Hour); n.Hour() == 0 {
			goto again
		}
	}
	for c.min&(1<<n.Minute()) == 0 {
		if !cut {
			cut = true
			n = n.Truncate(time.Minute)
		}
		if n = n.Add(time.Minute); n.Minute() == 0 {
			goto again
		}
	}
	for c.sec&(1<<n.Second()) == 0 {
		if !cut {
			cut = true
		}
		if n = n.Add(time.Second); n.Second() == 0 {
			goto again
		}
	}
	return n
}

func (c Cron) dayMatches(t time.Time) bool {
	d := c.dom&(1<<t.Day()) != 0
	w := c.dow&(1<<int(t.Weekday())) != 0
	if c.domAny || c.dowAny {
		return d && w
	}
	return d || w
}

// Fires returns the fires after from up to and including to, oldest
// first, at most limit of them (the latest ones); skipped counts the
// older ones left out.
func (c Cron) Fires(from, to time.Time, loc *time.Location, limit int) (fires []time.Time, skipped int) {
	if c.every > 0 {
		n := int(to.Sub(from) / c.every)
		if n <= 0 {
			return nil, 0
		}
		skipped = max(n-limit, 0)
		for k := skipped + 1; k <= n; k++ {
			fires = append(fires, from.Add(time.Duration(k)*c.every))
		}
		return fires, skipped
	}
	for t := c.Next(from, loc); !t.IsZero() && !t.After(to); t = c.Next(t, loc) {
		fires = append(fires, t)
		if len(fires) > limit {
			fires = fires[1:]
			skipped++
		}
	}
	return fires, skipped
}

// ServerSupports reports whether a nats-server of version v (such as
// "2.15.2") fires repeating schedules: 2.14 and later. 2.12 has only the
// one-shot @at.
func ServerSupports(v string) bool {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 14
}
