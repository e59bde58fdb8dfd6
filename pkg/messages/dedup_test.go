package messages_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/azbilling/worker/pkg/messages"
)

// dedupVector is one line of the test vectors in docs/contract.md.
type dedupVector struct {
	Request   json.RawMessage `json:"request"`
	Canonical string          `json:"canonical"`
	MsgID     string          `json:"msgId"`
}

// contractVectors reads the test vectors of the message id out of
// docs/contract.md: the JSON lines between its two markers.
func contractVectors(t *testing.T) []dedupVector {
	t.Helper()
	doc, err := os.ReadFile("../../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- dedup vectors -->")
	block, _, ok2 := strings.Cut(rest, "<!-- /dedup vectors -->")
	if !ok || !ok2 {
		t.Fatal("docs/contract.md has no dedup vectors block")
	}
	var vs []dedupVector
	for line := range strings.SplitSeq(block, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var v dedupVector
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("vector %q: %v", line, err)
		}
		vs = append(vs, v)
	}
	return vs
}

// The vectors of docs/contract.md are what DedupID computes, and each
// one's canonical form hashes to its message id as the algorithm says.
func TestDedupIDContractVectors(t *testing.T) {
	t.Parallel()
	vs := contractVectors(t)
	if len(vs) < 4 {
		t.Fatalf("docs/contract.md has %d dedup vectors, want at least 4", len(vs))
	}
	var nested, unicode, emptyProfile bool
	for _, v := range vs {
		var req messages.Request
		if err := json.Unmarshal(v.Request, &req); err != nil {
			t.Fatalf("vector request %s: %v", v.Request, err)
		}
		if got := messages.DedupID(req); got != v.MsgID {
			t.Errorf("DedupID(%s) = %s, the doc says %s", v.Request, got, v.MsgID)
		}
		sum := sha256.Sum256([]byte(v.Canonical))
		id, digest, _ := strings.Cut(v.MsgID, ":")
		if want := hex.EncodeToString(sum[:8]); digest != want {
			t.Errorf("vector %s: the canonical form %q hashes to %s, not %s", v.Request, v.Canonical, want, digest)
		}
		if id != messages.IDToken(req.ID) {
			t.Errorf("vector %s: message id starts %q, want %q", v.Request, id, messages.IDToken(req.ID))
		}
		nested = nested || len(req.Params.Documents) > 0
		unicode = unicode || strings.ContainsFunc(v.Canonical, func(r rune) bool { return r > 0x7f })
		emptyProfile = emptyProfile || req.Profile == ""
	}
	if !nested || !unicode || !emptyProfile {
		t.Errorf("the vectors lack a case: nested params %v, non-ASCII %v, empty profile %v", nested, unicode, emptyProfile)
	}
}

// earlierDedupID is DedupID as it was first written, with encoding/json;
// the digest published since must not change.
func earlierDedupID(req messages.Request) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		Kind    messages.Kind   `json:"kind"`
		Profile string          `json:"profile"`
		Params  messages.Params `json:"params"`
	}{req.Kind, req.Profile, req.Params})
	return messages.IDToken(req.ID) + ":" + hex.EncodeToString(h.Sum(nil)[:8])
}

// DedupID gives the ids it gave when encoding/json wrote its canonical
// form, for every kind of string the form can hold: escapes, HTML
// characters, line separators, astral characters, bytes that are not
// UTF-8, empty and absent lists.
func TestDedupIDStable(t *testing.T) {
	t.Parallel()
	pieces := []string{"a", "Z", "0", "-", "_", ".", " ", "<", ">", "&", `"`, `\`, "/", "\n", "\r", "\t", "\b", "\f",
		"\x00", "\x01", "\x1f", "\x7f", "é", "№", "–", "«", "📄", "\u2028", "\u2029", "\ufffd", "\xff", "\xe2\x80", "\u00a0"}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for i := range 5000 {
		req := messages.Request{Version: 1, ID: str(), Kind: messages.Kind(str()), Profile: str(),
			Params: messages.Params{SubscriptionID: str(), BillingAccountName: str(), BillingProfileName: str(),
				InvoiceName: str(), DownloadToken: str(), DocumentName: str(), PeriodStartDate: str(), PeriodEndDate: str()},
			Labels: map[string]string{"l": str()}}
		if i%4 == 0 {
			req.Kind = messages.Kinds[rng.IntN(len(messages.Kinds))]
		}
		switch rng.IntN(3) {
		case 1:
			req.Params.Documents = []messages.DocumentRef{}
			req.Params.DocumentKinds = []string{}
		case 2:
			for range 1 + rng.IntN(3) {
				req.Params.Documents = append(req.Params.Documents, messages.DocumentRef{DocumentName: str(), InvoiceName: str()})
				req.Params.DocumentKinds = append(req.Params.DocumentKinds, str())
			}
		}
		if got, want := messages.DedupID(req), earlierDedupID(req); got != want {
			b, _ := json.Marshal(req)
			t.Fatalf("DedupID(%s) = %s, was %s", b, got, want)
		}
	}
}

// Labels, deadline, archive and version are not part of the digest; the
// order the params came in is not either.
func TestDedupIDIgnoresWhatIsNotTheOperation(t *testing.T) {
	t.Parallel()
	a, err := messages.DecodeRequest([]byte(`{"version":1,"id":"r1","kind":"invoice-summary","params":{"billingAccountName":"12345678","invoiceName":"G123456789"}}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := messages.DecodeRequest([]byte(`{"params":{"invoiceName":"G123456789","billingAccountName":"12345678"},"kind":"invoice-summary","id":"r1","version":1,"labels":{"x":"y"},"archive":false,"deadline":"2030-01-01T00:00:00Z"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if messages.DedupID(a) != messages.DedupID(b) {
		t.Errorf("DedupID differs: %s, %s", messages.DedupID(a), messages.DedupID(b))
	}
	c := a
	c.Profile = "contoso"
	if messages.DedupID(a) == messages.DedupID(c) {
		t.Error("DedupID ignores the profile")
	}
	if !bytes.HasPrefix([]byte(messages.DedupID(a)), []byte("r1:")) {
		t.Errorf("DedupID %s does not start with the id", messages.DedupID(a))
	}
}
