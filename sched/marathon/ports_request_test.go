package marathon

import (
	"context"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// servicePortsOf reads the service ports of the stored apps.
func servicePortsOf(t *testing.T, e *testEnv) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, ent := range e.m.st.List(sched.TableApps) {
		app := ent.Value.(*api.App)
		out[app.ID] = servicePorts(app)
	}
	return out
}

func assertDistinctPorts(t *testing.T, got map[string][]int, wantApps int) {
	t.Helper()
	if len(got) != wantApps {
		t.Fatalf("want %d apps, got %v", wantApps, got)
	}
	owner := map[int]string{}
	for id, ps := range got {
		for _, p := range ps {
			if p == 0 {
				t.Fatalf("%s kept service port 0: %v", id, got)
			}
			if o, ok := owner[p]; ok {
				t.Fatalf("service port %d given to both %s and %s: %v", p, o, id, got)
			}
			owner[p] = id
		}
	}
}

// Several apps in one request each get their own service ports, and a
// later update of any of them is accepted (Marathon's Group-1.json, then
// apps_create.json followed by apps_patch.json).
func TestServicePortsUniqueWithinOneRequest(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v2/groups", `{"id":"/product","groups":[{"id":"service","apps":[
		{"id":"rails-app","cmd":"rails s","instances":1,"cpus":0.1,"mem":32},
		{"id":"play-app","cmd":"play run","instances":1,"cpus":0.1,"mem":32,"portDefinitions":[{"port":0},{"port":0}]},
		{"id":"sleeper","cmd":"sleep 1000","instances":1,"cpus":0.1,"mem":32}]}]}`)
	if r.Status != 201 {
		t.Fatalf("POST group: %d %s", r.Status, r.Body)
	}
	assertDistinctPorts(t, servicePortsOf(t, e), 3)

	r = e.do("PUT", "/v2/apps?force=true", `[{"id":"/test/sleep60","cmd":"sleep 60","cpus":0.1,"mem":32},
		{"id":"/test/sleep120","cmd":"sleep 120","cpus":0.1,"mem":32},
		{"id":"/test/pinned","cmd":"sleep 1","cpus":0.1,"mem":32,"portDefinitions":[{"port":10010},{"port":0}]}]`)
	if r.Status != 200 {
		t.Fatalf("array PUT: %d %s", r.Status, r.Body)
	}
	assertDistinctPorts(t, servicePortsOf(t, e), 6)

	r = e.do("PATCH", "/v2/apps?force=true", `[{"id":"/test/sleep60","cpus":0.3},{"id":"/test/sleep120","instances":2}]`)
	if r.Status != 200 {
		t.Fatalf("apps_patch after apps_create: %d %s", r.Status, r.Body)
	}
	r = e.do("PUT", "/v2/apps/product/service/sleeper?force=true", `{"instances":3}`)
	if r.Status != 200 {
		t.Fatalf("scale an app of the group: %d %s", r.Status, r.Body)
	}
	// Two apps of one request asking for the same fixed port: a 422 for
	// the second.
	r = e.do("PUT", "/v2/apps?force=true", `[{"id":"/x/a","cmd":"a","portDefinitions":[{"port":12000}]},
		{"id":"/x/b","cmd":"b","portDefinitions":[{"port":12000}]}]`)
	if r.Status != 422 || !strings.Contains(string(r.Body), `"path":"(1)/portDefinitions(0)/port"`) {
		t.Fatalf("same fixed port twice in one request: %d %s", r.Status, r.Body)
	}
}

// Apps that an older weft left sharing a service port can still be
// scaled and updated, with or without force.
func TestSharedServicePortFromOlderStateDoesNotBlockUpdates(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"/old/a", "/old/b"} {
		if r := e.do("POST", "/v2/apps?force=true", `{"id":"`+id+`","cmd":"sleep 10","cpus":0.1,"mem":32}`); r.Status != 201 {
			t.Fatalf("POST %s: %d %s", id, r.Status, r.Body)
		}
	}
	ent, _ := e.m.st.Get(sched.TableApps, "/old/b")
	b := cloneApp(ent.Value.(*api.App))
	b.PortDefinitions[0].Port, b.Ports = 10000, []int{10000}
	if _, err := e.m.st.Apply(context.Background(), []sched.Op{sched.Put(sched.TableApps, b.ID, b)}); err != nil {
		t.Fatal(err)
	}
	if ps := servicePortsOf(t, e); ps["/old/a"][0] != 10000 || ps["/old/b"][0] != 10000 {
		t.Fatalf("setup: %v", ps)
	}
	for _, q := range []string{"", "?force=true"} {
		if r := e.do("PUT", "/v2/apps/old/b"+q, `{"instances":2}`); r.Status != 200 && r.Status != 409 {
			t.Fatalf("scale /old/b%s: %d %s", q, r.Status, r.Body)
		} else if r.Status == 409 && q != "" {
			t.Fatalf("forced scale /old/b: %d %s", r.Status, r.Body)
		}
	}
	// A new app still may not take the port.
	if r := e.do("POST", "/v2/apps", `{"id":"/new","cmd":"c","portDefinitions":[{"port":10000}]}`); r.Status != 422 {
		t.Fatalf("new app on a held port: %d %s", r.Status, r.Body)
	}
}
