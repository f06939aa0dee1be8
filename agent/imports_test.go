package agent

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlySchedAPI enforces DESIGN.md: the agent runs far from the
// master and talks to it through sched/api only (mesh for membership facts);
// its own subpackages (agent/cgroups) are its own code.
func TestImportsOnlySchedAPI(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"github.com/weftnet/weft/sched/api": true, "github.com/weftnet/weft/mesh": true}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/weftnet/weft/") && !allowed[p] && !strings.HasPrefix(p, "github.com/weftnet/weft/agent/") {
				t.Errorf("%s imports %s; the agent may import only sched/api (and mesh)", f, p)
			}
		}
	}
}
