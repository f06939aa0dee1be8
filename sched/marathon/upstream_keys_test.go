package marathon

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// The keys Marathon's own API descriptions (docs/docs/rest-api/.../types/*.raml
// of Marathon 1.x) give each response object. A strict client library builds
// its objects from every key it receives and fails on one it does not know.
var upstreamKeys = map[string][]string{
	// task.raml Task (role: app_tasks.json example of Marathon 1.9+).
	"task": {"appId", "healthCheckResults", "checkResult", "host", "id", "ipAddresses", "ports", "servicePorts",
		"slaveId", "state", "stagedAt", "startedAt", "version", "localVolumes", "region", "zone", "role"},
	// healthCheck.raml Health, HealthWrites of Marathon 1.4+ (no taskId).
	"health":    {"alive", "consecutiveFailures", "firstSuccess", "instanceId", "lastSuccess", "lastFailure", "lastFailureCause"},
	"ipAddress": {"ipAddress", "protocol"},
	// appInfo.raml: the app's own keys plus these.
	"appInfoExtra": {"tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
		"readinessCheckResults", "tasks", "lastTaskFailure", "taskStats"},
	// deployment.raml DeploymentStepInfo.
	"deployment":       {"id", "original", "target", "steps", "version", "affectedApps", "affectedPods", "currentActions", "currentStep", "totalSteps"},
	"deploymentAction": {"action", "app", "pod", "readinessCheckResults"},
	"deploymentResult": {"deploymentId", "version"},
	// queue.raml QueueApp.
	"queueItem":  {"count", "delay", "since", "processedOffersSummary", "lastUnusedOffers", "app"}, // app: the definition (app.raml)
	"queueDelay": {"timeLeftSeconds", "overdue"},
	// group.raml GroupInfo.
	"group": {"id", "apps", "pods", "groups", "dependencies", "version", "enforceRole"},
}

