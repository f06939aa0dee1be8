package marathon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// TestACLOnMarathon: a team token writes only under its path, sees only
// its apps in every listing, and a secret reaches the task's agent alone.
func TestACLOnMarathon(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(node)
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	cfg.Frameworks = []sched.Framework{New(mcfg)}
	cfg.AllocInterval = 50 * time.Millisecond
	cfg.NodeSecret = "node-secret"
	// A stand-in for node certificates: the test names the calling node.
	cfg.NodeIdentity = func(r *http.Request) (string, bool) {
		n := r.Header.Get("X-Test-Node")
		return n, n != ""
	}
	cfg.SecretsKey, _ = sched.DeriveSecretsKey("join-token")
	ctx, url := serveMaster(t, cfg)

	anon := api.NewClient(url)
	boot, err := anon.ACLBootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClient(url)
	admin.Token = boot.SecretID
	if _, err := admin.ACLPolicyApply(ctx, "team-a", strings.NewReader(`{"apps": {"/team-a/*": "write"}, "secrets": {"team-a/*": "read"}}`)); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "alice", Policies: []string{"team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(url)
	alice.Token = tok.SecretID
	const value = "pw-0f1e2d3c"
	if err := admin.SecretPut(ctx, "team-a/db", strings.NewReader(value)); err != nil {
		t.Fatal(err)
	}
	if err := admin.SecretPut(ctx, "team-b/db", strings.NewReader("other")); err != nil {
		t.Fatal(err)
	}

	app := `{"cmd":"sleep 1000","cpus":0.1,"mem":16,"env":{"DB_PW":{"secret":"s1"}},"secrets":{"s1":{"source":"team-a/db"}}}`
	depA, err := alice.PutApp(ctx, "/team-a/x", []byte(app), false)
	if err != nil {
		t.Fatalf("team token on its own path: %v", err)
	}
	if _, err := alice.PutApp(ctx, "/team-b/x", []byte(`{"cmd":"sleep 1000","cpus":0.1,"mem":16}`), false); api.StatusCode(err) != 403 {
		t.Fatalf("team token on another team's path: %v, want 403", err)
	}
	if _, err := alice.PutApp(ctx, "/team-a/y", []byte(strings.ReplaceAll(app, "team-a/db", "team-b/db")), false); api.StatusCode(err) != 403 {
		t.Fatalf("team token using another team's secret: %v, want 403", err)
	}
	if _, err := alice.PutApp(ctx, "/team-a/z", []byte(strings.ReplaceAll(app, `"source":"team-a/db"`, `"source":"team-a/none"`)), false); api.StatusCode(err) != 422 {
		t.Fatalf("an app naming a missing secret: %v, want 422", err)
	}
	depB, err := admin.PutApp(ctx, "/team-b/x", []byte(`{"cmd":"sleep 1000","cpus":0.1,"mem":16}`), false)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "both apps have a task", func() bool {
		ts, err := admin.Tasks(ctx)
		return err == nil && len(ts) == 2
	})

	get := func(c *api.Client, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url+path, nil)
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Every listing alice gets leaves /team-b out; the admin's has both.
	for _, path := range []string{"/v2/apps", "/v2/apps?embed=apps.tasks", "/v2/apps?embed=apps.tasks&embed=apps.readiness", "/v2/groups", "/v2/groups?embed=group.apps", "/v2/tasks", "/v2/apps/*", "/v2/queue", "/v2/deployments"} {
		code, body := get(alice, path)
		if code != 200 || strings.Contains(body, "team-b") {
			t.Errorf("alice GET %s: %d, shows team-b: %s", path, code, body)
		}
		if path == "/v2/apps" || path == "/v2/tasks" || path == "/v2/groups" {
			if !strings.Contains(body, "/team-a/x") && !strings.Contains(body, "team-a_x") {
				t.Errorf("alice GET %s lacks her own app: %s", path, body)
			}
			if _, all := get(admin, path); !strings.Contains(all, "team-b") {
				t.Errorf("admin GET %s lacks team-b: %s", path, all)
			}
		}
	}
	if code, _ := get(alice, "/v2/apps/team-b/x"); code != 403 {
		t.Errorf("alice GET /v2/apps/team-b/x: %d, want 403", code)
	}
	// weft's deployment outcomes: alice sees her app's, not team-b's, while
	// running or ended.
	for _, when := range []string{"at first", "once ended"} {
		if when == "once ended" {
			// No agent runs the tasks here: stop both deployments.
			for _, id := range []string{depA.DeploymentID, depB.DeploymentID} {
				if _, err := admin.Do(ctx, "DELETE", "/v2/deployments/"+id+"?force=true", nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, body := get(admin, "/v1/deployments/"+depB.DeploymentID); !strings.Contains(body, `"failed"`) {
				t.Fatalf("team-b's deployment after a forced stop: %s", body)
			}
		}
		if code, body := get(alice, "/v1/deployments/"+depA.DeploymentID); code != 200 || !strings.Contains(body, "/team-a/x") {
			t.Errorf("%s: alice GET /v1/deployments/ of her app: %d %s", when, code, body)
		}
		if code, body := get(alice, "/v1/deployments/"+depB.DeploymentID); code != 403 || strings.Contains(body, "team-b") {
			t.Errorf("%s: alice GET /v1/deployments/ of team-b's app: %d %s, want 403 naming no app", when, code, body)
		}
		if code, body := get(admin, "/v1/deployments/"+depB.DeploymentID); code != 200 || !strings.Contains(body, "/team-b/x") {
			t.Errorf("%s: admin GET /v1/deployments/ of team-b's app: %d %s", when, code, body)
		}
	}

	// The secret's value: in the agent's assignment only.
	nodeC := api.NewClient(url)
	nodeC.Token = "node-secret"
	as, err := nodeC.Assignments(ctx, "agent-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range as.Tasks {
		if a.Task.AppID == "/team-a/x" {
			found = a.Secrets["DB_PW"] == value && a.Spec.SecretEnv["DB_PW"] == "team-a/db" && a.Spec.Env["DB_PW"] == ""
		}
	}
	if !found {
		t.Fatalf("the assignment of /team-a/x does not carry DB_PW: %+v", as.Tasks)
	}
	// Another node may not read agent-1's assignments at all.
	req, _ := http.NewRequest("GET", url+"/v1/agents/agent-1/assignments", nil)
	req.Header.Set("X-Test-Node", "agent-2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || strings.Contains(string(other), value) || strings.Contains(string(other), "team-a_x") {
		t.Fatalf("agent-2 reading agent-1's assignments: %d, value shown %v", resp.StatusCode, strings.Contains(string(other), value))
	}
	req.Header.Set("X-Test-Node", "agent-1")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	own, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(own), value) {
		t.Fatal("agent-1 (by its certificate) did not get its task's secret")
	}
	if _, err := alice.Assignments(ctx, "agent-1", 0, 0); api.StatusCode(err) != 403 {
		t.Fatalf("a person reading assignments: %v, want 403", err)
	}
	for _, path := range []string{"/v2/apps", "/v2/apps/team-a/x", "/v2/apps/team-a/x/versions", "/v2/apps?embed=apps.tasks", "/v2/tasks", "/v2/groups", "/v1/state", "/v1/secrets", "/v2/deployments", "/v2/queue"} {
		if _, body := get(admin, path); strings.Contains(body, value) {
			t.Errorf("GET %s shows the secret's value", path)
		}
	}
	if _, body := get(nodeC, "/v1/state"); strings.Contains(body, value) {
		t.Error("the state shows the secret's value")
	}
}

// BenchmarkACLGetApp is the in-process cost of the ACL check on GET
// /v2/apps/{id}: the same master handler, called with no ACLs (open) and
// with a team token (acl). Compare ns/op of the two sub-benchmarks.
func BenchmarkACLGetApp(b *testing.B) {
	for _, mode := range []string{"open", "acl"} {
		b.Run(mode, func(b *testing.B) {
			node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Address: "127.0.0.1",
				Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 1000}}
			cfg := sched.DefaultMasterConfig()
			cfg.Store.Dir = ""
			cfg.Members = sched.NewStaticMembers(node)
			cfg.Frameworks = []sched.Framework{New(DefaultConfig())}
			cfg.APIAdvertise = "127.0.0.1:1"
			m, err := sched.NewMaster(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for !m.Store().IsLeader() {
				time.Sleep(10 * time.Millisecond)
			}
			h := m.Handler()
			call := func(method, path, auth, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			auth := ""
			if mode == "acl" {
				rec := call("POST", "/v1/acl/bootstrap", "", "")
				var boot api.ACLToken
				_ = json.Unmarshal(rec.Body.Bytes(), &boot)
				call("PUT", "/v1/acl/policy/team", "Bearer "+boot.SecretID, `{"apps": {"/bench/*": "write", "/other/*": "read"}}`)
				rec = call("POST", "/v1/acl/token", "Bearer "+boot.SecretID, `{"name": "bench", "policies": ["team"]}`)
				var tok api.ACLToken
				_ = json.Unmarshal(rec.Body.Bytes(), &tok)
				auth = "Bearer " + tok.SecretID
			}
			if rec := call("PUT", "/v2/apps/bench/app", auth, `{"cmd":"sleep 1","cpus":0.01,"mem":8,"instances":0}`); rec.Code/100 != 2 {
				b.Fatalf("PUT: %d %s", rec.Code, rec.Body)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if rec := call("GET", "/v2/apps/bench/app", auth, ""); rec.Code != 200 {
					b.Fatalf("GET: %d %s", rec.Code, rec.Body)
				}
			}
			b.StopTimer()
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
