package marathon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// compatCase is one file under testdata/compat: a definition written from
// Marathon's documentation (source names the page), and what the suite
// expects of it.
type compatCase struct {
	Source string `json:"source"`
	// Definition is the app (apps/) or group (groups/) as the docs give it.
	Definition json.RawMessage `json:"definition"`
	// Expect holds the fields Marathon itself gives back changed (its
	// canonical form of a legacy field); they replace the definition's
	// fields of the same name in the comparison. A null drops the field.
	Expect map[string]json.RawMessage `json:"expect"`
	// Update is merged into the definition for PUT /v2/apps/{id} (apps) or
	// PUT /v2/groups/{id} (groups); Patch is sent as PATCH /v2/apps/{id}.
	Update map[string]json.RawMessage `json:"update"`
	Patch  json.RawMessage            `json:"patch"`
	// Secrets are put in weft's secret store before the POST (weft
	// resolves a secret's source when the app is defined).
	Secrets map[string]string `json:"secrets"`
	// Refused names the field weft refuses: POST must be a 422 naming it.
	Refused string `json:"refused"`
}

// marathonAppDefaults are the values Marathon fills in for fields an app
// definition leaves out (app.raml of Marathon 1.5+: AppDefinition.scala,
// UpgradeStrategy.scala, BackoffStrategy.scala).
var marathonAppDefaults = map[string]any{
	"instances": 1.0, "cpus": 1.0, "mem": 128.0, "disk": 0.0, "gpus": 0.0,
	"backoffSeconds": 1.0, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300.0,
	"requirePorts": false, "killSelection": "YOUNGEST_FIRST",
	"upgradeStrategy": map[string]any{"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
	"labels":          map[string]any{}, "env": map[string]any{}, "constraints": []any{}, "fetch": []any{},
	"healthChecks": []any{}, "readinessChecks": []any{}, "dependencies": []any{},
}

type compatClient struct {
	t   *testing.T
	url string
}

func (c compatClient) do(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// subset reports every way got fails to hold want: each key of a wanted
// object is in got with an equal value (objects compared recursively,
// arrays element by element and of equal length, numbers as numbers).
func subset(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %s", path, show(got))}
		}
		var out []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing (want %s)", path, k, show(w[k])))
				continue
			}
			out = append(out, subset(path+"."+k, w[k], gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %s, got %s", path, show(want), show(got))}
		}
		var out []string
		for i := range w {
			out = append(out, subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		// A port of 0 asks for a service port: Marathon gives one from
		// its local port range (10000-20000 by default).
		if want == 0.0 && (strings.HasSuffix(path, ".port") || strings.HasSuffix(path, ".servicePort")) {
			if n, ok := got.(float64); ok && n >= 10000 && n < 20000 {
				return nil
			}
		}
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s: want %s, got %s", path, show(want), show(got))}
		}
		return nil
	}
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func decodeObj(t *testing.T, what string, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v: %s", what, err, b)
	}
	return m
}

// wanted is the definition with the case's expectations laid over it.
func (cc compatCase) wanted(t *testing.T, def []byte) map[string]any {
	want := decodeObj(t, "definition", def)
	for k, v := range cc.Expect {
		if string(v) == "null" {
			delete(want, k)
			continue
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatal(err)
		}
		want[k] = x
	}
	return want
}

func loadCompat(t *testing.T, dir string) map[string]compatCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "compat", dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no compat cases in testdata/compat/%s: %v", dir, err)
	}
	out := map[string]compatCase{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cc compatCase
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if cc.Source == "" || len(cc.Definition) == 0 {
			t.Fatalf("%s: a case needs its source and definition", f)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = cc
	}
	return out
}

func compatMaster(t *testing.T) compatClient {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 64, Mem: 65536, Disk: 100000, Ports: []api.PortRange{{Begin: 31000, End: 31999}}}}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(node)
	cfg.SecretsKey = bytes.Repeat([]byte{7}, 32)
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	cfg.Frameworks = []sched.Framework{New(mcfg)}
	cfg.AllocInterval = 50 * time.Millisecond
	_, url := serveMaster(t, cfg)
	return compatClient{t: t, url: url}
}

