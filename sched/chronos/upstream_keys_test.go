package chronos

import (
	"encoding/json"
	"sort"
	"testing"
)

// chronosJobKeys are the keys Chronos's JobSerializer writes for every job
// (utils/JobSerializer.scala), plus concurrent and maxCompletionTime of
// Chronos 3; schedule and scheduleTimeZone for a scheduled job, parents for
// a dependent one; container only when the job has one.
var chronosJobKeys = []string{"name", "command", "shell", "epsilon", "executor", "executorFlags", "taskInfoData",
	"retries", "owner", "ownerName", "description", "async", "successCount", "errorCount", "lastSuccess",
	"lastError", "cpus", "disk", "mem", "disabled", "softError", "dataProcessingJobType", "errorsSinceLastSuccess",
	"fetch", "uris", "environmentVariables", "arguments", "highPriority", "runAsUser", "constraints",
	"concurrent", "maxCompletionTime"}

// Every job in /scheduler/jobs and /scheduler/jobs/search carries Chronos's
// keys and no others: a strict client fails on a key Chronos never sends,
// and on one it always sends that is missing.
func TestJobListsCarryChronosKeys(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"nightly","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D","scheduleTimeZone":"UTC","owner":"ops@example.com"}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"after","command":"true","parents":["nightly"]}`, 204)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"dockerjob","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D",
	  "container":{"type":"DOCKER","image":"busybox","network":"BRIDGE"},"cpus":"0.5","mem":"512"}`, 204)
	for _, path := range []string{"/v1/scheduler/jobs", "/v1/scheduler/jobs/search?name=", "/v1/scheduler/jobs/search?command=true"} {
		code, body := e.do("GET", path, "")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		var jobs []map[string]any
		if err := json.Unmarshal([]byte(body), &jobs); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		if len(jobs) != 3 {
			t.Fatalf("GET %s: %d jobs: %s", path, len(jobs), body)
		}
		for _, j := range jobs {
			want := append([]string(nil), chronosJobKeys...)
			if _, ok := j["parents"]; ok {
				want = append(want, "parents")
			} else {
				want = append(want, "schedule", "scheduleTimeZone")
			}
			if _, ok := j["container"]; ok {
				want = append(want, "container")
			}
			w := map[string]bool{}
			var missing, extra []string
			for _, k := range want {
				w[k] = true
				if _, ok := j[k]; !ok {
					missing = append(missing, k)
				}
			}
			for k := range j {
				if !w[k] {
					extra = append(extra, k)
				}
			}
			sort.Strings(missing)
			sort.Strings(extra)
			if len(missing)+len(extra) > 0 {
				t.Errorf("GET %s job %v: missing %v, keys Chronos never sends %v", path, j["name"], missing, extra)
			}
		}
	}
}
