package console

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// traceIDPlaceholder is what TraceURL's template replaces with a trace id.
const traceIDPlaceholder = "{trace_id}"

// checkTraceURL refuses a trace URL template that is not an absolute http
// or https URL holding {trace_id}.
func checkTraceURL(tmpl string) error {
	if tmpl == "" {
		return nil
	}
	if !strings.Contains(tmpl, traceIDPlaceholder) {
		return fmt.Errorf("console: the trace URL %q has no %s to replace", tmpl, traceIDPlaceholder)
	}
	u, err := url.Parse(strings.ReplaceAll(tmpl, traceIDPlaceholder, "0"))
	if err != nil {
		return fmt.Errorf("console: the trace URL %q: %w", tmpl, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("console: the trace URL must be an absolute http or https URL")
	}
	return nil
}

// traceLink is the tracing backend's link to trace id ("" without a
// template or a trace id). The id is escaped for any part of the URL it
// lands in (a path segment, a query value or a fragment).
func traceLink(tmpl, id string) string {
	if tmpl == "" || id == "" {
		return ""
	}
	return strings.ReplaceAll(tmpl, traceIDPlaceholder, strings.ReplaceAll(url.QueryEscape(id), "+", "%20"))
}
