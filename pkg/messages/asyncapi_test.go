package messages_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azbilling/worker/pkg/messages"
)

// asyncAPIFile is the AsyncAPI document of the contract, relative to this
// package; its relative $refs are relative to its own folder.
const asyncAPIFile = "../../docs/asyncapi.json"

func loadAsyncAPI(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(asyncAPIFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["asyncapi"] != "3.0.0" {
		t.Fatalf("asyncapi = %v, want 3.0.0", doc["asyncapi"])
	}
	return doc
}

// pointer resolves a local reference (#/a/b) in doc.
func pointer(t *testing.T, doc map[string]any, ref string) map[string]any {
	t.Helper()
	if !strings.HasPrefix(ref, "#/") {
		t.Fatalf("not a local reference: %s", ref)
	}
	var node any = doc
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not under an object", ref, tok)
		}
		if node, ok = m[tok]; !ok {
			t.Fatalf("%s does not resolve (no %q)", ref, tok)
		}
	}
	m, ok := node.(map[string]any)
	if !ok {
		t.Fatalf("%s is not an object", ref)
	}
	return m
}

// deref follows local references.
func deref(t *testing.T, doc, node map[string]any) map[string]any {
	t.Helper()
	for {
		ref, ok := node["$ref"].(string)
		if !ok || !strings.HasPrefix(ref, "#/") {
			return node
		}
		node = pointer(t, doc, ref)
	}
}

// walkJSON calls f on every object in node.
func walkJSON(node any, f func(map[string]any)) {
	switch n := node.(type) {
	case map[string]any:
		f(n)
		for _, v := range n {
			walkJSON(v, f)
		}
	case []any:
		for _, v := range n {
			walkJSON(v, f)
		}
	}
}

// Every local reference resolves; every other one names a schema file that
// exists and is one the schema tests check.
func TestAsyncAPIReferences(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	checked := map[string]bool{}
	for _, c := range checkedSchemas {
		checked[path.Join("pkg/messages/schema", c.file)] = true
	}
	referenced := map[string]bool{}
	walkJSON(doc, func(n map[string]any) {
		ref, ok := n["$ref"].(string)
		if !ok {
			return
		}
		if strings.HasPrefix(ref, "#") {
			pointer(t, doc, ref)
			return
		}
		file := path.Join("docs", ref) // relative to the document's folder
		if !checked[file] {
			t.Errorf("$ref %s: %s is not a schema the schema tests check", ref, file)
		}
		if _, err := os.Stat("../../" + file); err != nil {
			t.Errorf("$ref %s: %v", ref, err)
		}
		referenced[file] = true
	})
	for file := range checked {
		if !referenced[file] {
			t.Errorf("%s is not referenced", file)
		}
	}
	// Each message's payload is its schema.
	msgs := doc["components"].(map[string]any)["messages"].(map[string]any)
	for name, file := range map[string]string{"request": "request", "completed": "completed", "failed": "failed", "schedule": "schedule", "fire": "schedule"} {
		payload := deref(t, doc, msgs[name].(map[string]any))["payload"].(map[string]any)
		if got := payload["schema"].(map[string]any)["$ref"]; got != "../pkg/messages/schema/"+file+".schema.json" {
			t.Errorf("message %s: payload %v", name, got)
		}
		if !strings.HasPrefix(payload["schemaFormat"].(string), "application/schema+json;version=draft-2020-12") {
			t.Errorf("message %s: schemaFormat %v", name, payload["schemaFormat"])
		}
	}
}

// layoutCase is a channel's parameters and the subject the Layout makes of
// them.
type layoutCase struct {
	params  map[string]string
	subject string
	filters []string // Layout filters the subject must match
}

