package worker_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// settlers are the methods of jetstream.Msg that settle a message (or
// extend its ack deadline).
var settlers = map[string]bool{
	"Ack": true, "DoubleAck": true, "Nak": true, "NakWithDelay": true,
	"Term": true, "TermWithReason": true, "InProgress": true,
}

// Messages are settled in one place: every call of a settling method in
// the package's code is in the function settle, so that what a step means
// for its message is decided once.
func TestMessagesAreSettledInOnePlace(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	sites := map[string][]string{} // function -> call sites
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && settlers[sel.Sel.Name] {
					sites[fn.Name.Name] = append(sites[fn.Name.Name], fset.Position(call.Pos()).String()+" "+sel.Sel.Name)
				}
				return true
			})
		}
	}
	if len(sites["settle"]) == 0 {
		t.Fatalf("no settling call found in settle: is the test reading the package's files? %v", files)
	}
	var elsewhere []string
	for fn, calls := range sites {
		if fn != "settle" {
			elsewhere = append(elsewhere, fn+": "+strings.Join(calls, ", "))
		}
	}
	sort.Strings(elsewhere)
	if len(elsewhere) > 0 {
		t.Errorf("messages settled outside settle:\n%s", strings.Join(elsewhere, "\n"))
	}
}
