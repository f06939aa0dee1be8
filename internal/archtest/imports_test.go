// Package archtest enforces the package boundaries of DESIGN.md: which weft
// packages may import which.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/weftnet/weft"

// allowed lists, for each package (prefix match on the path below the
// module), the weft packages it may import. Packages not listed may import
// anything but cmd/weft. Tests are included: a test must not reach around a
// boundary either, except where noted.
var allowed = map[string][]string{
	"sched/api":        {},
	"mesh":             {"internal/testbin"}, // meshtest runs the real binary
	"dns":              {"sched/api"},
	"lb":               {"sched/api"},
	"agent":            {"sched/api", "internal/testbin"},
	"sched":            {"sched/api", "internal/nodetls"},
	"internal/nodetls": {},
	"sched/marathon":   {"sched", "sched/api"},
	"sched/chronos":    {"sched", "sched/api"},
	// The UI renders pages from the master's API, never from its
	// internals: it sees what a token sees.
	"ui": {"sched/api"},
}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		rule, ruled := ruleFor(rel)
		all := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		for _, imp := range all {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			target := strings.TrimPrefix(imp, module+"/")
			if target == rel {
				continue // an external test package of the same package
			}
			if strings.HasPrefix(target, "cmd/") {
				t.Errorf("%s imports %s: nothing imports a command", rel, target)
				continue
			}
			if !ruled {
				continue
			}
			if strings.HasPrefix(target, rel+"/") {
				continue // its own subpackages (mesh/meshtest, ...)
			}
			if !contains(rule, target) {
				t.Errorf("%s imports %s; DESIGN.md allows it only %v", rel, target, rule)
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list found only %d packages", n)
	}
}

// ruleFor finds the most specific rule for a package.
func ruleFor(rel string) ([]string, bool) {
	best, found := "", false
	for prefix := range allowed {
		if (rel == prefix || strings.HasPrefix(rel, prefix+"/")) && len(prefix) >= len(best) {
			best, found = prefix, true
		}
	}
	if !found {
		return nil, false
	}
	// Subpackages of a ruled package not listed themselves inherit the
	// parent's rule (sched/marathon and sched/chronos are listed).
	return allowed[best], true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