// Every channel's address, filled in with its parameters, is the subject
// messages.Layout makes; every Layout subject has its channel; the
// parameters' enums hold every token the Layout puts there; the streams
// are the Layout's.
func TestAsyncAPIChannelsMatchLayout(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	channels := doc["channels"].(map[string]any)
	kinds := append(slices.Clone(messages.Kinds), "not-a-kind")
	ids := []string{"inv-2026-10-contoso", "bad id!", ""}
	for _, prefix := range []string{"billing", "acme-billing"} {
		l := messages.NewLayout(prefix)
		upper := strings.ToUpper(strings.ReplaceAll(prefix, "-", "_")) // the prefix parameter's rule
		want := map[string][]layoutCase{}
		streams := map[string]string{
			"requests": l.WorkStream(), "completed": l.EventsStream(), "failed": l.EventsStream(),
			"deadLetters": l.DeadLetterStream(), "schedules": l.WorkStream(), "polls": l.WorkStream(),
			"ended": l.WorkStream(), "cron": l.WorkStream(), "fires": l.WorkStream(),
		}
		for _, k := range kinds {
			if k.Valid() {
				want["requests"] = append(want["requests"], layoutCase{map[string]string{"prefix": prefix, "kind": string(k)}, l.Request(k), []string{l.Requests()}})
			}
			for _, seq := range []uint64{1, 42} {
				want["deadLetters"] = append(want["deadLetters"], layoutCase{map[string]string{"prefix": prefix, "kind": messages.KindToken(k), "seq": strconv.FormatUint(seq, 10)},
					l.DeadLetter(k, seq), []string{l.DeadLetters()}})
			}
			for _, id := range ids {
				p := map[string]string{"prefix": prefix, "kind": messages.KindToken(k), "id": messages.IDToken(id)}
				want["completed"] = append(want["completed"], layoutCase{p, l.Event(messages.OutcomeCompleted, k, id), []string{l.Events(), l.EventsFor(id)}})
				want["failed"] = append(want["failed"], layoutCase{p, l.Event(messages.OutcomeFailed, k, id), []string{l.Events(), l.EventsFor(id)}})
			}
		}
		for _, id := range ids {
			due := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			want["schedules"] = append(want["schedules"], layoutCase{map[string]string{"prefix": prefix, "due": strconv.FormatInt(due.Unix(), 10), "id": messages.IDToken(id)},
				l.Schedule(id, due), []string{l.Internal(), l.SchedulesDue(due.Unix())}})
		}
		for _, seq := range []uint64{1, 42} {
			want["deadLetters"] = append(want["deadLetters"], layoutCase{map[string]string{"prefix": prefix, "kind": messages.FireToken, "seq": strconv.FormatUint(seq, 10)},
				l.FireDeadLetter(seq), []string{l.DeadLetters()}})
		}
		for _, id := range []string{"invoices-monthly", "a_b-1"} {
			p := map[string]string{"prefix": prefix, "scheduleId": id}
			want["cron"] = append(want["cron"], layoutCase{p, l.ScheduleSubject(id), []string{l.Internal(), l.ScheduleSubjects()}})
			want["fires"] = append(want["fires"], layoutCase{p, l.ScheduleFire(id), []string{l.Internal(), l.ScheduleFires()}})
			if !l.IsScheduleFire(l.ScheduleFire(id)) || l.IsScheduleFire(l.ScheduleSubject(id)) {
				t.Errorf("IsScheduleFire of %s", id)
			}
		}
		want["polls"] = []layoutCase{{map[string]string{"prefix": prefix}, l.Polls(), []string{l.Internal()}}}
		want["ended"] = []layoutCase{{map[string]string{"prefix": prefix}, l.ChildrenEnded(), []string{l.Internal()}}}

		if got, w := sortedKeys(channels), sortedKeys(toAny(want)); !reflect.DeepEqual(got, w) {
			t.Fatalf("channels %v, want %v", got, w)
		}
		for name, cases := range want {
			ch := channels[name].(map[string]any)
			addr := ch["address"].(string)
			params := map[string]map[string]any{}
			for p, v := range ch["parameters"].(map[string]any) {
				params[p] = deref(t, doc, v.(map[string]any))
			}
			var inAddr []string
			for _, m := range regexp.MustCompile(`\{([^}]*)\}`).FindAllStringSubmatch(addr, -1) {
				inAddr = append(inAddr, m[1])
			}
			if got := sortedKeys(toAny(params)); !reflect.DeepEqual(got, sorted(inAddr)) {
				t.Errorf("channel %s: parameters %v, address %s", name, got, addr)
			}
			for _, c := range cases {
				subject := addr
				for p, v := range c.params {
					if enum, ok := params[p]["enum"].([]any); ok && !slices.Contains(enum, any(v)) {
						t.Errorf("channel %s: parameter %s lacks %q", name, p, v)
					}
					subject = strings.ReplaceAll(subject, "{"+p+"}", v)
				}
				if subject != c.subject {
					t.Errorf("channel %s: address %s gives %s, Layout %s", name, addr, subject, c.subject)
				}
				for _, f := range c.filters {
					if !subjectMatches(f, c.subject) {
						t.Errorf("channel %s: %s is outside the filter %s", name, c.subject, f)
					}
				}
			}
			if got := strings.ReplaceAll(ch["x-stream"].(string), "{PREFIX}", upper); got != streams[name] {
				t.Errorf("channel %s: stream %s, Layout %s", name, got, streams[name])
			}
		}
	}
	// The kinds of requests are exactly the Go kinds.
	enum := pointer(t, doc, "#/components/parameters/requestKind")["enum"].([]any)
	var got []string
	for _, k := range enum {
		got = append(got, k.(string))
	}
	var kindNames []string
	for _, k := range messages.Kinds {
		kindNames = append(kindNames, string(k))
	}
	if !reflect.DeepEqual(got, kindNames) {
		t.Errorf("requestKind enum %v, Kinds %v", got, kindNames)
	}
	// Clients operate on no internal channel.
	for name, op := range doc["operations"].(map[string]any) {
		ch := pointer(t, doc, op.(map[string]any)["channel"].(map[string]any)["$ref"].(string))
		for _, tag := range ch["tags"].([]any) {
			if tag.(map[string]any)["name"] == "internal" {
				t.Errorf("operation %s is on an internal channel", name)
			}
		}
	}
}

