// Package redact removes credentials from text before it is logged, put in a
// span attribute or an error message: the signature of a SAS URL, bearer
// tokens and client secrets.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every redacted value.
const Mask = "REDACTED"

// secretParams are query parameters whose values are credentials: SAS
// signatures and OAuth material. Names are compared in lower case.
var secretParams = map[string]bool{
	"sig":                   true,
	"signature":             true,
	"x-amz-signature":       true,
	"client_secret":         true,
	"client_assertion":      true,
	"access_token":          true,
	"refresh_token":         true,
	"code":                  true,
	"sessiontoken":          false, // ARM's polling session marker: not a credential
	"x-ms-copy-source-auth": true,
	"downloadtoken":         true, // 2020-05-01's download token: it opens the document
}

// URL returns raw with the values of credential query parameters and any
// user info replaced by Mask. A value that does not parse as a URL is run
// through String instead.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return String(raw)
	}
	return URLOf(u)
}

// URLOf is URL for a parsed URL; u is not modified.
func URLOf(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(Mask)
	}
	if c.RawQuery != "" {
		q := c.Query()
		changed := false
		for k := range q {
			if secretParams[strings.ToLower(k)] {
				q[k] = []string{Mask}
				changed = true
			}
		}
		if changed {
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

var (
	bearerRE = regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9\-._~+/]+=*`)
	// Anywhere, not only after ? or &: masking a look-alike in an error
	// message costs nothing, missing a signature would.
	paramRE = regexp.MustCompile(`(?i)((?:sig|signature|x-amz-signature|x-ms-copy-source-auth|client_secret|client_assertion|access_token|refresh_token|downloadtoken)=)[^&\s"'<>]*`)
	jsonRE  = regexp.MustCompile(`(?i)("(?:access_token|refresh_token|client_secret|client_assertion)"\s*:\s*")[^"]*`)
)

// String masks credentials that appear anywhere in free text: bearer
// tokens, credential query parameters inside URLs, and OAuth JSON fields.
func String(s string) string {
	s = bearerRE.ReplaceAllString(s, "${1}"+Mask)
	s = paramRE.ReplaceAllString(s, "${1}"+Mask)
	return jsonRE.ReplaceAllString(s, "${1}"+Mask)
}
