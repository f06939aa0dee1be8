package chronos

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestBadInputGetsChronosErrorsAndChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"a","command":"true","schedule":"R//PT1H"}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"b","command":"true","parents":["a"]}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"c","command":"true","parents":["b"]}`, 204)
	before := e.store.Index()
	cases := []struct {
		name, method, path, body string
		want                     int
		msg                      string
	}{
		{"unparsable schedule", "POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"every day"}`, 400, "Cannot parse schedule 'every day'"},
		{"bad period", "POST", "/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R/2026-01-01T00:00:00Z/PT"}`, 400, "Cannot parse schedule"},
		{"bad zone", "POST", "/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R//PT1H","scheduleTimeZone":"Nowhere/Land"}`, 400, "scheduleTimeZone"},
		{"bad name", "POST", "/v1/scheduler/iso8601", `{"name":"bad name!","command":"true","schedule":"R//PT1H"}`, 400, "name"},
		{"empty name", "POST", "/v1/scheduler/iso8601", `{"command":"true","schedule":"R//PT1H"}`, 400, "name"},
		{"unknown parent", "POST", "/v1/scheduler/dependency", `{"name":"x","command":"true","parents":["a","ghost"]}`, 400, "'ghost'"},
		{"parents on iso8601", "POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R//PT1H","parents":["a"]}`, 400, "dependency"},
		{"no parents", "POST", "/v1/scheduler/dependency", `{"name":"x","command":"true"}`, 400, "no parents"},
		{"self parent", "POST", "/v1/scheduler/dependency", `{"name":"x","command":"true","parents":["x"]}`, 400, "own parent"},
		{"cycle", "POST", "/v1/scheduler/dependency", `{"name":"b","command":"true","parents":["c"]}`, 400, "cycle"},
		{"bad json", "POST", "/v1/scheduler/iso8601", `{"name":`, 400, "JSON"},
		{"bad epsilon", "POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R//PT1H","epsilon":"60"}`, 400, "epsilon"},
		{"bad constraint", "POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R//PT1H","constraints":[["rack","NEAR","1"]]}`, 400, "NEAR"},
		{"negative cpus", "POST", "/v1/scheduler/iso8601", `{"name":"x","command":"true","schedule":"R//PT1H","cpus":-1}`, 400, "negative"},
		{"no command", "POST", "/v1/scheduler/iso8601", `{"name":"x","schedule":"R//PT1H"}`, 400, "command"},
		{"unknown job get", "GET", "/v1/scheduler/job/ghost", ``, 400, "Job 'ghost' not found"},
		{"unknown job delete", "DELETE", "/v1/scheduler/job/ghost", ``, 400, "not found"},
		{"unknown job run", "PUT", "/v1/scheduler/job/ghost", ``, 400, "not found"},
		{"unknown job success", "PUT", "/v1/scheduler/job/success/ghost", ``, 400, "not found"},
		{"unknown job kill", "DELETE", "/v1/scheduler/task/kill/ghost", ``, 400, "not found"},
		{"unknown job stat", "GET", "/v1/scheduler/job/stat/ghost", ``, 400, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(c.method, c.path, c.body)
			if code != c.want {
				t.Fatalf("got %d %s, want %d", code, body, c.want)
			}
			var eb apiError
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("error body %q is not Chronos's {status,message}: %v", body, err)
			}
			if eb.Status != "Bad Request" || !strings.Contains(eb.Message, c.msg) {
				t.Fatalf("body %+v, want status Bad Request and a message with %q", eb, c.msg)
			}
		})
	}
	if e.store.Index() != before {
		t.Fatal("a refused request wrote to the store")
	}
	if _, ok := e.store.Get(sched.TableJobs, "x"); ok {
		t.Fatal("half-created job x")
	}
	if got := e.job("b").Parents; len(got) != 1 || got[0] != "a" {
		t.Fatalf("the cycle attempt changed b: %v", got)
	}
}

func TestJobsListingSummarySearchGraphAndStats(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"extract","command":"run-extract --site eu","schedule":"R//PT24H"}`, 204)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"report","command":"mail-report","schedule":"0 6 * * mon-fri","scheduleTimeZone":"Europe/Berlin"}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"load","command":"run-load","parents":["extract"]}`, 204)
	// An update replaces the definition; counters posted with it are kept,
	// as Chronos keeps them (an update without counters keeps the old ones).
	e.settle()
	ids := e.allocate()
	e.setTask(ids[0], api.TaskFinished)
	e.settle()
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"extract","command":"run-extract --site us","schedule":"R//PT24H","successCount":99}`, 204)
	j := e.job("extract")
	if j.Command != "run-extract --site us" || j.SuccessCount != 99 {
		t.Fatalf("update: %+v", j)
	}
	if !strings.HasPrefix(j.Schedule, "R/2026-11-22T01:00:00.000Z/") {
		t.Fatalf("an empty start is pinned to the submit time: %q", j.Schedule)
	}

	var jobs []api.Job
	json.Unmarshal([]byte(e.mustDo("GET", "/scheduler/jobs", "", 200)), &jobs)
	if len(jobs) != 3 || jobs[0].Name != "extract" || !jobs[0].Shell || jobs[0].Cpus != 0.1 || jobs[0].Retries != 2 || jobs[0].Epsilon != "PT60S" {
		t.Fatalf("jobs %+v", jobs)
	}
	var sum struct {
		Jobs []api.JobSummary `json:"jobs"`
	}
	json.Unmarshal([]byte(e.mustDo("GET", "/v1/scheduler/jobs/summary", "", 200)), &sum)
	got := map[string]api.JobSummary{}
	for _, s := range sum.Jobs {
		got[s.Name] = s
	}
	if got["extract"].Status != "success" || got["report"].Status != "fresh" || got["load"].Parents[0] != "extract" || got["load"].State != "queued" {
		t.Fatalf("summary %+v", sum)
	}
	var found []api.Job
	json.Unmarshal([]byte(e.mustDo("GET", "/v1/scheduler/jobs/search?command=RUN-", "", 200)), &found)
	if len(found) != 2 {
		t.Fatalf("search by command found %d", len(found))
	}
	found = nil
	json.Unmarshal([]byte(e.mustDo("GET", "/v1/scheduler/jobs/search?name=rep", "", 200)), &found)
	if len(found) != 1 || found[0].Name != "report" {
		t.Fatalf("search by name %+v", found)
	}
	found = nil
	json.Unmarshal([]byte(e.mustDo("GET", "/v1/scheduler/jobs/search?any=load&limit=5&offset=0", "", 200)), &found)
	if len(found) != 1 {
		t.Fatalf("search any %+v", found)
	}
	dot := e.mustDo("GET", "/v1/scheduler/graph/dot", "", 200)
	if dot != "digraph G {\n  1 [label = \"extract\"];\n  2 [label = \"load\"];\n  3 [label = \"report\"];\n  1 -> 2;\n}\n" {
		t.Fatalf("dot %s", dot)
	}
	csv := e.mustDo("GET", "/v1/scheduler/graph/csv", "", 200)
	if !strings.Contains(csv, "link,extract,load\n") || !strings.Contains(csv, "node,extract,success,idle\n") {
		t.Fatalf("csv %s", csv)
	}
	var stat struct {
		Histogram Histogram  `json:"histogram"`
		History   []TaskStat `json:"taskStatHistory"`
	}
	json.Unmarshal([]byte(e.mustDo("GET", "/v1/scheduler/job/stat/extract", "", 200)), &stat)
	if stat.Histogram.Count != 1 || len(stat.History) != 1 {
		t.Fatalf("stat %+v", stat)
	}
	if !strings.Contains(e.mustDo("GET", "/scheduler/stats/99thPercentile", "", 200), `"jobNameLabel":"extract"`) {
		t.Fatal("stats")
	}
	e.mustDo("GET", "/scheduler/stats/42nd", "", 400)
	e.mustDo("GET", "/scheduler/nothing", "", 404)
	if !strings.Contains(e.mustDo("GET", "/v1/scheduler/leader", "", 200), `"leader"`) {
		t.Fatal("leader")
	}
}