func toAny[V any](m map[string]V) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// subjectMatches reports whether a NATS filter (with * and >) matches
// subject.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// headerConstants returns the Header* constants of subject.go and
// schedule.go.
func headerConstants(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, file := range []string{"subject.go", "schedule.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		headerConstantsOf(t, f, out)
	}
	if len(out) == 0 {
		t.Fatal("no Header constants in subject.go")
	}
	return out
}

func headerConstantsOf(t *testing.T, f *ast.File, out map[string]string) {
	t.Helper()
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Header") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[v] = name.Name
			}
		}
	}
}

// messageHeaders returns the header schemas of a message, allOf and
// references followed.
func messageHeaders(t *testing.T, doc, schema map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	var collect func(map[string]any)
	collect = func(n map[string]any) {
		n = deref(t, doc, n)
		if props, ok := n["properties"].(map[string]any); ok {
			for name, p := range props {
				out[name] = p.(map[string]any)
			}
		}
		allOf, _ := n["allOf"].([]any)
		for _, sub := range allOf {
			collect(sub.(map[string]any))
		}
	}
	collect(schema)
	return out
}

// Every header the document names is a constant of subject.go, and every
// such constant is documented; the CloudEvents values are the Go ones.
func TestAsyncAPIHeaders(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	constants := headerConstants(t)
	documented := map[string]bool{}
	perMessage := map[string]map[string]map[string]any{}
	for name, m := range doc["components"].(map[string]any)["messages"].(map[string]any) {
		m := deref(t, doc, m.(map[string]any))
		if h, ok := m["headers"].(map[string]any); ok {
			perMessage[name] = messageHeaders(t, doc, h)
			for header := range perMessage[name] {
				documented[header] = true
			}
		}
	}
	walkJSON(doc, func(n map[string]any) {
		if loc, ok := n["location"].(string); ok {
			if header, ok := strings.CutPrefix(loc, "$message.header#/"); ok {
				if !documented[header] {
					t.Errorf("location %s names an undocumented header", loc)
				}
			}
		}
	})
	for header := range documented {
		if _, ok := constants[header]; !ok {
			t.Errorf("header %q is documented but is no constant of pkg/messages/subject.go or schedule.go", header)
		}
	}
	for header, name := range constants {
		if !documented[header] {
			t.Errorf("messages.%s (%q) is not documented", name, header)
		}
	}
	for msg, want := range map[string]map[string]string{
		"completed": {
			messages.HeaderOutcome: messages.OutcomeCompleted, messages.HeaderCEType: messages.CloudEventTypeCompleted,
			messages.HeaderCEDataSchema: messages.SchemaIDCompleted, messages.HeaderCESpecVersion: messages.CloudEventsSpecVersion,
			messages.HeaderContentType: messages.ContentTypeJSON,
		},
		"failed": {
			messages.HeaderOutcome: messages.OutcomeFailed, messages.HeaderCEType: messages.CloudEventTypeFailed,
			messages.HeaderCEDataSchema: messages.SchemaIDFailed, messages.HeaderCESpecVersion: messages.CloudEventsSpecVersion,
			messages.HeaderContentType: messages.ContentTypeJSON,
		},
	} {
		for header, value := range want {
			if got := perMessage[msg][header]["const"]; got != value {
				t.Errorf("message %s: header %s const %v, want %q", msg, header, got, value)
			}
		}
	}
}

// The failure codes are messages.Codes, in the document and in the failed
// event's schema.
func TestAsyncAPIFailureCodes(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	var want []string
	for _, c := range messages.Codes {
		want = append(want, string(c))
	}
	strs := func(v []any) []string {
		var out []string
		for _, s := range v {
			out = append(out, s.(string))
		}
		return out
	}
	if got := strs(pointer(t, doc, "#/components/schemas/failureCode")["enum"].([]any)); !reflect.DeepEqual(got, want) {
		t.Errorf("failureCode enum %v, messages.Codes %v", got, want)
	}
	_, failed := compile(t, "failed.schema.json")
	got := strs(failed["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any))
	sort.Strings(got)
	if !reflect.DeepEqual(got, sorted(want)) {
		t.Errorf("failed.schema.json code enum %v, messages.Codes %v", got, want)
	}
}
