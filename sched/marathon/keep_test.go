package marathon

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// jsonAt walks a decoded JSON value by object keys and array indexes.
func jsonAt(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return v
}

// Fields Marathon keeps come back on GET unchanged, and weft says in
// GET /v1/apps/problems which of them it does not honour. An omitted
// container.type is DOCKER, as in Marathon.
func TestKeptFieldsRoundTrip(t *testing.T) {
	e := newEnv(t)
	kept := map[string]string{
		"pullConfig":        `{"secret":"pullConfigSecret"}`,
		"credential":        `{"principal":"svc","secret":"credSecret"}`,
		"linuxInfo":         `{"seccomp":{"profileName":"default.json","unconfined":false},"ipcInfo":{"mode":"PRIVATE","shmSize":64}}`,
		"check":             `{"http":{"portIndex":0,"path":"/ready","scheme":"HTTP"},"intervalSeconds":10,"timeoutSeconds":5,"delaySeconds":15}`,
		"secretVolume":      `{"containerPath":"/etc/secret","secret":"secretvolume"}`,
		"resourceLimits":    `{"cpus":"unlimited","mem":512}`,
		"executorResources": `{"cpus":0.1,"mem":32,"disk":10}`,
	}
	def := `{"id":"/kept","instances":1,"cpus":0.1,"mem":64,
		"container":{"docker":{"image":"nginx","pullConfig":` + kept["pullConfig"] + `,"credential":` + kept["credential"] + `},
			"linuxInfo":` + kept["linuxInfo"] + `,
			"volumes":[` + kept["secretVolume"] + `],
			"portMappings":[{"containerPort":80}]},
		"networks":[{"mode":"container","name":"dcos"}],
		"check":` + kept["check"] + `,
		"resourceLimits":` + kept["resourceLimits"] + `,
		"executorResources":` + kept["executorResources"] + `,
		"secrets":{"secretvolume":{"source":"/db/password"},"pullConfigSecret":{"source":"/registry"},"credSecret":{"source":"/cred"}}}`
	if r := e.do("POST", "/v2/apps", def); r.Status != 201 {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	r := e.do("GET", "/v2/apps/kept", "")
	got := jsonAt(decodeJSON(t, string(r.Body)), "app")
	for name, path := range map[string][]any{
		"pullConfig":        {"container", "docker", "pullConfig"},
		"credential":        {"container", "docker", "credential"},
		"linuxInfo":         {"container", "linuxInfo"},
		"check":             {"check"},
		"secretVolume":      {"container", "volumes", 0},
		"resourceLimits":    {"resourceLimits"},
		"executorResources": {"executorResources"},
	} {
		if want := decodeJSON(t, kept[name]); !reflect.DeepEqual(jsonAt(got, path...), want) {
			t.Errorf("%s: GET returns %v, want %v", name, jsonAt(got, path...), want)
		}
	}
	if typ := jsonAt(got, "container", "type"); typ != "DOCKER" {
		t.Errorf("omitted container.type comes back as %v, want DOCKER", typ)
	}
	if n := jsonAt(got, "networks", 0, "name"); n != "dcos" {
		t.Errorf("network name comes back as %v, want dcos", n)
	}

	// The task runs on weft's network.
	e.reconcile()
	o := offer("a1", "h1", 1, 1024)
	o.Capabilities = []string{"docker"}
	res := e.f.ResourceOffers(context.Background(), []api.Offer{o})
	if len(res.Launches) != 1 {
		t.Fatalf("launches: %+v", res)
	}
	if nets := res.Launches[0].Task.Spec.Networks; len(nets) != 1 || nets[0].Name != WeftNetwork || nets[0].Mode != "container" {
		t.Fatalf("task networks %+v, want weft's", nets)
	}

	// And weft says what it keeps without honouring.
	r = e.do("GET", "/v1/apps/problems", "")
	var probs struct{ Apps []AppProblems }
	r.json(t, &probs)
	if len(probs.Apps) != 1 || probs.Apps[0].AppID != "/kept" {
		t.Fatalf("problems: %s", r.Body)
	}
	all := strings.Join(probs.Apps[0].Problems, "\n")
	for _, want := range []string{`"dcos" runs on weft's overlay network "weft"`, "check:", "resourceLimits:", "executorResources:",
		"linuxInfo:", "pullConfig:", "credential:", `secret volume "secretvolume"`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}
