package chronos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// chronosCase is one file under testdata/compat: a job written from
// Chronos's API docs (docs/docs/api.md) and what the suite expects of it.
type chronosCase struct {
	Source string `json:"source"`
	// Endpoint is iso8601 (a scheduled job) or dependency.
	Endpoint   string          `json:"endpoint"`
	Parents    []string        `json:"parents"` // jobs to create first
	Definition json.RawMessage `json:"definition"`
	// Expect holds the fields Chronos gives back in another form.
	Expect map[string]any `json:"expect"`
	// Update is laid over the definition for the PUT.
	Update map[string]any `json:"update"`
}

// chronosDefaults are what Chronos gives a job that leaves the field out
// (docs/docs/api.md's Job Configuration table; BaseJob's defaults).
var chronosDefaults = map[string]any{
	"shell": true, "retries": 2.0, "cpus": 0.1, "mem": 128.0, "disk": 256.0, "disabled": false, "async": false,
	"epsilon": "PT60S", "executor": "", "executorFlags": "", "owner": "", "ownerName": "", "description": "",
	"successCount": 0.0, "errorCount": 0.0, "lastSuccess": "", "lastError": "", "softError": false,
	"dataProcessingJobType": false, "highPriority": false, "concurrent": false,
	"arguments": []any{}, "environmentVariables": []any{}, "constraints": []any{}, "fetch": []any{}, "uris": []any{},
}

// subset reports where got does not hold every field of want (objects
// recursively, arrays element by element, numbers as numbers).
func subset(path string, want, got any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %v", path, got)}
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
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, subset(path+"."+k, w[k], gv)...)
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		var out []string
		for i := range w {
			out = append(out, subset(fmt.Sprintf("%s[%d]", path, i), w[i], g[i])...)
		}
		return out
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		return nil
	}
}

// TestChronosDocsJobs drives every job under testdata/compat (each written
// from Chronos's API docs) through POST /scheduler/iso8601 or
// /scheduler/dependency, GET /scheduler/jobs and /scheduler/job/{name}
// (every field it gives back equal, Chronos's defaults for the others;
// runAsUser, which Chronos fills from its --user flag, is left out),
// PUT with a change, GET again, DELETE and a 404 after.
func TestChronosDocsJobs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "compat", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			e := newEnv(t)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var cc chronosCase
			dec := json.NewDecoder(strings.NewReader(string(b)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&cc); err != nil || cc.Source == "" || (cc.Endpoint != "iso8601" && cc.Endpoint != "dependency") {
				t.Fatalf("%s: %v (a case needs source, endpoint and definition)", file, err)
			}
			for _, p := range cc.Parents {
				e.mustDo("POST", "/scheduler/iso8601", fmt.Sprintf(`{"name":%q,"command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D"}`, p), 204)
			}
			var def map[string]any
			if err := json.Unmarshal(cc.Definition, &def); err != nil {
				t.Fatal(err)
			}
			name := def["name"].(string)
			e.mustDo("POST", "/scheduler/"+cc.Endpoint, string(cc.Definition), 204)
			check := func(step string, sent map[string]any) {
				t.Helper()
				want := map[string]any{}
				for k, v := range sent {
					want[k] = v
				}
				for k, v := range cc.Expect {
					want[k] = v
				}
				var list []map[string]any
				if err := json.Unmarshal([]byte(e.mustDo("GET", "/scheduler/jobs", "", 200)), &list); err != nil {
					t.Fatal(err)
				}
				var inList map[string]any
				for _, j := range list {
					if j["name"] == name {
						inList = j
					}
				}
				var one map[string]any
				if err := json.Unmarshal([]byte(e.mustDo("GET", "/scheduler/job/"+strings.ReplaceAll(name, " ", "%20"), "", 200)), &one); err != nil {
					t.Fatal(err)
				}
				for what, got := range map[string]map[string]any{"/scheduler/jobs": inList, "/scheduler/job/{name}": one} {
					if got == nil {
						t.Fatalf("%s: %s not in %s", step, name, what)
					}
					for _, p := range subset("job", want, got) {
						t.Errorf("%s: %s: %s", step, what, p)
					}
					for k, v := range chronosDefaults {
						if _, given := want[k]; given {
							continue
						}
						for _, p := range subset("job", map[string]any{k: v}, got) {
							t.Errorf("%s: %s: default: %s", step, what, p)
						}
					}
				}
			}
			check("after POST", def)
			if len(cc.Update) == 0 {
				cc.Update = map[string]any{"description": "updated by the compat suite"}
			}
			upd := map[string]any{}
			for k, v := range def {
				upd[k] = v
			}
			for k, v := range cc.Update {
				upd[k] = v
			}
			ub, _ := json.Marshal(upd)
			e.mustDo("PUT", "/scheduler/"+cc.Endpoint, string(ub), 204)
			if v, ok := cc.Update["cpus"].(string); ok { // a string comes back a number
				var n float64
				fmt.Sscan(v, &n)
				if cc.Expect == nil {
					cc.Expect = map[string]any{}
				}
				cc.Expect["cpus"] = n
			}
			check("after PUT", upd)
			e.mustDo("DELETE", "/scheduler/job/"+strings.ReplaceAll(name, " ", "%20"), "", 204)
			// Chronos answers a job it does not have with 400 "Job '…' not found".
			if !strings.Contains(e.mustDo("GET", "/scheduler/job/"+strings.ReplaceAll(name, " ", "%20"), "", 400), "not found") {
				t.Error("GET after DELETE: no \"not found\"")
			}
			for _, p := range cc.Parents {
				e.mustDo("DELETE", "/scheduler/job/"+p, "", 204)
			}
		})
	}
}
