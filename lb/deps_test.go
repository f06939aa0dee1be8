package lb

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports enforces DESIGN.md: lb imports only sched/api of weft.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/weftnet/weft/") && imp != "github.com/weftnet/weft/sched/api" {
			t.Errorf("lb imports %s; it may import only sched/api of weft", imp)
		}
	}
}
