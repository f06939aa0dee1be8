package marathon

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// upstreamEventKeys are the keys of each event as Marathon sends it on
// /v2/events (core/event/Events.scala and EventFormats in Formats.scala of
// Marathon 1.4+; plans as plan-format=light sends them).
var upstreamEventKeys = map[string][]string{
	api.EventStreamAttached:      {"remoteAddress", "eventType", "timestamp"},
	api.EventAPIPost:             {"clientIp", "uri", "appDefinition", "eventType", "timestamp"},
	api.EventStatusUpdate:        {"slaveId", "taskId", "taskStatus", "message", "appId", "host", "ipAddresses", "ports", "version", "eventType", "timestamp"},
	api.EventHealthStatusChanged: {"appId", "instanceId", "version", "alive", "eventType", "timestamp"},
	api.EventFailedHealthCheck:   {"appId", "healthCheck", "taskId", "eventType", "timestamp"},
	api.EventUnhealthyKill:       {"appId", "taskId", "instanceId", "version", "reason", "host", "slaveId", "eventType", "timestamp"},
	api.EventDeploymentInfo:      {"plan", "currentStep", "eventType", "timestamp"},
	api.EventDeploymentStepOK:    {"plan", "currentStep", "eventType", "timestamp"},
	api.EventDeploymentStepFail:  {"plan", "currentStep", "eventType", "timestamp"},
	api.EventDeploymentSuccess:   {"id", "plan", "eventType", "timestamp"},
	api.EventDeploymentFailed:    {"id", "plan", "eventType", "timestamp"},
	api.EventGroupChangeSuccess:  {"groupId", "version", "eventType", "timestamp"},
	api.EventAppTerminated:       {"appId", "eventType", "timestamp"},
	// Inside the events: a light plan, a step, an action.
	"plan":   {"id", "steps", "version"},
	"step":   {"actions"},
	"action": {"action", "app"},
}

