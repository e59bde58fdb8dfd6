package schedule

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// idPattern is the rule of a schedule id: short enough that the id, a dash
// and the longest period key (21 characters) make a request id.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Compiled is a checked schedule with its expression, zone and period
// parsed.
type Compiled struct {
	messages.Schedule
	Cron     Cron
	Location *time.Location
	Relative Relative
}

// Compile checks a schedule and parses its parts: the id, the cron
// expression, the zone, the period and the request template (a request
// built from it must validate). The error says every problem found.
func Compile(s messages.Schedule) (Compiled, error) {
	c := Compiled{Schedule: s, Location: time.UTC}
	var errs []error
	if s.Version != messages.Version {
		errs = append(errs, fmt.Errorf("version must be %d, not %d", messages.Version, s.Version))
	}
	if !idPattern.MatchString(s.ID) {
		errs = append(errs, fmt.Errorf("id %q must be 1 to 64 letters, digits, '-' or '_'", s.ID))
	}
	var err error
	if c.Cron, err = ParseCron(s.Cron); err != nil {
		errs = append(errs, err)
	}
	if s.TimeZone != "" {
		if c.Location, err = time.LoadLocation(s.TimeZone); err != nil || s.TimeZone == "Local" {
			errs = append(errs, fmt.Errorf("timeZone %q is not an IANA time zone name such as Europe/Amsterdam", s.TimeZone))
			c.Location = time.UTC
		} else if c.Cron.Every() > 0 {
			errs = append(errs, errors.New("timeZone is not allowed with @every (the server refuses it); use a cron expression"))
		}
	}
	if c.Relative, err = ParseRelative(s.Period); err != nil {
		errs = append(errs, err)
	}
	p := s.Request.Params
	if s.Period != "" && (p.PeriodStartDate != "" || p.PeriodEndDate != "") {
		errs = append(errs, errors.New("request.params.periodStartDate and periodEndDate come from the period; leave them out"))
	}
	if len(errs) == 0 {
		sample := c.Request(c.Relative.Resolve(time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC), nil))
		if err := sample.Validate(); err != nil {
			if s.Period != "" && takesNoPeriod(err) {
				errs = append(errs, fmt.Errorf("kind %s takes no period: leave period out", s.Request.Kind))
			} else {
				errs = append(errs, fmt.Errorf("request: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return Compiled{}, &Error{ID: s.ID, Problems: errs}
	}
	return c, nil
}

// Error is a schedule that does not compile.
type Error struct {
	ID       string
	Problems []error
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return fmt.Sprintf("invalid schedule %q: %s", e.ID, strings.Join(msgs, "; "))
}

func takesNoPeriod(err error) bool {
	var v *messages.ValidationError
	if !errors.As(err, &v) {
		return false
	}
	for _, f := range v.Fields {
		if f.Field == "params.periodStartDate" && f.Rule == "not_allowed" {
			return true
		}
	}
	return false
}

// RequestID is the id of the request the schedule makes for period p:
// <schedule id>-<period key>.
func RequestID(scheduleID string, p Period) string { return scheduleID + "-" + p.Key }

// Request is the request the schedule makes for period p: the template,
// under RequestID, with the period's dates and the labels schedule and
// period. The same schedule and period always make the same request, so
// the stream's duplicate check and the worker's stored state keep one
// operation per period however often it is asked for.
func (c Compiled) Request(p Period) messages.Request {
	t := c.Schedule.Request
	r := messages.Request{
		Version: messages.Version, ID: RequestID(c.ID, p), Kind: t.Kind, Params: t.Params,
		Profile: t.Profile, Archive: t.Archive,
		Labels: map[string]string{messages.LabelSchedule: c.ID, messages.LabelPeriod: p.Key},
	}
	maps.Copy(r.Labels, t.Labels)
	r.Labels[messages.LabelSchedule], r.Labels[messages.LabelPeriod] = c.ID, p.Key
	if c.Relative.Name != "" {
		r.Params.PeriodStartDate, r.Params.PeriodEndDate = p.From, p.To
	}
	r.Params.Documents = slices.Clone(t.Params.Documents)
	r.Params.DocumentKinds = slices.Clone(t.Params.DocumentKinds)
	r.Params.IncludeAccounts = slices.Clone(t.Params.IncludeAccounts)
	r.Params.ExcludeAccounts = slices.Clone(t.Params.ExcludeAccounts)
	r.Params.AgreementTypes = slices.Clone(t.Params.AgreementTypes)
	return r
}
