package marathon

import (
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

const whereisbot = `{"id":"/ssk2/whereisbot","cmd":"python3 -m http.server $PORT0","cpus":0.1,"mem":32,"instances":1,
 "env":{"A":"1"},"labels":{"HAPROXY_GROUP":"external"}}`

func TestPutCreatesThenUpdates(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/v2/apps/ssk2/whereisbot", whereisbot)
	if r.Status != 201 {
		t.Fatalf("first PUT: %d %s", r.Status, r.Body)
	}
	var res api.DeploymentResult
	r.json(t, &res)
	if res.DeploymentID == "" || res.Version == "" || r.Header.Get("Marathon-Deployment-Id") != res.DeploymentID {
		t.Fatalf("deployment result %s, header %q", r.Body, r.Header.Get("Marathon-Deployment-Id"))
	}
	// Locked by the running deployment.
	r = e.do("PUT", "/v2/apps/ssk2/whereisbot", `{"instances":3}`)
	if r.Status != 409 || !strings.Contains(string(r.Body), `"deployments":[{"id":"`+res.DeploymentID+`"}]`) {
		t.Fatalf("locked PUT: %d %s", r.Status, r.Body)
	}
	r = e.do("PUT", "/v2/apps/ssk2/whereisbot?force=true", `{"instances":3}`)
	if r.Status != 200 {
		t.Fatalf("forced PUT: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/v2/apps/ssk2/whereisbot", "")
	var got struct {
		App api.AppInfo `json:"app"`
	}
	r.json(t, &got)
	a := got.App
	if a.ID != "/ssk2/whereisbot" || a.Instances != 3 || a.Cpus != 0.1 || a.Mem != 32 || a.Env["A"].Value != "1" ||
		a.Labels["HAPROXY_GROUP"] != "external" {
		t.Fatalf("app after partial PUT: %s", r.Body)
	}
	if len(a.PortDefinitions) != 1 || a.PortDefinitions[0].Port != 10000 || a.Ports[0] != 10000 {
		t.Fatalf("default port: want one service port 10000, got %+v %v", a.PortDefinitions, a.Ports)
	}
	if a.UpgradeStrategy.MinimumHealthCapacity != 1 || a.BackoffFactor != 1.15 || a.KillSelection != "YOUNGEST_FIRST" {
		t.Fatalf("defaults: %s", r.Body)
	}
	if a.VersionInfo == nil || a.VersionInfo.LastScalingAt != a.Version || a.VersionInfo.LastConfigChangeAt == a.Version {
		t.Fatalf("a scale must move lastScalingAt only: %+v version %s", a.VersionInfo, a.Version)
	}
	if a.Tasks == nil || len(a.Deployments) != 1 {
		t.Fatalf("GET /v2/apps/{id} embeds tasks and deployments: %s", r.Body)
	}
	// Versions: two.
	r = e.do("GET", "/v2/apps/ssk2/whereisbot/versions", "")
	var vs struct{ Versions []string }
	r.json(t, &vs)
	if len(vs.Versions) != 2 || vs.Versions[0] != a.Version {
		t.Fatalf("versions: %s", r.Body)
	}
	r = e.do("GET", "/v2/apps/ssk2/whereisbot/versions/"+vs.Versions[1], "")
	var old api.App
	r.json(t, &old)
	if r.Status != 200 || old.Instances != 1 {
		t.Fatalf("old version: %d %s", r.Status, r.Body)
	}
	// Env is replaced, not merged.
	r = e.do("PATCH", "/v2/apps/ssk2/whereisbot?force=true", `{"env":{"B":"2"}}`)
	if r.Status != 200 {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/v2/apps/ssk2/whereisbot", "")
	got.App = api.AppInfo{}
	r.json(t, &got)
	if _, ok := got.App.Env["A"]; ok || got.App.Env["B"].Value != "2" || got.App.Instances != 3 {
		t.Fatalf("PATCH env: %s", r.Body)
	}
	// List envelope and group envelope.
	r = e.do("GET", "/v2/apps?embed=apps.tasks", "")
	if !strings.HasPrefix(compactJSON(t, r.Body), `{"apps":[{"id":"/ssk2/whereisbot"`) {
		t.Fatalf("list: %s", r.Body)
	}
	r = e.do("GET", "/v2/apps/ssk2/*", "")
	if !strings.HasPrefix(compactJSON(t, r.Body), `{"*":[{"id":"/ssk2/whereisbot"`) {
		t.Fatalf("group apps: %s", r.Body)
	}
	r = e.do("GET", "/v2/groups", "")
	var g api.Group
	r.json(t, &g)
	if len(g.Groups) != 1 || g.Groups[0].ID != "/ssk2" || len(g.Groups[0].Apps) != 1 {
		t.Fatalf("groups: %s", r.Body)
	}
	if r = e.do("GET", "/v2/groups/ssk2", ""); r.Status != 200 {
		t.Fatalf("group: %d %s", r.Status, r.Body)
	}
	if r = e.do("GET", "/v2/groups/nope", ""); r.Status != 404 {
		t.Fatalf("missing group: %d %s", r.Status, r.Body)
	}
}

func TestPostCreate(t *testing.T) {
	e := newEnv(t)
	r := e.do("POST", "/v2/apps", `{"id":"web","cmd":"sleep 100"}`)
	if r.Status != 201 || r.Header.Get("Location") != "/v2/apps/web" || r.Header.Get("Marathon-Deployment-Id") == "" {
		t.Fatalf("POST: %d %v %s", r.Status, r.Header, r.Body)
	}
	var info api.AppInfo
	r.json(t, &info)
	if info.ID != "/web" || len(info.Deployments) != 1 || info.TasksRunning != 0 {
		t.Fatalf("POST body: %s", r.Body)
	}
	r = e.do("POST", "/v2/apps", `{"id":"/web","cmd":"sleep 100"}`)
	if r.Status != 409 || compactJSON(t, r.Body) != `{"message":"An app with id [/web] already exists."}` {
		t.Fatalf("duplicate POST: %d %s", r.Status, r.Body)
	}
	// A second app gets the next service port.
	r = e.do("POST", "/v2/apps", `{"id":"/web2","cmd":"sleep 100"}`)
	r.json(t, &info)
	if info.PortDefinitions[0].Port != 10001 {
		t.Fatalf("second service port: %s", r.Body)
	}
	r = e.do("POST", "/v2/apps", `{"id":"/web/inner","cmd":"sleep 100"}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), "/web is an app") {
		t.Fatalf("app inside an app: %d %s", r.Status, r.Body)
	}
	r = e.do("POST", "/v2/apps", `{"id":"/web3","cmd":"sleep 100","portDefinitions":[{"port":10001}]}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), `"path":"/portDefinitions(0)/port"`) {
		t.Fatalf("taken service port: %d %s", r.Status, r.Body)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"wrong type", "PUT", "/v2/apps/a", `{"cmd":"x","cpus":"lots"}`, 400,
			`{"message":"Invalid JSON","details":[{"path":"/cpus","errors":["error.expected.jsnumber"]}]}`},
		{"nested wrong type", "PUT", "/v2/apps/a", `{"cmd":"x","healthChecks":[{"portIndex":"0"}]}`, 400,
			`{"message":"Invalid JSON","details":[{"path":"/healthChecks(0)/portIndex","errors":["error.expected.jsnumber"]}]}`},
		{"env type", "PUT", "/v2/apps/a", `{"cmd":"x","env":{"A":1}}`, 400,
			`{"message":"Invalid JSON","details":[{"path":"/env/A","errors":["error.expected.jsstring"]}]}`},
		{"malformed", "PUT", "/v2/apps/a", `{"cmd":`, 400, `"message":"Invalid JSON"`},
		{"not an object", "POST", "/v2/apps", `[1]`, 400,
			`{"message":"Invalid JSON","details":[{"path":"/","errors":["error.expected.jsobject"]}]}`},
		{"bad id", "PUT", "/v2/apps/Bad_ID", `{"cmd":"x"}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/id","errors":["` + strings.ReplaceAll(msgIDPattern, `\`, `\\`) + `"]}]}`},
		{"dotdot", "POST", "/v2/apps", `{"id":"/a/..","cmd":"x"}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/id","errors":["` + msgIDReserved + `"]}]}`},
		{"cmd and args", "PUT", "/v2/apps/a", `{"cmd":"x","args":["y"]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/","errors":["` + msgCmdArgs + `"]}]}`},
		{"neither cmd nor args", "PUT", "/v2/apps/a", `{"cpus":1}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/","errors":["` + msgCmdArgs + `"]}]}`},
		{"docker mem below minimum", "PUT", "/v2/apps/a", `{"mem":4,"container":{"type":"DOCKER","docker":{"image":"x"}}}`, 422,
			`"path":"/mem","errors":["got 4, expected 6 or more: the Docker Engine refuses smaller memory limits"]}`},
		{"docker containerPort 0 in bridge", "PUT", "/v2/apps/a", `{"container":{"type":"DOCKER","docker":{"image":"x"},"portMappings":[{"containerPort":0,"hostPort":0}]},"networks":[{"mode":"container/bridge"}]}`, 422,
			`"path":"/container/portMappings(0)/containerPort","errors":["must not be 0 in BRIDGE networking: name the port the container listens on"]}`},
		{"docker duplicate hostPort", "PUT", "/v2/apps/a", `{"container":{"type":"DOCKER","docker":{"image":"x"},"portMappings":[{"containerPort":80,"hostPort":31080},{"containerPort":81,"hostPort":31080}]},"networks":[{"mode":"container/bridge"}]}`, 422,
			`"path":"/container/portMappings(1)/hostPort","errors":["hostPort 31080 is mapped twice"]}`},
		{"negative cpus", "PUT", "/v2/apps/a", `{"cmd":"x","cpus":-1}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/cpus","errors":["got -1.0, expected 0.0 or more"]}]}`},
		{"negative instances", "PUT", "/v2/apps/a", `{"cmd":"x","instances":-2}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/instances","errors":["got -2, expected 0 or more"]}]}`},
		{"upgrade strategy", "PUT", "/v2/apps/a", `{"cmd":"x","upgradeStrategy":{"minimumHealthCapacity":1.2}}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/upgradeStrategy/minimumHealthCapacity","errors":["got 1.2, expected between 0.0 and 1.0"]}]}`},
		{"constraint operator", "PUT", "/v2/apps/a", `{"cmd":"x","constraints":[["hostname","SOMETIMES"]]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/constraints(0)","errors":["` + msgConstraintOp + `"]}]}`},
		{"constraint regex", "PUT", "/v2/apps/a", `{"cmd":"x","constraints":[["rack","LIKE","(["]]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/constraints(0)","errors":["'([' is not a valid regular expression"]}]}`},
		{"constraint value", "PUT", "/v2/apps/a", `{"cmd":"x","constraints":[["rack","CLUSTER"]]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/constraints(0)","errors":["Missing value"]}]}`},
		{"health port index", "PUT", "/v2/apps/a", `{"cmd":"x","healthChecks":[{"protocol":"HTTP","portIndex":3}]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/healthChecks(0)","errors":["` + msgHealthPort + `"]}]}`},
		{"duplicate ports", "PUT", "/v2/apps/a", `{"cmd":"x","portDefinitions":[{"port":12000},{"port":12000}]}`, 422,
			`{"message":"Object is not valid","details":[{"path":"/portDefinitions","errors":["Ports must be unique."]}]}`},
		{"unknown app", "GET", "/v2/apps/nope", ``, 404, `{"message":"App '/nope' does not exist"}`},
		{"unknown app delete", "DELETE", "/v2/apps/nope", ``, 404, `{"message":"App '/nope' does not exist"}`},
		{"unknown app tasks", "GET", "/v2/apps/nope/tasks", ``, 404, `{"message":"App '/nope' does not exist"}`},
		{"unknown app restart", "POST", "/v2/apps/nope/restart", ``, 404, `{"message":"App '/nope' does not exist"}`},
		{"patch unknown", "PATCH", "/v2/apps/nope", `{"instances":2}`, 404, `{"message":"App '/nope' does not exist"}`},
		{"unknown deployment", "DELETE", "/v2/deployments/x", ``, 404, `{"message":"DeploymentPlan x does not exist"}`},
		{"unknown task ids", "POST", "/v2/tasks/delete", `{"ids":["nope.1"]}`, 400, `{"message":"Unknown task ids: nope.1"}`},
		{"array element", "PUT", "/v2/apps", `[{"id":"/ok","cmd":"x"},{"id":"/b","cmd":"x","mem":-5}]`, 422,
			`{"message":"Object is not valid","details":[{"path":"(1)/mem","errors":["got -5.0, expected 0.0 or more"]}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body)
			got := compactJSON(t, r.Body)
			if r.Status != c.status || (got != c.want && !(strings.HasPrefix(c.want, `"`) && strings.Contains(got, c.want))) {
				t.Fatalf("%s %s: got %d %s\nwant %d %s", c.method, c.path, r.Status, got, c.status, c.want)
			}
		})
	}
}

func TestNoInputCrashes(t *testing.T) {
	e := newEnv(t)
	bodies := []string{``, `null`, `"x"`, `{}`, `{"id":null}`, `{"id":""}`, `{"id":"/"}`, `{"container":{"type":"DOCKER"},"id":"/x"}`,
		`{"id":"/x","cmd":"y","unreachableStrategy":"sometimes"}`, `{"id":"/x","cmd":"y","portDefinitions":[{"port":-1}]}`,
		`{"id":"/x","args":[1]}`, `{"id":"/x","cmd":"y","healthChecks":[null]}`, `{"id":"/x","cmd":"y","constraints":[[]]}`, `{"id":"/g","apps":[{"id":"a","cmd":"x"}],"groups":[{"id":"s","apps":[null, 1]}]}`, `{"scaleBy":-1}`,
		`{"id":"/x","cmd":"y","container":{"type":"DOCKER","docker":{"image":"i","network":"BRIDGE","portMappings":[{"containerPort":80}]}}}`}
	for _, b := range bodies {
		for _, p := range []string{"/v2/apps", "/v2/apps/x", "/v2/tasks/delete", "/v2/apps/x/tasks", "/v2/deployments/x", "/v2/queue/x/delay", "/v2/groups", "/v2/groups/x", "/v2/apps/x/restart", "/v2/apps/x/versions"} {
			for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "GET"} {
				r := e.do(m, p, b)
				if r.Status >= 500 {
					t.Fatalf("%s %s %s: %d %s", m, p, b, r.Status, r.Body)
				}
			}
		}
	}
}

func TestLegacyDockerBridge(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/v2/apps/nginx", `{"container":{"type":"DOCKER","docker":{"image":"nginx","network":"BRIDGE",
		"portMappings":[{"containerPort":80,"hostPort":0,"servicePort":0,"protocol":"tcp"}]}},"instances":1}`)
	if r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/v2/apps/nginx", "")
	var got struct {
		App api.AppInfo `json:"app"`
	}
	r.json(t, &got)
	a := got.App
	if len(a.Networks) != 1 || a.Networks[0].Mode != "container/bridge" || len(a.PortDefinitions) != 0 ||
		len(a.Container.PortMappings) != 1 || a.Container.PortMappings[0].ServicePort != 10000 {
		t.Fatalf("canonical form: %s", r.Body)
	}
	// GET output PUT back is accepted unchanged.
	b, _ := jsonMarshal(a.App)
	if r = e.do("PUT", "/v2/apps/nginx?force=true", string(b)); r.Status != 200 {
		t.Fatalf("re-PUT of GET output: %d %s", r.Status, r.Body)
	}
}
