package billing

import (
	"net/url"
	"strings"

	"github.com/azbilling/worker/internal/redact"
)

// MaxLocationLen bounds a polling URL (Azure's are opaque and can be long).
const MaxLocationLen = 16 << 10

// CheckLocation decides whether the bearer token may be sent to loc, a
// polling URL Azure handed back. It must be on the endpoint's host and port
// (an explicit default port is the same as none), over https (http only when
// the endpoint itself is http, which the client allows for a local emulator),
// and carry no user info. A relative URL is resolved against the endpoint.
func CheckLocation(endpoint *url.URL, loc string) (*url.URL, error) {
	if len(loc) > MaxLocationLen {
		return nil, &LocationError{Location: redact.URL(loc[:256]) + "...", Reason: "longer than 16 KiB"}
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, &LocationError{Location: "(unparsable)", Reason: "not a URL"}
	}
	u = endpoint.ResolveReference(u)
	reject := func(reason string) (*url.URL, error) {
		return nil, &LocationError{Location: redact.URLOf(u), Reason: reason}
	}
	switch {
	case u.User != nil:
		return reject("it carries user info")
	case !strings.EqualFold(u.Scheme, endpoint.Scheme):
		return reject("its scheme is " + u.Scheme + ", the ARM endpoint's is " + endpoint.Scheme)
	case !strings.EqualFold(u.Hostname(), endpoint.Hostname()) || effectivePort(u) != effectivePort(endpoint):
		return reject("it is not on the ARM endpoint's host " + endpoint.Host)
	case u.Fragment != "":
		u.Fragment = ""
	}
	return u, nil
}

func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}
