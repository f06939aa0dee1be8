package marathon

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// FuzzAppJSON runs an app definition through what POST /v2/apps does
// before it writes anything: decoding, defaults, normalising, validation
// and the limits. It must never panic, and an app it accepts must be
// within every limit and encode again.
func FuzzAppJSON(f *testing.F) {
	for _, s := range []string{
		whereisbot,
		`{"id":"x","cmd":"true","cpus":1e308}`,
		`{"id":"/a/b","cmd":"true","labels":{"A":"1\n2","HAPROXY_0_BACKEND_HEAD":"x\ny"}}`,
		`{"id":"a","container":{"type":"DOCKER","docker":{"image":"x"},"portMappings":[{"containerPort":80,"hostPort":0,"labels":{"V":"a"}}]},"networks":[{"mode":"container/bridge"}],"mem":64}`,
		`{"id":"c","cmd":"true","constraints":[["hostname","MAX_PER","-1"],["site","LIKE","(a|b"],["x","GROUP_BY","2"]]}`,
		`{"id":"h","cmd":"true","healthChecks":[{"protocol":"HTTP","portIndex":3}],"portDefinitions":[{"port":70000,"protocol":"sctp"}]}`,
		`{"id":"` + strings.Repeat("a", 64) + `","cmd":"true","instances":-1,"gpus":1000}`,
		`{"id":"../..","args":["a"],"readinessChecks":[{"portName":"x","timeoutSeconds":5,"intervalSeconds":1}]}`,
	} {
		f.Add([]byte(s))
	}
	fw := New(DefaultConfig())
	v := &view{apps: map[string]*api.App{}}
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > MaxBody {
			return
		}
		keys, aerr := parseObject(body, reflect.TypeOf(api.App{}), "")
		if aerr != nil {
			return
		}
		var raw struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(body, &raw)
		id, probs := canonicalID(raw.ID, "/")
		if raw.ID == "" || len(probs) > 0 {
			return
		}
		app, aerr := fw.prepare(v, nil, keys, id, "", false, now, nil)
		if aerr != nil {
			// 400 for a value of the wrong JSON type, 422 for a
			// definition Marathon refuses: either names the path.
			if (aerr.Status != 422 && aerr.Status != 400) || len(aerr.Body.Details) == 0 {
				t.Fatalf("refused with %d %+v, want 400 or 422 with details", aerr.Status, aerr.Body)
			}
			return
		}
		if d := limitProblems(app, ""); len(d) > 0 {
			t.Fatalf("accepted an app beyond a limit: %+v", d)
		}
		if len(app.ID) > MaxIDLength {
			t.Fatalf("accepted id %q", app.ID)
		}
		if _, err := json.Marshal(app); err != nil {
			t.Fatalf("accepted an app that does not encode: %v", err)
		}
	})
}

// FuzzLabels checks one label map: no panic, and a map it accepts holds
// no CR, LF or NUL outside marathon-lb's template labels.
func FuzzLabels(f *testing.F) {
	f.Add("HAPROXY_GROUP", "external", "HAPROXY_0_VHOST", "a.example")
	f.Add("A\x00", "1", "B", "x\r\ny")
	f.Add("HAPROXY_0_FRONTEND_HEAD", "a\nb", "", "")
	f.Add(strings.Repeat("K", 300), "v", "k", strings.Repeat("v", MaxLabelValueLen+1))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		labels := map[string]string{k1: v1, k2: v2}
		if len(labelProblems(labels, "/labels")) > 0 {
			return
		}
		for k, v := range labels {
			if k == "" || len(k) > MaxLabelKeyLength || len(v) > MaxLabelValueLen || strings.ContainsAny(k, "\r\n\x00") || strings.ContainsRune(v, 0) {
				t.Fatalf("accepted label %q=%q", k, v)
			}
			if strings.ContainsAny(v, "\r\n") && !multiLineLabel(k) {
				t.Fatalf("accepted a multi-line value for %q", k)
			}
		}
	})
}