func checkKeys(t *testing.T, what string, obj map[string]any, allowed []string) {
	t.Helper()
	ok := map[string]bool{}
	for _, k := range allowed {
		ok[k] = true
	}
	var bad []string
	for k := range obj {
		if !ok[k] {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s carries keys Marathon never sends: %v", what, bad)
	}
}

func checkTask(t *testing.T, where string, task map[string]any) {
	t.Helper()
	checkKeys(t, where+" task", task, upstreamKeys["task"])
	for _, h := range asList(task["healthCheckResults"]) {
		checkKeys(t, where+" healthCheckResults", h, upstreamKeys["health"])
	}
	for _, a := range asList(task["ipAddresses"]) {
		checkKeys(t, where+" ipAddresses", a, upstreamKeys["ipAddress"])
	}
}

func asList(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// appKeys are the keys of weft's App as it encodes (api.App is Marathon's
// AppDefinition; every key there is one of app.raml's).
func appKeys(t *testing.T) []string {
	t.Helper()
	cmd := "x"
	tty := true
	b, _ := json.Marshal(api.App{Cmd: &cmd, Uris: []string{"u"}, StoreUrls: []string{"s"}, Container: &api.Container{},
		AcceptedResourceRoles: []string{"*"}, Role: "r", IPAddress: &api.IPAddressSpec{}, Version: "v",
		VersionInfo: &api.VersionInfo{}, Residency: json.RawMessage(`{}`), Ports: []int{1}, Tty: &tty,
		ServiceAccount: json.RawMessage(`{}`)})
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Every Marathon response carries only keys Marathon itself sends: tasks
// without weft's framework, site, message, exit status or readiness, in
// every place a task appears; apps, deployments, the queue and groups with
// their upstream keys.
func TestResponsesCarryOnlyMarathonKeys(t *testing.T) {
	e := newEnv(t)
	if r := e.do("PUT", "/v2/apps/shop/web", `{"cmd":"sleep 1000","cpus":0.1,"mem":32,"instances":3,
		"constraints":[["hostname","UNIQUE"]],
		"healthChecks":[{"protocol":"TCP","portIndex":0}],
		"readinessChecks":[{"name":"ready","protocol":"HTTP","path":"/","portName":"http"}],
		"portDefinitions":[{"port":0,"name":"http"}]}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024), offer("a2", "h2", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	if len(recs) != 2 {
		t.Fatalf("launched %d", len(recs))
	}
	exit := 0
	ready := true
	for _, rec := range recs {
		e.setState(rec.Task.ID, api.TaskRunning, func(r *sched.TaskRecord) {
			r.Task.Message = "Container started"
			r.Task.ExitStatus = &exit
			r.Task.Ready = &ready
			r.Task.Site = "london"
			r.Task.IPAddresses = []api.IPAddress{{IPAddress: "10.47.1.2", Protocol: "IPv4"}}
			r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: true, TaskID: r.Task.ID, InstanceID: r.Task.ID}}
		})
	}
	e.reconcile()

	get := func(path string, v any) {
		t.Helper()
		r := e.do("GET", path, "")
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		}
		r.json(t, v)
	}
	appAllowed := append(appKeys(t), upstreamKeys["appInfoExtra"]...)
	checkApp := func(where string, app map[string]any) {
		t.Helper()
		checkKeys(t, where+" app", app, appAllowed)
		for _, tk := range asList(app["tasks"]) {
			checkTask(t, where, tk)
		}
	}

	var list struct{ Apps []map[string]any }
	for _, q := range []string{"", "?embed=apps.tasks", "?embed=apps.tasks&embed=apps.deployments&embed=apps.readiness&embed=apps.lastTaskFailure&embed=apps.counts"} {
		list.Apps = nil
		get("/v2/apps"+q, &list)
		if len(list.Apps) != 1 {
			t.Fatalf("/v2/apps%s: %d apps", q, len(list.Apps))
		}
		checkApp("/v2/apps"+q, list.Apps[0])
		if strings.Contains(q, "tasks") && len(asList(list.Apps[0]["tasks"])) != 2 {
			t.Fatalf("/v2/apps%s: tasks %v", q, list.Apps[0]["tasks"])
		}
	}
	var one struct{ App map[string]any }
	get("/v2/apps/shop/web", &one)
	checkApp("/v2/apps/{id}", one.App)
	if len(asList(one.App["tasks"])) != 2 {
		t.Fatalf("/v2/apps/{id} has no tasks: %v", one.App)
	}
	var tasks struct{ Tasks []map[string]any }
	get("/v2/tasks", &tasks)
	get("/v2/apps/shop/web/tasks", &tasks)
	if len(tasks.Tasks) != 2 {
		t.Fatalf("tasks: %v", tasks)
	}
	for _, tk := range tasks.Tasks {
		checkTask(t, "/v2/tasks", tk)
		if tk["host"] == "" || tk["state"] != api.TaskRunning {
			t.Fatalf("task lost its facts: %v", tk)
		}
	}

	var deps []map[string]any
	get("/v2/deployments", &deps)
	if len(deps) == 0 {
		t.Fatal("want the running deployment")
	}
	for _, d := range deps {
		checkKeys(t, "/v2/deployments", d, upstreamKeys["deployment"])
		for _, a := range asList(d["currentActions"]) {
			checkKeys(t, "currentActions", a, upstreamKeys["deploymentAction"])
		}
		for _, s := range asList(d["steps"]) {
			for _, a := range asList(s["actions"]) {
				checkKeys(t, "steps.actions", a, upstreamKeys["deploymentAction"])
			}
		}
	}
	var q struct{ Queue []map[string]any }
	get("/v2/queue", &q)
	if len(q.Queue) != 1 {
		t.Fatalf("queue: want the instance that found no host, got %v", q.Queue)
	}
	for _, it := range q.Queue {
		checkKeys(t, "/v2/queue", it, upstreamKeys["queueItem"])
		if d, ok := it["delay"].(map[string]any); ok {
			checkKeys(t, "/v2/queue delay", d, upstreamKeys["queueDelay"])
		}
		if a, ok := it["app"].(map[string]any); !ok || a["id"] != "/shop/web" {
			t.Fatalf("/v2/queue app: %v", it["app"])
		} else {
			checkKeys(t, "/v2/queue app", a, appKeys(t))
		}
	}
	var g map[string]any
	get("/v2/groups/shop", &g)
	checkKeys(t, "/v2/groups/{id}", g, upstreamKeys["group"])
	for _, a := range asList(g["apps"]) {
		checkApp("/v2/groups", a)
	}

	// Killing a task answers with the task, in Marathon's keys too.
	r := e.do("DELETE", "/v2/apps/shop/web/tasks/"+recs[0].Task.ID, "")
	var killed struct{ Task map[string]any }
	r.json(t, &killed)
	if r.Status != 200 || killed.Task["id"] != recs[0].Task.ID {
		t.Fatalf("kill: %d %s", r.Status, r.Body)
	}
	checkTask(t, "DELETE /v2/apps/{id}/tasks/{task}", killed.Task)
	var res map[string]any
	r = e.do("PUT", "/v2/apps/shop/web?force=true", `{"instances":1}`)
	r.json(t, &res)
	checkKeys(t, "PUT /v2/apps/{id}", res, upstreamKeys["deploymentResult"])
}
