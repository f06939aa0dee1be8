package marathon

import (
	"go/build"
	"strings"
	"testing"
)

// TestImports enforces DESIGN.md: marathon imports only sched and
// sched/api of weft.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/weftnet/weft/") &&
			imp != "github.com/weftnet/weft/sched" && imp != "github.com/weftnet/weft/sched/api" {
			t.Errorf("marathon imports %s; it may import only sched and sched/api of weft", imp)
		}
	}
}
