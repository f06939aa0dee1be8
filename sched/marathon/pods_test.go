package marathon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// Pod definitions from Marathon's documentation (docs/docs/pods.md and the
// RAML example docs/docs/rest-api/public/api/v2/examples/pod.json), copied
// as published, with what weft answers: accepted, or refused naming the
// field weft cannot honour.
var docPods = []struct {
	name    string
	body    string
	status  int    // 0: accepted
	path    string // the path the refusal names
	message string // part of its message
}{
	{name: "quick start simplepod",
		body: `{"id":"/simplepod","scaling":{"kind":"fixed","instances":1},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32}}],"networks":[{"mode":"host"}]}`},
	// Published with labels {"values": {}}: a label's value is a string.
	{name: "multiple containers", status: 422, path: "/labels", message: "jsstring",
		body: `{"id":"/pod-with-multiple-containers","labels":{"values":{}},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32,"disk":0,"gpus":0}},{"name":"sleep2","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32,"disk":0,"gpus":0}},{"name":"sleep3","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32,"disk":0,"gpus":0}}],"networks":[{"mode":"host"}],"scaling":{"kind":"fixed","instances":10},"scheduling":{"backoff":{"backoff":1,"backoffFactor":1.15,"maxLaunchDelay":3600},"upgrade":{"minimumHealthCapacity":1,"maximumOverCapacity":1}}}`},
	{name: "ephemeral volumes",
		body: `{"id":"/with-ephemeral-vol","scaling":{"kind":"fixed","instances":1},"containers":[{"name":"ct1","resources":{"cpus":0.1,"mem":32},"exec":{"command":{"shell":"while true; do echo the current time is $(date) > ./jdef-v1/clock; sleep 1; done"}},"volumeMounts":[{"name":"v1","mountPath":"jdef-v1"}]},{"name":"ct2","resources":{"cpus":0.1,"mem":32},"exec":{"command":{"shell":"while true; do cat ./etc/clock; sleep 1; done"}},"volumeMounts":[{"name":"v1","mountPath":"etc"}]}],"networks":[{"mode":"host"}],"volumes":[{"name":"v1"}]}`},
	{name: "virtual network", status: 422, path: "/containers(0)/image", message: "needs an image",
		body: `{"id":"/pod-with-virtual-network","scaling":{"kind":"fixed","instances":1},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32}}],"networks":[{"mode":"container","name":"my-virtual-network-name"}]}`},
	{name: "endpoint", status: 422, path: "/containers(0)/image", message: "needs an image",
		body: `{"id":"/pod-with-endpoint","scaling":{"kind":"fixed","instances":1},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32},"endpoints":[{"name":"web","containerPort":80,"protocol":["http"]}]}],"networks":[{"mode":"container","name":"my-virtual-network-name"}]}`},
	{name: "health check",
		body: `{"id":"/pod-with-healthcheck","scaling":{"kind":"fixed","instances":1},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32},"image":{"id":"nginx","kind":"DOCKER"},"endpoints":[{"name":"web","containerPort":80,"protocol":["http"]}],"healthCheck":{"http":{"endpoint":"web","path":"/ping"}}}],"networks":[{"mode":"container","name":"my-virtual-network-name"}]}`},
	// Published with a trailing comma in endpoints: not JSON.
	{name: "comprehensive (as published)", status: 400, path: "/", message: "invalid",
		body: `{"id":"/complete-pod","containers":[{"name":"container1","resources":{"cpus":1,"mem":128},"endpoints":[{"name":"http-endpoint","containerPort":80,"hostPort":0,"protocol":["http"],}]}]}`},
	// The comprehensive pod with its comma fixed: it mounts a volume "env"
	// that it never declares.
	{name: "comprehensive (comma fixed)", status: 422, path: "/containers(0)/volumeMounts(0)/name", message: `no pod volume is named "env"`,
		body: `{"id":"/complete-pod","labels":{"owner":"zeus","note":"Away from olympus"},"environment":{"XPS1":"Test"},"volumes":[{"name":"etc","host":"/hdd/tools/docker/registry"}],"networks":[{"mode":"host"}],"scaling":{"kind":"fixed","instances":1},"scheduling":{"backoff":{"backoff":1,"backoffFactor":1.15,"maxLaunchDelay":3600},"upgrade":{"minimumHealthCapacity":1,"maximumOverCapacity":1}},"containers":[{"name":"container1","exec":{"command":{"shell":"sleep 100"},"overrideEntrypoint":false},"resources":{"cpus":1,"mem":128,"disk":0,"gpus":0},"endpoints":[{"name":"http-endpoint","containerPort":80,"hostPort":0,"protocol":["http"]}],"image":{"id":"mesosphere/marathon:latest","kind":"DOCKER","forcePull":false},"environment":{"XPS1":"Test"},"user":"root","healthCheck":{"gracePeriodSeconds":30,"intervalSeconds":2,"maxConsecutiveFailures":3,"timeoutSeconds":20,"delaySeconds":2,"http":{"path":"/health","scheme":"HTTP","endpoint":"http-endpoint"}},"volumeMounts":[{"name":"env","mountPath":"/mnt/etc","readOnly":true}],"artifacts":[{"uri":"https://foo.com/archive.zip","executable":false,"extract":true,"cache":true,"destPath":"/path/to/archive.zip"}],"labels":{"owner":"zeus","note":"Away from olympus"},"lifecycle":{"killGracePeriodSeconds":60}}]}`},
	// The RAML example: exec.command is a string where the schema has an
	// object (and it also has a trailing comma, removed here).
	{name: "RAML example pod.json", status: 422, path: "/containers/exec/command", message: "jsobject",
		body: `{"id":"/foo","labels":{"owner":"zeus","note":"Away from olympus"},"user":"root","environment":{"XPS1":"Test","XPS2":"Rest","PASSWORD":{"secret":"/db/password"}},"secrets":{"secret1":{"source":"/db/password"},"secret3":{"source":"/foo2"}},"volumes":[{"name":"etc","host":"/hdd/tools/docker/registry"}],"networks":[{"name":"my-network","mode":"container","labels":{}}],"scaling":{"instances":1,"maxInstances":888},"containers":[{"name":"container1","exec":{"command":"sleep 100","overrideEntrypoint":false},"resources":{"cpus":1,"mem":128,"disk":0,"gpus":0},"image":{"id":"mesosphere/marathon:latest","kind":"DOCKER","forcePull":false}}]}`},
}