// TestMarathonDocsApps drives every app definition under
// testdata/compat/apps (each written from Marathon's documentation)
// through a real master: POST /v2/apps, GET (every field the definition
// gives comes back equal, every field it leaves out carries Marathon's
// default), PUT with a change, GET again, PATCH where the case has one,
// DELETE and a 404 after. A field weft refuses must be a 422 naming it.
func TestMarathonDocsApps(t *testing.T) {
	c := compatMaster(t)
	cases := loadCompat(t, "apps")
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cc := cases[name]
		t.Run(name, func(t *testing.T) {
			c := compatClient{t: t, url: c.url}
			def := decodeObj(t, "definition", cc.Definition)
			id, _ := def["id"].(string)
			if id == "" {
				t.Fatal("definition without an id")
			}
			for name, value := range cc.Secrets {
				if code, body := c.do("PUT", "/v1/secrets/"+name, []byte(value)); code/100 != 2 {
					t.Fatalf("PUT secret %s: %d %s", name, code, body)
				}
			}
			code, body := c.do("POST", "/v2/apps", cc.Definition)
			if cc.Refused != "" {
				if code != 422 || !strings.Contains(string(body), cc.Refused) {
					t.Fatalf("POST: want a 422 naming %s, got %d %s", cc.Refused, code, body)
				}
				return
			}
			if code != 201 {
				t.Fatalf("POST: %d %s", code, body)
			}
			checkApp := func(step string, want map[string]any) {
				t.Helper()
				code, body := c.do("GET", "/v2/apps"+ensureSlash(id), nil)
				if code != 200 {
					t.Fatalf("%s: GET %d %s", step, code, body)
				}
				got, _ := decodeObj(t, "GET", body)["app"].(map[string]any)
				for _, p := range subset("app", want, got) {
					t.Errorf("%s: %s", step, p)
				}
				for k, v := range marathonAppDefaults {
					if _, given := want[k]; given {
						continue
					}
					for _, p := range subset("app", map[string]any{k: v}, got) {
						t.Errorf("%s: default: %s", step, p)
					}
				}
			}
			want := cc.wanted(t, cc.Definition)
			checkApp("after POST", want)

			upd := decodeObj(t, "definition", cc.Definition)
			if len(cc.Update) == 0 {
				cc.Update = map[string]json.RawMessage{"labels": json.RawMessage(`{"compat":"updated"}`)}
			}
			for k, v := range cc.Update {
				var x any
				if err := json.Unmarshal(v, &x); err != nil {
					t.Fatal(err)
				}
				upd[k] = x
			}
			ub, _ := json.Marshal(upd)
			if code, body := c.do("PUT", "/v2/apps"+ensureSlash(id)+"?force=true", ub); code != 200 {
				t.Fatalf("PUT: %d %s", code, body)
			}
			wantU := cc.wanted(t, ub)
			checkApp("after PUT", wantU)

			if len(cc.Patch) > 0 {
				if code, body := c.do("PATCH", "/v2/apps"+ensureSlash(id)+"?force=true", cc.Patch); code != 200 {
					t.Fatalf("PATCH: %d %s", code, body)
				}
				p := decodeObj(t, "patch", cc.Patch)
				for k, v := range p {
					wantU[k] = v
				}
				checkApp("after PATCH", wantU)
			}

			if code, body := c.do("DELETE", "/v2/apps"+ensureSlash(id)+"?force=true", nil); code != 200 {
				t.Fatalf("DELETE: %d %s", code, body)
			}
			if code, body := c.do("GET", "/v2/apps"+ensureSlash(id), nil); code != 404 {
				t.Fatalf("GET after DELETE: %d %s", code, body)
			}
		})
	}
}

func ensureSlash(id string) string {
	if strings.HasPrefix(id, "/") {
		return id
	}
	return "/" + id
}

