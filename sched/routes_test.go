package sched_test

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/chronos"
	"github.com/weftnet/weft/sched/marathon"
)

// muxPatterns lists every pattern registered on mux. net/http does not
// export them; its routing index holds each one (index.segments for
// patterns without a trailing multi-segment wildcard, index.multis for
// the others), and reflect reads those unexported fields.
func muxPatterns(t *testing.T, mux *http.ServeMux) []string {
	t.Helper()
	idx := reflect.ValueOf(mux).Elem().FieldByName("index")
	if !idx.IsValid() {
		t.Fatal("http.ServeMux has no routing index any more: update muxPatterns for this Go version")
	}
	seen := map[string]bool{}
	add := func(p reflect.Value) {
		if s := p.Elem().FieldByName("str"); s.IsValid() {
			seen[s.String()] = true
		}
	}
	for it := idx.FieldByName("segments").MapRange(); it.Next(); {
		for i := 0; i < it.Value().Len(); i++ {
			add(it.Value().Index(i))
		}
	}
	multis := idx.FieldByName("multis")
	for i := 0; i < multis.Len(); i++ {
		add(multis.Index(i))
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// TestEveryRouteClassified builds a master with the Marathon and Chronos
// frameworks and pprof on, enumerates every route of its mux, and fails on
// a route the ACL door has no class for (such a route would be open to
// every token, or, now, refused to all but management tokens without
// anyone having decided so). A route added later without a class fails
// here first.
func TestEveryRouteClassified(t *testing.T) {
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers()
	cfg.Pprof = true
	cfg.Frameworks = []sched.Framework{marathon.New(marathon.DefaultConfig()), chronos.New(chronos.DefaultConfig())}
	m, err := sched.NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pats := muxPatterns(t, m.Mux())
	// Sanity: the enumeration sees the routes it must.
	for _, want := range []string{"GET /v1/state", "POST /v1/agents/{id}/status", "/v2/apps/", "/v1/deployments/", "/v1/apps/problems",
		"PUT /v1/scheduler/job/{name}", "GET /scheduler/jobs", "DELETE /v1/acl/token/{accessor}", "GET /debug/pprof/"} {
		found := false
		for _, p := range pats {
			found = found || p == want
		}
		if !found {
			t.Fatalf("route %q not among the %d enumerated: %v", want, len(pats), pats)
		}
	}
	if len(pats) < 50 {
		t.Fatalf("only %d routes enumerated: %v", len(pats), pats)
	}
	for _, p := range pats {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			method, path = "", p
		}
		path = wildcard.ReplaceAllString(path, "x")
		if strings.HasSuffix(path, "/") {
			path += "x"
		}
		methods := []string{method}
		if method == "" {
			methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}
		}
		for _, meth := range methods {
			r := httptest.NewRequest(meth, path, nil)
			class := sched.RouteClass(r)
			if class == "" {
				t.Errorf("route %q (%s %s) has no ACL class: give it one in routeClass (sched/acl_http.go)", p, meth, path)
			}
			if class == "not-found" && p != "/v1/" && p != "/v2/" {
				t.Errorf("route %q (%s %s) is classified as the 404 catch-all", p, meth, path)
			}
		}
	}
	t.Logf("%d routes, each with an ACL class", len(pats))
}
