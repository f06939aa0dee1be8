package dns

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestImportRules enforces DESIGN.md: dns imports sched/api and nothing
// else of weft (never sched internals, never mesh).
func TestImportRules(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/weftnet/weft/") && p != "github.com/weftnet/weft/sched/api" {
				t.Errorf("%s imports %s; dns may only import sched/api of weft", e.Name(), p)
			}
		}
	}
}