func TestDeleteReparentsDependantsAndKills(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"root","command":"true","schedule":"R//PT1H"}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"mid","command":"true","parents":["root"]}`, 204)
	e.mustDo("POST", "/v1/scheduler/dependency", `{"name":"leaf","command":"true","parents":["mid"]}`, 204)
	e.settle()
	ids := e.allocate()
	e.setTask(ids[0], api.TaskRunning)
	e.mustDo("DELETE", "/v1/scheduler/job/mid", "", 204)
	if p := e.job("leaf").Parents; len(p) != 1 || p[0] != "root" {
		t.Fatalf("leaf parents %v, want mid's parents", p)
	}
	e.mustDo("DELETE", "/v1/scheduler/job/root", "", 204)
	leaf := e.job("leaf")
	if len(leaf.Parents) != 0 || leaf.Schedule == "" {
		t.Fatalf("leaf did not inherit root's schedule: %+v", leaf)
	}
	if tr, _ := e.task(ids[0]); tr.Goal != api.GoalKill {
		t.Fatal("root's running task was not killed")
	}
	if len(e.runs("root")) != 0 {
		t.Fatal("root's ledger survived it")
	}
	// A new job of the same name never reuses a run or task id.
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"root","command":"true","schedule":"R//PT1H"}`, 204)
	e.settle()
	for _, r := range e.runs("root") {
		if r.TaskID == ids[0] {
			t.Fatalf("task id %s reused", r.TaskID)
		}
	}
}

func TestKillFailsRunWithoutRetry(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"k","command":"sleep 100","schedule":"R//PT1H","retries":3}`, 204)
	e.settle()
	ids := e.allocate()
	e.setTask(ids[0], api.TaskRunning)
	e.mustDo("DELETE", "/scheduler/task/kill/k", "", 204)
	if tr, _ := e.task(ids[0]); tr.Goal != api.GoalKill {
		t.Fatal("not killed")
	}
	e.setTask(ids[0], api.TaskKilled)
	e.settle()
	if s := e.states("k"); s != "failed" {
		t.Fatalf("ledger %s", s)
	}
	if e.f.Wants() {
		t.Fatal("a killed run is retried")
	}
}
