package marathon

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// Each limit is refused with Marathon's 422 body naming the JSON path and
// the limit, and a definition at the limit is accepted.
func TestAppLimitsAreRefusedNamingThePath(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("a", 64)
	cases := []struct {
		name, method, path, body string
		status                   int
		wantPath, wantMsg        string
	}{
		{"cpus", "POST", "/v2/apps", `{"id":"x","cmd":"true","cpus":1e308}`, 422, "/cpus", "expected 4096.0 or less"},
		{"mem", "POST", "/v2/apps", `{"id":"x","cmd":"true","mem":1e18}`, 422, "/mem", "expected 16777216.0 or less"},
		{"disk", "POST", "/v2/apps", `{"id":"x","cmd":"true","disk":1e18}`, 422, "/disk", "or less"},
		{"gpus", "POST", "/v2/apps", `{"id":"x","cmd":"true","gpus":100000}`, 422, "/gpus", "expected 128 or less"},
		{"instances", "POST", "/v2/apps", `{"id":"x","cmd":"true","instances":1000000}`, 422, "/instances", "expected 100000 or less"},
		{"port", "POST", "/v2/apps", `{"id":"x","cmd":"true","portDefinitions":[{"port":70000}]}`, 422, "/portDefinitions(0)/port", "between 0 and 65535"},
		{"MAX_PER -1", "POST", "/v2/apps", `{"id":"x","cmd":"true","constraints":[["hostname","MAX_PER","-1"]]}`, 422, "/constraints(0)", "expected 1 or more"},
		{"operator", "POST", "/v2/apps", `{"id":"x","cmd":"true","constraints":[["hostname","NEAR","1"]]}`, 422, "/constraints(0)", "Constraint operator"},
		{"segment", "POST", "/v2/apps", `{"id":"` + long + `","cmd":"true"}`, 422, "/id", "expected 63 or less"},
		{"id length", "POST", "/v2/apps", `{"id":"` + strings.Repeat("abcdefghij/", 19) + `abcdefghijk","cmd":"true"}`, 422, "/id", "expected 200 or less"},
		{"2000-character id", "PUT", "/v2/apps/" + strings.Repeat("a", 2000), `{"cmd":"true"}`, 422, "/id", "a DNS label"},
		{"encoded slash", "PUT", "/v2/apps/a%2Fb", `{"cmd":"true"}`, 422, "/id", "%2F"},
		{"label newline", "POST", "/v2/apps", `{"id":"x","cmd":"true","labels":{"A":"1\r\nX-Evil: 1"}}`, 422, "/labels/A", "CR or LF"},
		{"label NUL key", "POST", "/v2/apps", `{"id":"x","cmd":"true","labels":{"A\u0000":"1"}}`, 422, "/labels/", "NUL"},
		{"label value size", "POST", "/v2/apps", `{"id":"x","cmd":"true","labels":{"A":"` + strings.Repeat("v", MaxLabelValueLen+1) + `"}}`, 422, "/labels/A", "expected 16384 or less"},
		{"label key size", "POST", "/v2/apps", `{"id":"x","cmd":"true","labels":{"` + strings.Repeat("K", 300) + `":"1"}}`, 422, "/labels/KKKK", "expected 255 or less"},
		{"port label", "POST", "/v2/apps", `{"id":"x","cmd":"true","portDefinitions":[{"port":0,"labels":{"V":"a\nb"}}]}`, 422, "/portDefinitions(0)/labels/V", "CR or LF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			var body api.ErrorBody
			r.json(t, &body)
			for _, d := range body.Details {
				if strings.HasPrefix(d.Path, c.wantPath) && strings.Contains(strings.Join(d.Errors, " "), c.wantMsg) {
					return
				}
			}
			t.Fatalf("no detail at %s saying %q: %s", c.wantPath, c.wantMsg, r.Body)
		})
	}
	// At the limits, and a marathon-lb template label spanning lines.
	ok := map[string]any{"id": "/" + strings.Repeat("b", 63), "cmd": "true", "cpus": 4096, "mem": 16 << 20, "instances": 0,
		"labels":      map[string]string{"A": strings.Repeat("v", MaxLabelValueLen), "HAPROXY_0_BACKEND_HEAD": "backend x\n  balance roundrobin\n"},
		"constraints": [][]string{{"hostname", "MAX_PER", "1"}}}
	b, _ := json.Marshal(ok)
	if r := e.do("POST", "/v2/apps", string(b)); r.Status != 201 {
		t.Fatalf("an app at the limits: %d %s", r.Status, r.Body)
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t)
	big := `{"id":"x","cmd":"true","labels":{"A":"` + strings.Repeat("v", MaxBody) + `"}}`
	r := e.do("POST", "/v2/apps", big)
	if r.Status != 413 || !strings.Contains(string(r.Body), "larger than 1048576 bytes") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	// /v2/groups takes more; its apps still meet the label limits.
	r = e.do("PUT", "/v2/groups", `{"id":"/g","apps":[{"id":"a","cmd":"true","labels":{"A":"`+strings.Repeat("v", 2*MaxBody)+`"}}]}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), "expected 16384 or less") {
		t.Fatalf("%d %.300s", r.Status, r.Body)
	}
}
