package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// The JSON names of the request's fields, level by level, read from the
// struct tags so that they cannot drift from the types.
var (
	requestFieldNames  = jsonFieldNames(reflect.TypeFor[Request]())
	paramsFieldNames   = jsonFieldNames(reflect.TypeFor[Params]())
	documentFieldNames = jsonFieldNames(reflect.TypeFor[DocumentRef]())
	paramsName         = jsonFieldName(reflect.TypeFor[Request](), "Params")
	documentsName      = jsonFieldName(reflect.TypeFor[Params](), "Documents")
)

// maxUnknownFields bounds how many unknown fields one error lists, so that
// a request full of them does not make a failure event larger than itself
// by much.
const maxUnknownFields = 32

// jsonFieldNames lists the names encoding/json gives the exported fields of
// struct type t (none of the request's types embeds a struct).
func jsonFieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name, ok := jsonTagName(t.Field(i)); ok {
			names = append(names, name)
		}
	}
	return names
}

// jsonFieldName is the JSON name of t's Go field goField; it panics when t
// has no such field, which any test of the package would show.
func jsonFieldName(t reflect.Type, goField string) string {
	f, ok := t.FieldByName(goField)
	if !ok {
		panic(fmt.Sprintf("messages: %s has no field %s", t, goField))
	}
	name, ok := jsonTagName(f)
	if !ok {
		panic(fmt.Sprintf("messages: %s.%s is not encoded", t, goField))
	}
	return name
}

func jsonTagName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	if !f.IsExported() || tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

// knownField says whether encoding/json would decode key into one of names:
// it matches a key to a field exactly or, failing that, ignoring case.
func knownField(names []string, key string) bool {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return true
		}
	}
	return false
}

// unknownFields lists every field of the request document data that is not
// a field of a version 1 request, by its JSON path: the top level, params,
// and each params.documents[i]. Values that are not of the expected shape
// are skipped (their type error is another problem). It assumes data holds
// valid JSON, as it does when the strict decoder got as far as an unknown
// field.
func unknownFields(data []byte) []FieldError {
	var w unknownWalk
	for _, top := range objectMembers(data) {
		if !knownField(requestFieldNames, top.key) {
			w.add(top.key)
			continue
		}
		if !strings.EqualFold(top.key, paramsName) {
			continue
		}
		for _, p := range objectMembers(top.value) {
			field := paramsName + "." + p.key
			if !knownField(paramsFieldNames, p.key) {
				w.add(field)
				continue
			}
			if !strings.EqualFold(p.key, documentsName) {
				continue
			}
			var docs []json.RawMessage
			if json.Unmarshal(p.value, &docs) != nil {
				continue
			}
			for i, doc := range docs {
				for _, d := range objectMembers(doc) {
					if !knownField(documentFieldNames, d.key) {
						w.add(fmt.Sprintf("%s.%s[%d].%s", paramsName, documentsName, i, d.key))
					}
				}
			}
		}
	}
	return w.result()
}

type unknownWalk struct {
	fields []FieldError
	more   int
}

func (w *unknownWalk) add(path string) {
	if len(w.fields) == maxUnknownFields {
		w.more++
		return
	}
	w.fields = append(w.fields, FieldError{Field: path, Rule: "unknown_field", Message: "is not a field of a version 1 request"})
}

func (w *unknownWalk) result() []FieldError {
	if w.more > 0 {
		w.fields = append(w.fields, FieldError{Rule: "unknown_field", Message: fmt.Sprintf("and %d more unknown fields", w.more)})
	}
	return w.fields
}

type member struct {
	key   string
	value json.RawMessage
}

// objectMembers lists the members of a JSON object in document order,
// duplicates included (encoding/json decodes every one of them); nil when
// data is not an object.
func objectMembers(data []byte) []member {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return out
		}
		key, ok := t.(string)
		if !ok {
			return out
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return out
		}
		out = append(out, member{key: key, value: value})
	}
	return out
}