// absIDs makes the ids of a group definition absolute, as Marathon reads
// a relative id: against the id of the group that holds it.
func absIDs(g map[string]any, parent string) {
	id, _ := g["id"].(string)
	if !strings.HasPrefix(id, "/") {
		id = strings.TrimSuffix(parent, "/") + "/" + id
		g["id"] = id
	}
	for _, a := range anyList(g["apps"]) {
		if am, ok := a.(map[string]any); ok {
			if aid, _ := am["id"].(string); !strings.HasPrefix(aid, "/") {
				am["id"] = strings.TrimSuffix(id, "/") + "/" + aid
			}
		}
	}
	for _, sg := range anyList(g["groups"]) {
		if sm, ok := sg.(map[string]any); ok {
			absIDs(sm, id)
		}
	}
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

// groupSubset checks a group answer against a group definition: its own
// fields as subset does, its apps and groups found by id (Marathon does
// not keep their order), each app against the definition and Marathon's
// defaults. version and versionInfo are Marathon's own and not compared.
func groupSubset(path string, want, got map[string]any) []string {
	var out []string
	for k, w := range want {
		switch k {
		case "apps", "groups", "version", "versionInfo":
			continue
		}
		out = append(out, subset(path, map[string]any{k: w}, got)...)
	}
	byID := func(l []any) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, x := range l {
			if o, ok := x.(map[string]any); ok {
				id, _ := o["id"].(string)
				m[id] = o
			}
		}
		return m
	}
	gotApps, gotGroups := byID(anyList(got["apps"])), byID(anyList(got["groups"]))
	for _, a := range anyList(want["apps"]) {
		wa := a.(map[string]any)
		id := wa["id"].(string)
		ga, ok := gotApps[id]
		if !ok {
			out = append(out, fmt.Sprintf("%s: app %s missing", path, id))
			continue
		}
		wa2 := map[string]any{}
		for k, v := range wa {
			if k != "version" && k != "versionInfo" {
				wa2[k] = v
			}
		}
		out = append(out, subset(path+".apps["+id+"]", wa2, ga)...)
		for k, v := range marathonAppDefaults {
			if _, given := wa[k]; !given {
				out = append(out, subset(path+".apps["+id+"] default", map[string]any{k: v}, ga)...)
			}
		}
	}
	for _, g := range anyList(want["groups"]) {
		wg := g.(map[string]any)
		id := wg["id"].(string)
		gg, ok := gotGroups[id]
		if !ok {
			out = append(out, fmt.Sprintf("%s: group %s missing", path, id))
			continue
		}
		out = append(out, groupSubset(path+".groups["+id+"]", wg, gg)...)
	}
	return out
}

// TestMarathonDocsGroups drives every group definition under
// testdata/compat/groups through a real master: POST /v2/groups, GET
// /v2/groups/{id} (every app and group of the definition with every
// field it gives), PUT /v2/groups/{id} with a change, GET again, DELETE
// /v2/groups/{id} and a 404 after. expect holds apps' canonical forms,
// keyed by app id.
func TestMarathonDocsGroups(t *testing.T) {
	c := compatMaster(t)
	cases := loadCompat(t, "groups")
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		cc := cases[name]
		t.Run(name, func(t *testing.T) {
			c := compatClient{t: t, url: c.url}
			def := decodeObj(t, "definition", cc.Definition)
			absIDs(def, "/")
			id := def["id"].(string)
			code, body := c.do("POST", "/v2/groups", cc.Definition)
			if cc.Refused != "" {
				if code != 422 || !strings.Contains(string(body), cc.Refused) {
					t.Fatalf("POST: want a 422 naming %s, got %d %s", cc.Refused, code, body)
				}
				return
			}
			if code != 201 {
				t.Fatalf("POST: %d %s", code, body)
			}
			// expect: app id → the fields of that app Marathon gives back changed.
			var fix func(g map[string]any)
			fix = func(g map[string]any) {
				for _, a := range anyList(g["apps"]) {
					am := a.(map[string]any)
					if e, ok := cc.Expect[am["id"].(string)]; ok {
						var over map[string]any
						if err := json.Unmarshal(e, &over); err != nil {
							t.Fatal(err)
						}
						for k, v := range over {
							if v == nil {
								delete(am, k)
							} else {
								am[k] = v
							}
						}
					}
				}
				for _, sg := range anyList(g["groups"]) {
					fix(sg.(map[string]any))
				}
			}
			check := func(step string, want map[string]any) {
				t.Helper()
				code, body := c.do("GET", "/v2/groups"+id, nil)
				if code != 200 {
					t.Fatalf("%s: GET %d %s", step, code, body)
				}
				for _, p := range groupSubset("group", want, decodeObj(t, "GET", body)) {
					t.Errorf("%s: %s", step, p)
				}
			}
			want := decodeObj(t, "definition", cc.Definition)
			absIDs(want, "/")
			fix(want)
			check("after POST", want)

			upd := decodeObj(t, "definition", cc.Definition)
			for k, v := range cc.Update {
				var x any
				if err := json.Unmarshal(v, &x); err != nil {
					t.Fatal(err)
				}
				upd[k] = x
			}
			ub, _ := json.Marshal(upd)
			if code, body := c.do("PUT", "/v2/groups"+id+"?force=true", ub); code != 200 {
				t.Fatalf("PUT: %d %s", code, body)
			}
			wantU := decodeObj(t, "update", ub)
			absIDs(wantU, "/")
			fix(wantU)
			check("after PUT", wantU)

			if code, body := c.do("DELETE", "/v2/groups"+id+"?force=true", nil); code != 200 {
				t.Fatalf("DELETE: %d %s", code, body)
			}
			if code, body := c.do("GET", "/v2/groups"+id, nil); code != 404 {
				t.Fatalf("GET after DELETE: %d %s", code, body)
			}
		})
	}
}