// TestGoldenMarathonStreams drives an app through a real master (a fake
// agent reports its tasks) and checks what marathon_lb.py-style consumers
// read — /v2/apps?embed=apps.tasks and every event on /v2/events — against
// golden files, key by key: a key missing from weft's answer and a key the
// golden file does not have both fail, and so does any event key Marathon
// itself never sends. Volatile values (times, ids) are normalised.
// `go test ./sched/marathon -run TestGoldenMarathonStreams -update`
// rewrites the golden files.
func TestGoldenMarathonStreams(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(node)
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	mcfg.RefuseFor = 50 * time.Millisecond
	cfg.Frameworks = []sched.Framework{New(mcfg)}
	cfg.AllocInterval = 50 * time.Millisecond
	cfg.RefuseDefault = 50 * time.Millisecond
	ctx, url := serveMaster(t, cfg)
	c := api.NewClient(url)
	go (&fakeAgent{id: "agent-1", client: c, fail: make(chan string, 1)}).run(ctx)

	events, err := c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]any{}
	var order []string
	waitFor := func(typ string) map[string]any {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			if ev, ok := seen[typ]; ok {
				return ev
			}
			select {
			case ev := <-events:
				if _, ok := seen[ev.Type]; ok {
					continue
				}
				var obj map[string]any
				if err := json.Unmarshal(ev.Data, &obj); err != nil {
					t.Fatalf("%s: %v: %s", ev.Type, err, ev.Data)
				}
				seen[ev.Type] = obj
				order = append(order, ev.Type)
			case <-timeout:
				t.Fatalf("no %s event (saw %v)", typ, order)
			}
		}
	}
	waitFor(api.EventStreamAttached)

	res, err := c.PutApp(ctx, "/golden/web", []byte(`{"cmd": "python3 -m http.server $PORT0", "cpus": 0.1, "mem": 32,
	  "instances": 1, "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
	  "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "web.example.com"},
	  "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 300, "intervalSeconds": 60,
	    "timeoutSeconds": 20, "maxConsecutiveFailures": 3}]}`), false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(api.EventAPIPost)
	waitFor(api.EventDeploymentInfo)
	waitFor(api.EventGroupChangeSuccess)
	st := waitFor(api.EventStatusUpdate)
	taskID, _ := st["taskId"].(string)
	// The agent's health check passes: health_status_changed_event, and the
	// deployment (which waits for health) succeeds.
	if err := c.PostStatus(ctx, "agent-1", []api.TaskStatus{{TaskID: taskID, State: api.TaskRunning, Timestamp: time.Now(),
		HealthCheckResults: []api.HealthCheckResult{{Alive: true}}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(api.EventHealthStatusChanged)
	waitFor(api.EventDeploymentStepOK)
	if ev := waitFor(api.EventDeploymentSuccess); ev["id"] != res.DeploymentID {
		t.Fatalf("deployment_success %v, want %s", ev["id"], res.DeploymentID)
	}

	// What marathon_lb.py reads: GET /v2/apps?embed=apps.tasks.
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v2/apps?embed=apps.tasks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var apps any
	if err := json.NewDecoder(resp.Body).Decode(&apps); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	compareGolden(t, "v2-apps-embed-tasks.json", apps)
	for _, a := range asList(apps.(map[string]any)["apps"]) {
		for _, tk := range asList(a["tasks"]) {
			checkTask(t, "/v2/apps?embed=apps.tasks", tk)
			for _, h := range asList(tk["healthCheckResults"]) {
				exactKeys(t, "healthCheckResults", h, upstreamKeys["health"])
			}
		}
	}

	// Deleting the app: a deployment that stops it, app_terminated_event.
	delete(seen, api.EventDeploymentStepOK)
	if _, err := c.DeleteApp(ctx, "/golden/web", false); err != nil {
		t.Fatal(err)
	}
	waitFor(api.EventAppTerminated)
	waitFor(api.EventDeploymentStepOK)

	for typ, ev := range seen {
		want, ok := upstreamEventKeys[typ]
		if !ok {
			t.Errorf("event %s: Marathon has no such event", typ)
			continue
		}
		exactKeys(t, typ, ev, want)
		if p, ok := ev["plan"].(map[string]any); ok {
			exactKeys(t, typ+".plan", p, upstreamEventKeys["plan"])
			for _, s := range asList(p["steps"]) {
				exactKeys(t, typ+".plan.steps", s, upstreamEventKeys["step"])
				for _, a := range asList(s["actions"]) {
					exactKeys(t, typ+".plan.steps.actions", a, upstreamEventKeys["action"])
				}
			}
		}
		if s, ok := ev["currentStep"].(map[string]any); ok {
			exactKeys(t, typ+".currentStep", s, upstreamEventKeys["step"])
		}
		if a, ok := ev["appDefinition"].(map[string]any); ok {
			checkKeys(t, typ+".appDefinition", a, appKeys(t))
		}
		compareGolden(t, "event-"+typ+".json", ev)
	}
}

// exactKeys fails on a key of obj that is not in want and on a key of want
// that obj lacks.
func exactKeys(t *testing.T, what string, obj map[string]any, want []string) {
	t.Helper()
	w := map[string]bool{}
	for _, k := range want {
		w[k] = true
		if _, ok := obj[k]; !ok {
			t.Errorf("%s lacks %q, which Marathon sends", what, k)
		}
	}
	for k := range obj {
		if !w[k] {
			t.Errorf("%s has %q, which Marathon never sends", what, k)
		}
	}
}

var (
	reTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
	reUUID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	rePort = regexp.MustCompile(`^127\.0\.0\.1:\d+$`)
)

// normalise replaces the values that change from run to run.
func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalise(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalise(e)
		}
		return out
	case string:
		switch {
		case reTime.MatchString(x):
			return "<time>"
		case rePort.MatchString(x):
			return "127.0.0.1:<port>"
		}
		return reUUID.ReplaceAllString(x, "<uuid>")
	}
	return v
}

// compareGolden compares got with testdata/golden/name key by key.
func compareGolden(t *testing.T, name string, got any) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	got = normalise(got)
	if *updateGolden {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	var want any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&want); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var diffs []string
	diffJSON("", want, got, &diffs)
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s differs from the golden file:\n  %s", name, strings.Join(diffs, "\n  "))
	}
}

func diffJSON(path string, want, got any, out *[]string) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: want an object, got %v", path, got))
			return
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: missing (golden: %v)", path, k, wv))
				continue
			}
			diffJSON(path+"."+k, wv, gv, out)
		}
		for k, gv := range g {
			if _, ok := w[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s.%s: extra key (value %v)", path, k, gv))
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, want, got))
			return
		}
		for i := range w {
			diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, want, got))
		}
	}
}
