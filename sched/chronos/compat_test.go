package chronos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// What Chronos's own docs and clients send is taken as Chronos takes it:
// cpus and mem as strings (the docs' docker job), a Java time zone
// abbreviation (PST), container networkInfos, counters posted with a job;
// and /scheduler/stats/mean and the task-progress endpoint answer.
func TestChronosClientsInputs(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/scheduler/iso8601", `{"schedule":"R/2014-09-25T17:22:00Z/PT2M","name":"dockerjob",
		"container":{"type":"DOCKER","image":"libmesos/ubuntu","network":"BRIDGE",
			"networkInfos":[{"name":"dcos","protocol":"IPv4","labels":[{"key":"team","value":"bi"}]}],
			"volumes":[{"containerPath":"/var/log/","hostPath":"/logs/","mode":"RW"}]},
		"cpus":"0.5","mem":"512","disk":"256","uris":[],"command":"while sleep 10; do date =u %T; done",
		"scheduleTimeZone":"PST","successCount":7,"errorCount":2,"lastSuccess":"2014-09-25T17:20:00.000Z",
		"lastError":"2014-09-24T10:00:00.000Z","errorsSinceLastSuccess":0}`, 204)
	j := e.job("dockerjob")
	if j.Cpus != 0.5 || j.Mem != 512 || j.Disk != 256 {
		t.Errorf("string resources: cpus %v mem %v disk %v", j.Cpus, j.Mem, j.Disk)
	}
	if j.SuccessCount != 7 || j.ErrorCount != 2 || j.LastSuccess != "2014-09-25T17:20:00.000Z" || j.LastError == "" {
		t.Errorf("posted counters not kept: %+v", j)
	}
	code, body := e.do("GET", "/scheduler/job/dockerjob", "")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("GET job: %d %s", code, body)
	}
	ni, _ := json.Marshal(got["container"].(map[string]any)["networkInfos"])
	if string(ni) != `[{"labels":[{"key":"team","value":"bi"}],"name":"dcos","protocol":"IPv4"}]` {
		t.Errorf("networkInfos came back as %s", ni)
	}
	if got["scheduleTimeZone"] != "PST" {
		t.Errorf("scheduleTimeZone came back as %v", got["scheduleTimeZone"])
	}
	// PST is America/Los_Angeles, as Java's TimeZone has it: a daily job
	// at 09:00 local runs at 17:00 UTC in winter.
	s, err := ParseSchedule("R/2026-01-05T09:00:00/P1D", "PST", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := s.Next(time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)); !next.Equal(time.Date(2026, 1, 5, 17, 0, 0, 0, time.UTC)) {
		t.Errorf("PST schedule next %v, want 2026-01-05 17:00 UTC", next)
	}
	// An update without counters keeps them.
	e.mustDo("POST", "/scheduler/iso8601", `{"schedule":"R/2014-09-25T17:22:00Z/PT2M","name":"dockerjob","command":"true","cpus":"0.25"}`, 204)
	if j := e.job("dockerjob"); j.SuccessCount != 7 || j.Cpus != 0.25 {
		t.Errorf("after an update: %+v", j)
	}
	for _, c := range []struct{ body, msg string }{
		{`{"name":"x","command":"true","schedule":"R//PT1H","cpus":"half"}`, `cpus: \"half\" is not a number`},
		{`{"name":"x","command":"true","schedule":"R//PT1H","mem":"NaN"}`, "mem:"},
		{`{"name":"x","command":"true","schedule":"R//PT1H","scheduleTimeZone":"XYZ"}`, "scheduleTimeZone"},
	} {
		if code, body := e.do("POST", "/scheduler/iso8601", c.body); code != 400 || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s, want 400 with %q", c.body, code, body, c.msg)
		}
	}

	// A run, then its progress and the mean.
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"quick","command":"true","schedule":"R1//PT1H"}`, 204)
	e.settle()
	var ids []string
	for _, id := range e.allocate() {
		if strings.Contains(id, ".quick.") {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("launched %v", ids)
	}
	e.mustDo("POST", "/scheduler/job/quick/task/"+ids[0]+"/progress", `{"numAdditionalElementsProcessed":5}`, 204)
	for _, c := range []struct{ path, body string }{
		{"/scheduler/job/quick/task/nope/progress", `{"numAdditionalElementsProcessed":5}`},
		{"/scheduler/job/ghost/task/" + ids[0] + "/progress", `{"numAdditionalElementsProcessed":5}`},
		{"/scheduler/job/quick/task/" + ids[0] + "/progress", `{"numAdditionalElementsProcessed":-1}`},
	} {
		if code, body := e.do("POST", c.path, c.body); code != 400 {
			t.Errorf("progress %s %s: %d %s, want 400", c.path, c.body, code, body)
		}
	}
	e.setTask(ids[0], api.TaskRunning)
	e.settle()
	e.clk.Add(2 * time.Second)
	e.setTask(ids[0], api.TaskFinished)
	e.settle()
	code, body = e.do("GET", "/scheduler/stats/mean", "")
	if code != 200 || !strings.Contains(body, `"jobNameLabel":"quick"`) {
		t.Fatalf("stats/mean: %d %s", code, body)
	}
}