// A group's dependencies are kept and honoured: the apps of a group come
// in a later deployment step than everything the group depends on; an
// app may depend on a group too. An empty group is kept until deleted.
func TestGroupDependenciesOrderDeployments(t *testing.T) {
	c := compatMaster(t)
	code, body := c.do("POST", "/v2/groups", []byte(`{"id": "/p", "groups": [
	  {"id": "db", "apps": [{"id": "pg", "cmd": "postgres", "cpus": 0.1, "mem": 16}]},
	  {"id": "svc", "dependencies": ["../db"], "apps": [{"id": "api", "cmd": "./api", "cpus": 0.1, "mem": 16}]},
	  {"id": "edge", "apps": [{"id": "lb", "cmd": "./lb", "cpus": 0.1, "mem": 16, "dependencies": ["/p/svc"]}]},
	  {"id": "empty"}]}`))
	if code != 201 {
		t.Fatalf("POST: %d %s", code, body)
	}
	code, body = c.do("GET", "/v2/deployments", nil)
	var ds []struct {
		Steps []struct {
			Actions []struct{ App string }
		}
	}
	if err := json.Unmarshal(body, &ds); code != 200 || err != nil || len(ds) != 1 {
		t.Fatalf("GET /v2/deployments: %d %v %s", code, err, body)
	}
	var steps [][]string
	for _, s := range ds[0].Steps {
		var apps []string
		for _, a := range s.Actions {
			apps = append(apps, a.App)
		}
		steps = append(steps, apps)
	}
	if fmt.Sprint(steps) != "[[/p/db/pg] [/p/svc/api] [/p/edge/lb]]" {
		t.Errorf("steps %v, want db, then svc (group dependency), then edge (app depending on a group)", steps)
	}
	code, body = c.do("GET", "/v2/groups/p/svc", nil)
	if code != 200 || !strings.Contains(string(body), `"dependencies":["/p/db"]`) {
		t.Errorf("GET /v2/groups/p/svc: %d %s", code, body)
	}
	if code, body := c.do("GET", "/v2/groups/p/empty", nil); code != 200 || !strings.Contains(string(body), `"id":"/p/empty"`) {
		t.Errorf("GET the empty group: %d %s", code, body)
	}
	if code, body := c.do("POST", "/v2/groups", []byte(`{"id": "/p/empty"}`)); code != 409 {
		t.Errorf("POST an existing empty group: %d %s, want 409", code, body)
	}
	if code, body := c.do("DELETE", "/v2/groups/p/empty", nil); code != 200 {
		t.Errorf("DELETE the empty group: %d %s", code, body)
	}
	if code, body := c.do("GET", "/v2/groups/p/empty", nil); code != 404 {
		t.Errorf("GET the deleted empty group: %d %s", code, body)
	}
}