func TestPodDocExamples(t *testing.T) {
	for _, c := range docPods {
		t.Run(c.name, func(t *testing.T) {
			p, aerr := parsePod([]byte(c.body), "")
			if c.status == 0 {
				if aerr != nil {
					t.Fatalf("refused: %d %+v", aerr.Status, aerr.Body)
				}
				// The round trip: what GET returns parses to the same pod.
				out, _ := json.Marshal(p)
				again, aerr := parsePod(out, "")
				if aerr != nil {
					t.Fatalf("its own output is refused: %+v\n%s", aerr.Body, out)
				}
				if !reflect.DeepEqual(p, again) {
					t.Fatalf("round trip changed the pod:\n%s\n%s", out, mustJSON(again))
				}
				return
			}
			if aerr == nil {
				t.Fatalf("accepted, want %d naming %s", c.status, c.path)
			}
			if aerr.Status != c.status {
				t.Fatalf("status %d, want %d: %+v", aerr.Status, c.status, aerr.Body)
			}
			found := false
			for _, d := range aerr.Body.Details {
				if d.Path == c.path && strings.Contains(strings.Join(d.Errors, " "), c.message) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no detail at %s saying %q: %+v", c.path, c.message, aerr.Body)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestPodDefaults checks the keys and defaults of Marathon's sample
// response to the quick-start pod (pods.md "Create").
func TestPodDefaults(t *testing.T) {
	p, aerr := parsePod([]byte(`{"id":"/simplepod2","scaling":{"kind":"fixed","instances":2},"containers":[{"name":"sleep1","exec":{"command":{"shell":"sleep 1000"}},"resources":{"cpus":0.1,"mem":32}}],"networks":[{"mode":"host"}]}`), "")
	if aerr != nil {
		t.Fatal(aerr.Body)
	}
	var got map[string]any
	_ = json.Unmarshal([]byte(mustJSON(p)), &got)
	want := map[string]string{
		"environment": `{}`, "labels": `{}`, "secrets": `{}`, "volumes": `[]`, "user": `null`,
		"networks": `[{"labels":{},"mode":"host","name":null}]`,
		"scaling":  `{"instances":2,"kind":"fixed","maxInstances":null}`,
		"scheduling": `{"backoff":{"backoff":1,"backoffFactor":1.15,"maxLaunchDelay":3600},"placement":{"acceptedResourceRoles":[],"constraints":[]},` +
			`"upgrade":{"maximumOverCapacity":1,"minimumHealthCapacity":1}}`,
	}
	for k, w := range want {
		if g := mustJSON(got[k]); g != w {
			t.Errorf("%s = %s, want %s", k, g, w)
		}
	}
	c := got["containers"].([]any)[0].(map[string]any)
	for k, w := range map[string]string{"artifacts": `[]`, "endpoints": `[]`, "environment": `{}`, "healthCheck": `null`, "labels": `{}`,
		"lifecycle": `null`, "user": `null`, "volumeMounts": `[]`, "resources": `{"cpus":0.1,"disk":0,"gpus":0,"mem":32}`,
		"image": `null`, "exec": `{"command":{"shell":"sleep 1000"}}`} {
		if g := mustJSON(c[k]); g != w {
			t.Errorf("containers[0].%s = %s, want %s", k, g, w)
		}
	}
}

func TestPodRefusals(t *testing.T) {
	base := func(extra string) string {
		return `{"id":"/p","containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"},"resources":{"cpus":0.1,"mem":32}` + extra + `}]}`
	}
	cases := []struct{ name, body, path string }{
		{"unknown field", `{"id":"/p","bogus":1,"containers":[]}`, "/bogus"},
		{"no containers", `{"id":"/p","containers":[]}`, "/containers"},
		{"bad id", `{"id":"/Bad_Id","containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"}}]}`, "/id"},
		{"appc image", `{"id":"/p","containers":[{"name":"a","image":{"kind":"APPC","id":"x"}}]}`, "/containers(0)/image/kind"},
		{"persistent volume", `{"id":"/p","volumes":[{"name":"d","persistent":{"size":10}}],"containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"}}]}`, "/volumes(0)/persistent"},
		{"health check endpoint", base(`,"healthCheck":{"tcp":{"endpoint":"nope"}}`), "/containers(0)/healthCheck/tcp/endpoint"},
		{"two networks", `{"id":"/p","networks":[{"mode":"host"},{"mode":"container"}],"containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"}}]}`, "/networks"},
		{"container port on host", base(`,"endpoints":[{"name":"w","containerPort":80}]`), "/containers(0)/endpoints(0)/containerPort"},
		{"no container port on a container network", `{"id":"/p","networks":[{"mode":"container","name":"n"}],"containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"},"endpoints":[{"name":"w","hostPort":0}]}]}`, "/containers(0)/endpoints(0)/containerPort"},
		{"some images", `{"id":"/p","containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"}},{"name":"b","exec":{"command":{"shell":"true"}}}]}`, "/containers(1)/image"},
		{"command container without command", `{"id":"/p","containers":[{"name":"a"}]}`, "/containers(0)/exec"},
		{"absolute mount of a command container", `{"id":"/p","volumes":[{"name":"v"}],"containers":[{"name":"a","exec":{"command":{"shell":"true"}},"volumeMounts":[{"name":"v","mountPath":"/data"}]}]}`, "/containers(0)/volumeMounts(0)/mountPath"},
		{"container secret", `{"id":"/p","secrets":{"s":{"source":"x"}},"containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"},"environment":{"PW":{"secret":"s"}}}]}`, "/containers(0)/environment/PW"},
		{"scaling kind", `{"id":"/p","scaling":{"kind":"auto"},"containers":[{"name":"a","image":{"kind":"DOCKER","id":"x"}}]}`, "/scaling/kind"},
		{"wrong type", `{"id":"/p","scaling":{"instances":"two"},"containers":[]}`, "/scaling/instances"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, aerr := parsePod([]byte(c.body), "")
			if aerr == nil {
				t.Fatal("accepted")
			}
			for _, d := range aerr.Body.Details {
				if d.Path == c.path {
					return
				}
			}
			t.Fatalf("no detail at %s: %d %+v", c.path, aerr.Status, aerr.Body)
		})
	}
}

// TestPodApp checks the app a pod is scheduled as: summed resources, one
// port mapping per endpoint, health checks on their endpoint's index, and
// the instance's container specs with ENDPOINT_ variables.
func TestPodApp(t *testing.T) {
	p, aerr := parsePod([]byte(`{"id":"/shop/web","labels":{"HAPROXY_GROUP":"external"},
		"networks":[{"mode":"container/bridge"}],
		"volumes":[{"name":"shared"}],
		"containers":[
		 {"name":"app","image":{"kind":"DOCKER","id":"srv"},"resources":{"cpus":0.5,"mem":64},
		  "endpoints":[{"name":"http","containerPort":8080,"hostPort":0}],
		  "healthCheck":{"http":{"endpoint":"http","path":"/health"},"intervalSeconds":1,"timeoutSeconds":1},
		  "volumeMounts":[{"name":"shared","mountPath":"/data"}]},
		 {"name":"side","image":{"kind":"DOCKER","id":"cli"},"exec":{"command":{"argv":["/cli","-x"]}},"resources":{"cpus":0.25,"mem":32},
		  "endpoints":[{"name":"admin","containerPort":9000,"hostPort":0,"protocol":["udp"]}],
		  "environment":{"MODE":"side"}}]}`), "")
	if aerr != nil {
		t.Fatal(aerr.Body)
	}
	cfg := DefaultConfig()
	app := podApp(&cfg, p)
	if app.Cpus != 0.75 || app.Mem != 96 || app.Instances != 1 {
		t.Errorf("resources %g cpus %g mem %d instances", app.Cpus, app.Mem, app.Instances)
	}
	if app.Labels["HAPROXY_GROUP"] != "external" || len(app.Networks) != 1 || app.Networks[0].Mode != "container/bridge" {
		t.Errorf("labels %v networks %+v", app.Labels, app.Networks)
	}
	pms := app.Container.PortMappings
	if len(pms) != 2 || pms[0].Name != "http" || pms[0].ContainerPort != 8080 || pms[1].Protocol != "udp" || pms[1].HostPort == nil {
		t.Fatalf("port mappings %+v", pms)
	}
	if got := hostPortRequests(app); !reflect.DeepEqual(got, []int{0, 0}) {
		t.Errorf("host port requests %v", got)
	}
	if len(app.HealthChecks) != 1 || app.HealthChecks[0].Protocol != "MESOS_HTTP" || *app.HealthChecks[0].PortIndex != 0 || app.HealthChecks[0].Path != "/health" {
		t.Errorf("health checks %+v", app.HealthChecks)
	}
	spec := taskSpec(app, "shop_web.1", []int{31001, 31002}, time.Second)
	if spec.Pod == nil || len(spec.Pod.Containers) != 2 {
		t.Fatalf("pod spec %+v", spec.Pod)
	}
	side := spec.Pod.Containers[1]
	if side.Env["ENDPOINT_HTTP"] != "31001" || side.Env["ENDPOINT_ADMIN"] != "31002" || side.Env["MODE"] != "side" || side.Env["MARATHON_APP_ID"] != "/shop/web" {
		t.Errorf("side env %v", side.Env)
	}
	if !reflect.DeepEqual(side.Argv, []string{"/cli", "-x"}) || side.Image != "cli" || side.Resources.Mem != 32 {
		t.Errorf("side %+v", side)
	}
	if _, ok := spec.Pod.Volumes["shared"]; !ok || spec.Pod.Containers[0].Mounts[0].MountPath != "/data" {
		t.Errorf("volumes %v mounts %+v", spec.Pod.Volumes, spec.Pod.Containers[0].Mounts)
	}
}

// TestPodsOnRealMaster drives /v2/pods on the real master with a simulated
// agent: create, status, versions, scale, kill an instance, delete; the
// pod never shows in /v2/apps.
func TestPodsOnRealMaster(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Capabilities: []string{"docker"},
		Resources:    api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
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
	agent := &fakeAgent{id: "agent-1", client: c, fail: make(chan string, 4)}
	go agent.run(ctx)
	events, err := c.Events(ctx, eventPodCreated, eventPodDeleted)
	if err != nil {
		t.Fatal(err)
	}

	body := `{"id":"/team/db","labels":{"HAPROXY_GROUP":"external"},"scaling":{"kind":"fixed","instances":1},
	  "containers":[{"name":"a","image":{"kind":"DOCKER","id":"img"},"resources":{"cpus":0.1,"mem":32},
	    "endpoints":[{"name":"pg","hostPort":0}]},
	   {"name":"b","image":{"kind":"DOCKER","id":"img"},"resources":{"cpus":0.1,"mem":32}}]}`
	var created api.Pod
	h, err := c.Do(ctx, "POST", "/v2/pods", []byte(body), &created)
	if err != nil {
		t.Fatal(err)
	}
	if created.ID != "/team/db" || created.Version == "" || len(created.Containers) != 2 || h.Get("Marathon-Deployment-Id") == "" {
		t.Fatalf("created %+v headers %v", created, h)
	}
	select {
	case ev := <-events:
		if ev.Type != eventPodCreated || !strings.Contains(string(ev.Data), `"uri":"/v2/pods"`) {
			t.Fatalf("event %s %s", ev.Type, ev.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pod_created_event")
	}
	if _, err := c.Do(ctx, "POST", "/v2/pods", []byte(body), nil); api.StatusCode(err) != http.StatusConflict {
		t.Fatalf("second POST: %v", err)
	}

	status := func() api.PodStatus {
		var s api.PodStatus
		if _, err := c.Do(ctx, "GET", "/v2/pods/team/db::status", nil, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	stable := func(n int) func() bool {
		return func() bool {
			s := status()
			if s.Status != "STABLE" || len(s.Instances) != n {
				return false
			}
			for _, in := range s.Instances {
				if in.Status != "STABLE" || len(in.Containers) != 2 || in.Containers[0].Endpoints[0].AllocatedHostPort < 31000 {
					return false
				}
			}
			return true
		}
	}
	eventually(t, 10*time.Second, "one stable instance", stable(1))

	// The instance's assignment carries both containers.
	as, err := c.Assignments(ctx, "agent-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Tasks) != 1 || as.Tasks[0].Spec.Pod == nil || len(as.Tasks[0].Spec.Pod.Containers) != 2 || len(as.Tasks[0].Spec.Ports) != 1 {
		t.Fatalf("assignment %+v", as.Tasks)
	}

	// Not an app.
	var apps struct{ Apps []api.AppInfo }
	if _, err := c.Do(ctx, "GET", "/v2/apps", nil, &apps); err != nil || len(apps.Apps) != 0 {
		t.Fatalf("/v2/apps lists %d apps (%v)", len(apps.Apps), err)
	}
	if _, err := c.App(ctx, "/team/db"); api.StatusCode(err) != 404 {
		t.Fatalf("GET /v2/apps/team/db: %v", err)
	}
	if _, err := c.PutApp(ctx, "/team/db", []byte(`{"cmd":"sleep 1"}`), false); api.StatusCode(err) != 409 {
		t.Fatalf("PUT /v2/apps over a pod: %v", err)
	}
	var all []api.Pod
	if _, err := c.Do(ctx, "GET", "/v2/pods", nil, &all); err != nil || len(all) != 1 || all[0].ID != "/team/db" {
		t.Fatalf("GET /v2/pods: %+v %v", all, err)
	}

	// Scale to 2 with a PUT: a second version.
	scaled := strings.Replace(body, `"instances":1`, `"instances":2`, 1)
	if _, err := c.Do(ctx, "PUT", "/v2/pods/team/db", []byte(scaled), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two stable instances", stable(2))
	var versions []string
	if _, err := c.Do(ctx, "GET", "/v2/pods/team/db::versions", nil, &versions); err != nil || len(versions) != 2 {
		t.Fatalf("versions %v %v", versions, err)
	}
	var old api.Pod
	if _, err := c.Do(ctx, "GET", "/v2/pods/team/db::versions/"+versions[1], nil, &old); err != nil || old.Scaling.Instances != 1 || old.Version != versions[1] {
		t.Fatalf("old version %+v %v", old, err)
	}
	var allStatus []api.PodStatus
	if _, err := c.Do(ctx, "GET", "/v2/pods/::status", nil, &allStatus); err != nil || len(allStatus) != 1 {
		t.Fatalf("::status %+v %v", allStatus, err)
	}

	// Kill one instance: it is replaced, the scale stays.
	victim := status().Instances[0].ID
	var killedOne api.PodInstanceStatus
	if _, err := c.Do(ctx, "DELETE", "/v2/pods/team/db::instances/"+victim, nil, &killedOne); err != nil || killedOne.ID != victim {
		t.Fatalf("kill %s: %+v %v", victim, killedOne, err)
	}
	eventually(t, 10*time.Second, "instance replaced", func() bool {
		s := status()
		for _, in := range s.Instances {
			if in.ID == victim {
				return false
			}
		}
		return stable(2)()
	})
	if _, err := c.Do(ctx, "DELETE", "/v2/pods/team/db::instances/nope", nil, nil); api.StatusCode(err) != 404 {
		t.Fatalf("kill unknown instance: %v", err)
	}

	if _, err := c.Do(ctx, "DELETE", "/v2/pods/team/db", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "pod gone", func() bool {
		_, err := c.Do(ctx, "GET", "/v2/pods/team/db", nil, nil)
		return api.StatusCode(err) == 404
	})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == eventPodDeleted {
				return
			}
		case <-deadline:
			t.Fatal("no pod_deleted_event")
		}
	}
}

// TestPodACL: a team token writes pods only under its path and lists only
// its own.
func TestPodACL(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(node)
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	cfg.Frameworks = []sched.Framework{New(mcfg)}
	cfg.AllocInterval = 50 * time.Millisecond
	ctx, url := serveMaster(t, cfg)
	boot, err := api.NewClient(url).ACLBootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := api.NewClient(url)
	admin.Token = boot.SecretID
	if _, err := admin.ACLPolicyApply(ctx, "team-a", strings.NewReader(`{"apps": {"/team-a/*": "write"}}`)); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "alice", Policies: []string{"team-a"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := api.NewClient(url)
	alice.Token = tok.SecretID
	pod := func(id string) []byte {
		return []byte(`{"id":"` + id + `","containers":[{"name":"a","exec":{"command":{"shell":"sleep 100"}},"resources":{"cpus":0.1,"mem":16}}]}`)
	}
	if _, err := alice.Do(ctx, "POST", "/v2/pods", pod("/team-a/p"), nil); err != nil {
		t.Fatalf("team token on its own path: %v", err)
	}
	if _, err := alice.Do(ctx, "POST", "/v2/pods", pod("/team-b/p"), nil); api.StatusCode(err) != 403 {
		t.Fatalf("team token on another team's path: %v, want 403", err)
	}
	if _, err := admin.Do(ctx, "POST", "/v2/pods", pod("/team-b/p"), nil); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct{ method, path string }{
		{"PUT", "/v2/pods/team-b/p"}, {"DELETE", "/v2/pods/team-b/p"}, {"DELETE", "/v2/pods/team-b/p::instances/x"},
		{"GET", "/v2/pods/team-b/p"}, {"GET", "/v2/pods/team-b/p::status"}, {"GET", "/v2/pods/team-b/p::versions"},
	} {
		var body []byte
		if req.method == "PUT" {
			body = pod("/team-b/p")
		}
		if _, err := alice.Do(ctx, req.method, req.path, body, nil); api.StatusCode(err) != 403 {
			t.Errorf("%s %s with the team-a token: %v, want 403", req.method, req.path, err)
		}
	}
	var list []api.Pod
	if _, err := alice.Do(ctx, "GET", "/v2/pods", nil, &list); err != nil || len(list) != 1 || list[0].ID != "/team-a/p" {
		t.Fatalf("alice lists %+v (%v), want /team-a/p alone", list, err)
	}
	var status []api.PodStatus
	if _, err := alice.Do(ctx, "GET", "/v2/pods/::status", nil, &status); err != nil || len(status) != 1 || status[0].ID != "/team-a/p" {
		t.Fatalf("alice's ::status %+v (%v)", status, err)
	}
	if _, err := api.NewClient(url).Do(ctx, "GET", "/v2/pods", nil, nil); api.StatusCode(err) != 401 && api.StatusCode(err) != 403 {
		t.Fatalf("no token: %v, want 401 or 403", err)
	}
}

// A plan that changes an app and pods lists the pods under affectedPods
// and in its actions as "pod" with the pod actions' names, as Marathon's
// DeploymentPlanConversion writes them; the stored plan keeps every run
// spec as an app for the deployment machinery.
func TestDeploymentShowsPodsAsMarathon(t *testing.T) {
	pod := func(id string, n int) *api.App {
		return &api.App{ID: id, Instances: n, Pod: &api.Pod{ID: id}}
	}
	d := buildPlan("d1", "v1", []change{
		{To: &api.App{ID: "/web", Instances: 1}},
		{To: pod("/db", 1)},
		{From: pod("/old", 1)},
		{From: pod("/cache", 1), To: pod("/cache", 3)},
	})
	if want := []string{"/cache", "/db", "/old", "/web"}; !reflect.DeepEqual(d.AffectedApps, want) {
		t.Fatalf("stored affectedApps %v, want every run spec %v", d.AffectedApps, want)
	}
	raw, err := json.Marshal(marathonDeployment(d))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		AffectedApps []string          `json:"affectedApps"`
		AffectedPods []string          `json:"affectedPods"`
		Steps        []json.RawMessage `json:"steps"`
		Current      []map[string]any  `json:"currentActions"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.AffectedApps, []string{"/web"}) || !reflect.DeepEqual(got.AffectedPods, []string{"/cache", "/db", "/old"}) {
		t.Errorf("affectedApps %v affectedPods %v, want [/web] and [/cache /db /old]", got.AffectedApps, got.AffectedPods)
	}
	want := `[{"actions":[{"action":"ScalePod","pod":"/cache"},{"action":"StartPod","pod":"/db"},{"action":"StartApplication","app":"/web"}]},` +
		`{"actions":[{"action":"StopPod","pod":"/old"}]}]`
	steps, _ := json.Marshal(got.Steps)
	if string(steps) != want {
		t.Errorf("steps\n got %s\nwant %s", steps, want)
	}
	if len(got.Current) != 3 || got.Current[1]["pod"] != "/db" || got.Current[1]["action"] != "StartPod" || got.Current[1]["app"] != nil {
		t.Errorf("currentActions %v", got.Current)
	}
	// Marathon's currentActions always carry readinessCheckResults ([]
	// with no readiness check); its steps never do (the want above).
	for _, a := range got.Current {
		if r, ok := a["readinessCheckResults"].([]any); !ok || len(r) != 0 {
			t.Errorf("currentActions entry %v: want readinessCheckResults []", a)
		}
	}
	// The stored plan is untouched.
	if a := d.Steps[0].Actions[1]; a.Action != ActionStart || a.App != "/db" || a.Pod != "" {
		t.Errorf("marathonDeployment changed the stored plan: %+v", d.Steps[0].Actions[1])
	}
}

// On a real master: /v2/deployments and deployment_info events show a
// pod's deployment under affectedPods, and /v2/groups lists each pod's
// status in its group's "pods" (by default and with embed=group.pods).
func TestPodDeploymentAndGroupsOnRealMaster(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Capabilities: []string{"docker"},
		Resources:    api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(node)
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	cfg.Frameworks = []sched.Framework{New(mcfg)}
	cfg.AllocInterval = 50 * time.Millisecond
	ctx, url := serveMaster(t, cfg)
	c := api.NewClient(url)
	// No agent runs the tasks: the deployments stay open.
	events, err := c.Events(ctx, api.EventDeploymentInfo)
	if err != nil {
		t.Fatal(err)
	}
	pod := `{"id":"/team/db","scaling":{"kind":"fixed","instances":1},
	  "containers":[{"name":"a","image":{"kind":"DOCKER","id":"img"},"resources":{"cpus":0.1,"mem":32}}]}`
	if _, err := c.Do(ctx, "POST", "/v2/pods", []byte(pod), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "POST", "/v2/apps", []byte(`{"id":"/team/web","cmd":"sleep 1000","cpus":0.1,"mem":32}`), nil); err != nil {
		t.Fatal(err)
	}

	select {
	case ev := <-events:
		var info struct {
			Plan struct {
				Steps []struct {
					Actions []map[string]any `json:"actions"`
				} `json:"steps"`
			} `json:"plan"`
			CurrentStep struct {
				Actions []map[string]any `json:"actions"`
			} `json:"currentStep"`
		}
		if err := json.Unmarshal(ev.Data, &info); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"action": "StartPod", "pod": "/team/db"}
		if len(info.Plan.Steps) != 1 || !reflect.DeepEqual(info.Plan.Steps[0].Actions, []map[string]any{want}) ||
			!reflect.DeepEqual(info.CurrentStep.Actions, []map[string]any{want}) {
			t.Errorf("deployment_info of the pod: %s", ev.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no deployment_info event")
	}

	var deps []map[string]any
	if _, err := c.Do(ctx, "GET", "/v2/deployments", nil, &deps); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range deps {
		apps, pods := fmt.Sprint(d["affectedApps"]), fmt.Sprint(d["affectedPods"])
		acts := fmt.Sprint(d["currentActions"])
		switch {
		case pods == "[/team/db]" && apps == "[]" && acts == "[map[action:StartPod pod:/team/db readinessCheckResults:[]]]":
			seen["pod"] = true
		case apps == "[/team/web]" && pods == "[]" && acts == "[map[action:StartApplication app:/team/web readinessCheckResults:[]]]":
			seen["app"] = true
		default:
			t.Errorf("deployment %v", d)
		}
	}
	if !seen["pod"] || !seen["app"] {
		t.Errorf("/v2/deployments = %v; want the pod's and the app's", deps)
	}

	// Each case: the keys of the group asked for and of /team in it (""
	// when /team is not listed), and the ids its "pods" and "apps" list.
	type groupWant struct{ keys, teamKeys, pods, apps string }
	for path, want := range map[string]groupWant{
		"/v2/groups": {"apps dependencies groups id pods version", "apps dependencies groups id pods version", "[/team/db]", "[/team/web]"},
		"/v2/groups?embed=group.pods&embed=group.apps&embed=group.groups": {"apps dependencies groups id pods version", "apps dependencies groups id pods version", "[/team/db]", "[/team/web]"},
		// Marathon's UI asks for groups and apps only: no pods key.
		"/v2/groups?embed=group.groups&embed=group.apps&embed=group.apps.deployments": {"apps dependencies groups id version", "apps dependencies groups id version", "[]", "[/team/web]"},
		// Without group.groups the root lists its own apps only.
		"/v2/groups?embed=group.apps":            {"apps dependencies id version", "", "[]", "[]"},
		"/v2/groups/team?embed=group.pods":       {"dependencies id pods version", "", "[/team/db]", "[]"},
		"/v2/groups/team?embed=group.apps.tasks": {"dependencies id version", "", "[]", "[]"},
	} {
		var g map[string]json.RawMessage
		if _, err := c.Do(ctx, "GET", path, nil, &g); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		team := g
		if !strings.HasPrefix(path, "/v2/groups/team") {
			team = nil
			var groups []map[string]json.RawMessage
			_ = json.Unmarshal(g["groups"], &groups)
			for _, sub := range groups {
				if string(sub["id"]) == `"/team"` {
					team = sub
				}
			}
		}
		ids := func(raw json.RawMessage) string {
			var list []struct {
				ID     string          `json:"id"`
				Spec   json.RawMessage `json:"spec"`
				Status string          `json:"status"`
			}
			_ = json.Unmarshal(raw, &list)
			var out []string
			for _, x := range list {
				out = append(out, x.ID)
			}
			return fmt.Sprintf("%v", out)
		}
		gotTeamKeys := ""
		if team != nil && !strings.HasPrefix(path, "/v2/groups/team") {
			gotTeamKeys = strings.Join(sortedKeys(team), " ")
		}
		got := groupWant{strings.Join(sortedKeys(g), " "), gotTeamKeys, ids(team["pods"]), ids(team["apps"])}
		if got != want {
			t.Errorf("GET %s:\n got %+v\nwant %+v", path, got, want)
		}
	}
	var team struct {
		Pods []struct {
			ID string `json:"id"`
		} `json:"pods"`
	}
	if _, err := c.Do(ctx, "GET", "/v2/groups/team", nil, &team); err != nil || len(team.Pods) != 1 || team.Pods[0].ID != "/team/db" {
		t.Errorf("GET /v2/groups/team: pods %+v %v", team.Pods, err)
	}

	// A group body replaces the group's apps, not its pods (it has none).
	put := `{"apps":[{"id":"web","cmd":"sleep 1000","cpus":0.1,"mem":32,"instances":2}]}`
	if _, err := c.Do(ctx, "PUT", "/v2/groups/team?force=true", []byte(put), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(ctx, "GET", "/v2/pods/team/db", nil, nil); err != nil {
		t.Errorf("the pod after a PUT of its group's apps: %v", err)
	}

	// scaleBy scales the group's apps, not its pods (Marathon's
	// updateTransitiveApps).
	if _, err := c.Do(ctx, "PUT", "/v2/groups/team?force=true", []byte(`{"scaleBy":2}`), nil); err != nil {
		t.Fatal(err)
	}
	var web struct {
		App struct {
			Instances int `json:"instances"`
		} `json:"app"`
	}
	var db struct {
		Scaling struct {
			Instances int `json:"instances"`
		} `json:"scaling"`
	}
	if _, err := c.Do(ctx, "GET", "/v2/apps/team/web", nil, &web); err != nil || web.App.Instances != 4 {
		t.Errorf("the app after scaleBy 2: %d instances (%v), want 4", web.App.Instances, err)
	}
	if _, err := c.Do(ctx, "GET", "/v2/pods/team/db", nil, &db); err != nil || db.Scaling.Instances != 1 {
		t.Errorf("the pod after scaleBy 2: %d instances (%v), want 1", db.Scaling.Instances, err)
	}
}
