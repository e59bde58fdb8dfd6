package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"
)

// DedupID is the Nats-Msg-Id a client should publish req with: its id, a
// colon, and a digest of what identifies its operation (kind, profile and
// parameters). A resubmission of the same request within the work stream's
// duplicate window is then dropped by the server, while a request that
// reuses the id with other content reaches the worker, which refuses it
// with id_conflict.
//
// docs/contract.md ("The message id") specifies the digest byte for byte,
// with test vectors, for clients in other languages: the first 8 bytes of
// the SHA-256 of dedupCanonical(req), in lower-case hex. An id that breaks
// the id rule is written as Invalid.
func DedupID(req Request) string {
	sum := sha256.Sum256(dedupCanonical(req))
	return IDToken(req.ID) + ":" + hex.EncodeToString(sum[:8])
}

// dedupCanonical returns the canonical form of req's kind, profile and
// params that DedupID hashes: one JSON object without white space, its
// keys in a fixed order, an empty parameter left out, and a line feed at
// the end. It is written here byte by byte, not by encoding/json, so that
// it stays what docs/contract.md specifies whatever the JSON encoder does.
func dedupCanonical(req Request) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"kind":`...)
	b = appendCanonicalString(b, string(req.Kind))
	b = append(b, `,"profile":`...)
	b = appendCanonicalString(b, req.Profile)
	b = append(b, `,"params":{`...)
	p := req.Params
	first := true
	key := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendCanonicalString(b, name)
		b = append(b, ':')
	}
	str := func(name, value string) {
		if value != "" {
			key(name)
			b = appendCanonicalString(b, value)
		}
	}
	str("subscriptionId", p.SubscriptionID)
	str("billingAccountName", p.BillingAccountName)
	str("billingProfileName", p.BillingProfileName)
	str("invoiceName", p.InvoiceName)
	str("downloadToken", p.DownloadToken)
	if len(p.Documents) > 0 {
		key("documents")
		b = append(b, '[')
		for i, d := range p.Documents {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if d.DocumentName != "" {
				b = append(b, `"documentName":`...)
				b = appendCanonicalString(b, d.DocumentName)
				b = append(b, ',')
			}
			b = append(b, `"invoiceName":`...)
			b = appendCanonicalString(b, d.InvoiceName)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	str("documentName", p.DocumentName)
	str("periodStartDate", p.PeriodStartDate)
	str("periodEndDate", p.PeriodEndDate)
	if len(p.DocumentKinds) > 0 {
		key("documentKinds")
		b = append(b, '[')
		for i, k := range p.DocumentKinds {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonicalString(b, k)
		}
		b = append(b, ']')
	}
	return append(b, "}}\n"...)
}

// appendCanonicalString appends s as a JSON string of the canonical form:
// '"' and '\' escaped with a backslash; \b, \f, \n, \r, \t; every other
// byte below 0x20, and '<', '>', '&', U+2028 and U+2029, as \u and four
// lower-case hex digits; every other character as its UTF-8 bytes. A byte
// that is not part of valid UTF-8 is written \ufffd.
func appendCanonicalString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
