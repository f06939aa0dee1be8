package chronos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestDueRunLaunchesExactlyOnce(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"extract","command":"echo hi","schedule":"R/2026-11-22T02:00:00Z/PT24H","owner":"ops@example.com"}`, 204)
	e.settle()
	if e.f.Wants() || len(e.runs("extract")) != 0 {
		t.Fatalf("a run before it is due: %v", e.runs("extract"))
	}
	e.clk.Add(time.Hour) // 02:00 exactly
	e.settle()
	if !e.f.Wants() {
		t.Fatal("a due run is not wanted")
	}
	ids := e.allocate()
	if len(ids) != 1 {
		t.Fatalf("launched %v, want one task", ids)
	}
	// Offers again, passes again: nothing more.
	if more := e.allocate(); len(more) != 0 {
		t.Fatalf("launched again: %v", more)
	}
	e.settle()
	if more := e.allocate(); len(more) != 0 {
		t.Fatalf("launched again after a pass: %v", more)
	}
	runs := e.runs("extract")
	if len(runs) != 1 || runs[0].State != RunRunning || runs[0].Trigger != TriggerSchedule || runs[0].ScheduledAt != "2026-11-22T02:00:00.000Z" {
		t.Fatalf("ledger %+v", runs)
	}
	tr, _ := e.task(ids[0])
	if tr.Task.Framework != "chronos" || tr.Task.Name != "extract" || tr.Task.AppID != "/extract" {
		t.Fatalf("task identity %+v", tr.Task)
	}
	if tr.Spec.Cmd == nil || *tr.Spec.Cmd != "echo hi" {
		t.Fatalf("cmd %v", tr.Spec.Cmd)
	}
	for k, v := range map[string]string{"CHRONOS_JOB_NAME": "extract", "CHRONOS_JOB_OWNER": "ops@example.com",
		"CHRONOS_RESOURCE_CPU": "0.1", "CHRONOS_RESOURCE_MEM": "128", "CHRONOS_RESOURCE_DISK": "256", "MESOS_TASK_ID": ids[0], "mesos_task_id": ids[0]} {
		if tr.Spec.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, tr.Spec.Env[k], v)
		}
	}
	e.setTask(ids[0], api.TaskFinished)
	e.settle()
	j := e.job("extract")
	if j.SuccessCount != 1 || j.LastSuccess == "" || j.ErrorCount != 0 {
		t.Fatalf("counters %+v", j)
	}
	if _, ok := e.task(ids[0]); ok {
		t.Error("the finished task was not cleaned up")
	}
	// The next day's run is the next one.
	e.clk.Add(24*time.Hour - time.Second)
	e.settle()
	if e.f.Wants() {
		t.Fatal("wanted before the next day")
	}
	e.clk.Add(2 * time.Second)
	e.settle()
	if got := e.allocate(); len(got) != 1 {
		t.Fatalf("second day launched %v", got)
	}
}

func TestSuccessStartsDependantOnceEveryParentSucceeded(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"extract-a","command":"true","schedule":"R//PT1H"}`, 204)
	e.mustDo("POST", "/scheduler/iso8601", `{"name":"extract-b","command":"true","schedule":"R//PT1H"}`, 204)
	e.mustDo("POST", "/scheduler/dependency", `{"name":"load","command":"true","parents":["extract-a","extract-b"]}`, 204)
	e.settle()
	ids := e.allocate()
	if len(ids) != 2 {
		t.Fatalf("launched %v, want both extracts", ids)
	}
	e.setTask(ids[0], api.TaskFinished)
	e.settle()
	if len(e.runs("load")) != 0 {
		t.Fatal("load started with one parent done")
	}
	// The parent-success state is in the store, not in memory.
	if ent, ok := e.store.Get(sched.TableMeta, stateKeyPrefix+"load"); !ok || !strings.Contains(string(*ent.Value.(*json.RawMessage)), "extract-a") {
		t.Fatalf("load's parent state is not persisted: %v", ent.Value)
	}
	e.setTask(ids[1], api.TaskFinished)
	e.settle()
	runs := e.runs("load")
	if len(runs) != 1 || runs[0].Trigger != TriggerDependency || runs[0].State != RunQueued {
		t.Fatalf("load runs %+v", runs)
	}
	if got := e.allocate(); len(got) != 1 || !strings.HasPrefix(got[0], "ct.load.") {
		t.Fatalf("load launched %v", got)
	}
	// Another success of one parent alone does not start load again.
	e.mustDo("PUT", "/scheduler/job/success/extract-a", "", 200)
	e.settle()
	if n := len(e.runs("load")); n != 1 {
		t.Fatalf("load has %d runs after one parent's second success", n)
	}
	e.mustDo("PUT", "/scheduler/job/success/extract-b", "", 200)
	e.settle()
	if n := len(e.runs("load")); n != 2 {
		t.Fatalf("load has %d runs after both parents succeeded again; want 2", n)
	}
}

func TestFailureRetriesAfterDelayThenRecordsError(t *testing.T) {
	e := newEnv(t)
	e.f.cfg.FailureRetry = time.Minute
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"flaky","command":"false","schedule":"R1//PT1H","retries":2}`, 204)
	e.settle()
	id1 := e.allocate()
	if len(id1) != 1 || id1[0] != "ct.flaky.1.1" {
		t.Fatalf("first attempt %v", id1)
	}
	for attempt := 2; attempt <= 3; attempt++ {
		e.setTask(e.runs("flaky")[0].TaskID, api.TaskFailed)
		e.settle()
		r := e.runs("flaky")[0]
		if r.State != RunRetrying || r.Attempt != attempt {
			t.Fatalf("after failure %d: %+v", attempt-1, r)
		}
		if e.f.Wants() || len(e.allocate()) != 0 {
			t.Fatal("retried before the delay")
		}
		e.clk.Add(59 * time.Second)
		e.settle()
		if len(e.allocate()) != 0 {
			t.Fatal("retried before the delay")
		}
		e.clk.Add(time.Second)
		e.settle()
		got := e.allocate()
		if len(got) != 1 || got[0] != taskID("flaky", 1, attempt) {
			t.Fatalf("attempt %d launched %v", attempt, got)
		}
		if j := e.job("flaky"); j.ErrorCount != 0 || j.LastError != "" {
			t.Fatalf("error counted before retries ran out: %+v", j)
		}
	}
	e.setTask(e.runs("flaky")[0].TaskID, api.TaskFailed)
	e.settle()
	r := e.runs("flaky")[0]
	if r.State != RunFailed || r.Attempt != 3 {
		t.Fatalf("final %+v", r)
	}
	j := e.job("flaky")
	if j.ErrorCount != 1 || j.ErrorsSinceLastSuccess != 1 || j.LastError == "" || j.SuccessCount != 0 {
		t.Fatalf("counters %+v", j)
	}
	e.clk.Add(time.Hour)
	e.settle()
	if len(e.allocate()) != 0 {
		t.Fatal("R1 ran twice")
	}
}

func TestNonConcurrentRunsNeverOverlap(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"slow","command":"sleep 90","schedule":"R//PT1M","epsilon":"PT5M"}`, 204)
	e.settle()
	first := e.allocate()
	if len(first) != 1 {
		t.Fatalf("first %v", first)
	}
	e.setTask(first[0], api.TaskRunning)
	e.clk.Add(61 * time.Second)
	e.settle()
	if got := e.allocate(); len(got) != 0 {
		t.Fatalf("second run overlapped the first: %v", got)
	}
	if s := e.states("slow"); s != "running,queued" {
		t.Fatalf("ledger %s", s)
	}
	e.setTask(first[0], api.TaskFinished)
	e.settle()
	second := e.allocate()
	if len(second) != 1 {
		t.Fatalf("the waiting run did not start: %v", second)
	}
	e.setTask(second[0], api.TaskRunning)
	// This time the run outlives epsilon: the waiting runs are skipped.
	e.clk.Add(7 * time.Minute)
	e.settle()
	if got := e.allocate(); len(got) != 0 {
		t.Fatalf("overlap: %v", got)
	}
	skipped := 0
	for _, r := range e.runs("slow") {
		if r.State == RunSkipped {
			skipped++
		}
		if r.State == RunRunning && r.TaskID != second[0] {
			t.Fatalf("two runs running: %+v", e.runs("slow"))
		}
	}
	if skipped == 0 {
		t.Fatalf("no run skipped after waiting past epsilon: %s", e.states("slow"))
	}
}

func TestConcurrentJobsMayOverlap(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"par","command":"sleep 90","schedule":"R//PT1M","concurrent":true}`, 204)
	e.settle()
	if len(e.allocate()) != 1 {
		t.Fatal("first")
	}
	e.clk.Add(time.Minute)
	e.settle()
	if len(e.allocate()) != 1 {
		t.Fatal("a concurrent job's second run did not start while the first runs")
	}
}

func TestRunsMissedByMoreThanEpsilonAreSkippedAndRecorded(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"hourly","command":"true","schedule":"R/2026-11-22T01:30:00Z/PT1H","epsilon":"PT60S"}`, 204)
	e.settle()
	// The master is down from 01:00 to 04:30:30: 01:30, 02:30, 03:30 are
	// missed by more than a minute; 04:30 is missed by 30 s and runs.
	e.clk.Add(3*time.Hour + 30*time.Minute + 30*time.Second)
	e.settle()
	if got := e.states("hourly"); got != "skipped,skipped,skipped,queued" {
		t.Fatalf("ledger %s", got)
	}
	runs := e.runs("hourly")
	if runs[0].ScheduledAt != "2026-11-22T01:30:00.000Z" || !strings.Contains(runs[0].Message, "epsilon") {
		t.Fatalf("skip record %+v", runs[0])
	}
	if runs[3].ScheduledAt != "2026-11-22T04:30:00.000Z" {
		t.Fatalf("run %+v", runs[3])
	}
}

func TestMasterRestartNeitherLosesNorDuplicatesARun(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
	s := openStore(t)
	e1 := newEnvOn(t, s, clk, testConfig(clk))
	e1.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"a","command":"true","schedule":"R//PT1H"}`, 204)
	e1.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"b","command":"true","schedule":"R//PT1H"}`, 204)
	e1.mustDo("POST", "/v1/scheduler/dependency", `{"name":"c","command":"true","parents":["a","b"]}`, 204)
	e1.settle()
	// a launches; b's run is written but the master dies before any offer.
	launched := e1.allocate(api.Offer{ID: "small", AgentID: "x", Hostname: "x", Resources: api.Resources{Cpus: 0.15, Mem: 200, Disk: 300}})
	if len(launched) != 1 {
		t.Fatalf("launched %v", launched)
	}
	e1.setTask(launched[0], api.TaskRunning)

	// A new leader over the same replicated state.
	clk.Add(10 * time.Second)
	e2 := newEnvOn(t, s, clk, testConfig(clk))
	e2.settle()
	got := e2.allocate()
	if len(got) != 1 || got[0] == launched[0] {
		t.Fatalf("after the restart launched %v; want only the run that never started", got)
	}
	if n := len(e2.runs("a")) + len(e2.runs("b")); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
	e2.setTask(launched[0], api.TaskFinished)
	e2.settle()
	// Another restart between the two parents' successes: c still waits
	// for b, and starts once when b succeeds.
	e3 := newEnvOn(t, s, clk, testConfig(clk))
	e3.settle()
	if len(e3.runs("c")) != 0 || len(e3.allocate()) != 0 {
		t.Fatal("something launched twice after the second restart")
	}
	e3.setTask(got[0], api.TaskFinished)
	e3.settle()
	if runs := e3.runs("c"); len(runs) != 1 {
		t.Fatalf("c runs %+v", runs)
	}
	if ja, jb := e3.job("a"), e3.job("b"); ja.SuccessCount != 1 || jb.SuccessCount != 1 {
		t.Fatalf("success counted %d and %d times", ja.SuccessCount, jb.SuccessCount)
	}
}

func TestMaxCompletionTimeKillsAndFails(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"stuck","command":"sleep 1000","schedule":"R1//PT1H","retries":0,"maxCompletionTime":30}`, 204)
	e.settle()
	ids := e.allocate()
	tr, _ := e.task(ids[0])
	if tr.Spec.MaxCompletionSeconds != 30 {
		t.Fatalf("spec %+v", tr.Spec)
	}
	e.setTask(ids[0], api.TaskRunning)
	e.clk.Add(29 * time.Second)
	e.settle()
	if r := e.runs("stuck")[0]; r.State != RunRunning {
		t.Fatalf("%+v", r)
	}
	e.clk.Add(2 * time.Second)
	e.settle()
	if r := e.runs("stuck")[0]; r.State != RunFailed || !strings.Contains(r.Message, "maxCompletionTime") {
		t.Fatalf("%+v", r)
	}
	if tr, _ := e.task(ids[0]); tr.Goal != api.GoalKill {
		t.Fatalf("task goal %s, want kill", tr.Goal)
	}
	e.setTask(ids[0], api.TaskKilled)
	e.settle()
	if _, ok := e.task(ids[0]); ok {
		t.Fatal("killed task not cleaned up")
	}
	if j := e.job("stuck"); j.ErrorCount != 1 {
		t.Fatalf("%+v", j)
	}
}

func TestDisabledJobsAndR0DoNotRun(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"off","command":"true","schedule":"R//PT1H","disabled":true}`, 204)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"r0","command":"true","schedule":"R0//PT1H"}`, 204)
	e.settle()
	if len(e.allocate()) != 0 {
		t.Fatal("a disabled job ran")
	}
	if !e.job("r0").Disabled {
		t.Fatal("R0 did not disable the job")
	}
	// A manual run works on a disabled job, with its arguments.
	e.mustDo("PUT", "/v1/scheduler/job/off?arguments=--full+--day%3D1", "", 204)
	e.settle()
	ids := e.allocate()
	if len(ids) != 1 {
		t.Fatalf("manual run %v", ids)
	}
	tr, _ := e.task(ids[0])
	if *tr.Spec.Cmd != "true --full --day=1" {
		t.Fatalf("cmd %q", *tr.Spec.Cmd)
	}
}

func TestConstraintsAndContainers(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"eu","command":"true","schedule":"R//PT1H","constraints":[["site","EQUALS","eu"],["hostname","UNLIKE","bad.*"]]}`, 204)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"img","command":"echo","shell":false,"arguments":["a b"],"schedule":"R//PT1H","container":{"type":"DOCKER","image":"busybox"}}`, 204)
	e.settle()
	us := offer("us1")
	us.Site = "us"
	badEU := offer("bad1")
	badEU.Site = "eu"
	if got := e.allocate(us, badEU); len(got) != 0 {
		t.Fatalf("launched %v on offers that break constraints or lack docker", got)
	}
	good := offer("good1")
	good.Site = "eu"
	good.Capabilities = []string{"docker"}
	got := e.allocate(good)
	if len(got) != 2 {
		t.Fatalf("launched %v, want both", got)
	}
	for _, id := range got {
		tr, _ := e.task(id)
		if tr.Task.Name == "img" {
			if tr.Spec.Container == nil || tr.Spec.Container.Docker.Image != "busybox" || tr.Spec.Cmd != nil ||
				len(tr.Spec.Args) != 2 || tr.Spec.Args[0] != "echo" || tr.Spec.Args[1] != "a b" {
				t.Fatalf("container spec %+v", tr.Spec)
			}
		}
	}
}

func TestConstraintMatcher(t *testing.T) {
	o := api.Offer{Hostname: "node-3", Site: "eu", Attributes: map[string]string{"rack": "r1", "ssd": "true"}}
	other := api.Offer{Hostname: "node-4", Site: "eu", Attributes: map[string]string{"rack": "r1"}}
	cases := []struct {
		c       []string
		running []api.Offer
		want    bool
	}{
		{[]string{"rack", "EQUALS", "r1"}, nil, true},
		{[]string{"rack", "EQUALS", "r2"}, nil, false},
		{[]string{"hostname", "LIKE", "node-[0-9]"}, nil, true},
		{[]string{"hostname", "LIKE", "node"}, nil, false}, // whole-value match
		{[]string{"hostname", "UNLIKE", "node-3"}, nil, false},
		{[]string{"gpu", "UNLIKE", "true"}, nil, true}, // absent attribute
		{[]string{"gpu", "EQUALS", "true"}, nil, false},
		{[]string{"site", "CLUSTER", "eu"}, nil, true},
		{[]string{"site", "IS", "us"}, nil, false},
		{[]string{"hostname", "UNIQUE"}, []api.Offer{other}, true},
		{[]string{"hostname", "UNIQUE"}, []api.Offer{o}, false},
		{[]string{"rack", "MAX_PER", "2"}, []api.Offer{other}, true},
		{[]string{"rack", "MAX_PER", "1"}, []api.Offer{other}, false},
	}
	for _, c := range cases {
		if got := constraintsMatch([][]string{c.c}, &o, c.running); got != c.want {
			t.Errorf("%v with %d running: got %v, want %v", c.c, len(c.running), got, c.want)
		}
	}
}

func TestUnreachableTaskIsRetriedElsewhere(t *testing.T) {
	e := newEnv(t)
	e.f.cfg.UnreachableAfter = time.Minute
	e.f.cfg.FailureRetry = time.Second
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"u","command":"true","schedule":"R1//PT1H","retries":1}`, 204)
	e.settle()
	ids := e.allocate()
	ent, _ := e.store.Get(sched.TableTasks, ids[0])
	tr := *ent.Value.(*sched.TaskRecord)
	tr.Task.State, tr.UpdatedAt = api.TaskUnreachable, e.clk.Now().Format(time.RFC3339Nano)
	if _, err := e.store.Apply(e.ctx(), []sched.Op{sched.Put(sched.TableTasks, ids[0], &tr)}); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(59 * time.Second)
	e.settle()
	if s := e.states("u"); s != "running" {
		t.Fatalf("gave up on an unreachable task early: %s", s)
	}
	e.clk.Add(2 * time.Second)
	e.settle()
	if r := e.runs("u")[0]; r.State != RunRetrying || r.Attempt != 2 {
		t.Fatalf("%+v", r)
	}
	if tr, _ := e.task(ids[0]); tr.Goal != api.GoalKill {
		t.Fatal("the unreachable task is not told to stop")
	}
	e.clk.Add(time.Second)
	e.settle()
	if got := e.allocate(offer("a2")); len(got) != 1 || got[0] != "ct.u.1.2" {
		t.Fatalf("retry launched %v", got)
	}
}

func TestDisableAfterFailuresSparesSoftErrorJobs(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
	cfg := testConfig(clk)
	cfg.DisableAfterFailures = 2
	e := newEnvOn(t, openStore(t), clk, cfg)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"hard","command":"false","schedule":"R//PT1M","retries":0}`, 204)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"soft","command":"false","schedule":"R//PT1M","retries":0,"softError":true}`, 204)
	for i := 0; i < 2; i++ {
		e.settle()
		for _, id := range e.allocate() {
			e.setTask(id, api.TaskFailed)
		}
		e.settle()
		e.clk.Add(time.Minute)
	}
	if j := e.job("hard"); !j.Disabled || j.ErrorsSinceLastSuccess != 2 {
		t.Fatalf("hard %+v", j)
	}
	if j := e.job("soft"); j.Disabled || j.ErrorsSinceLastSuccess != 2 {
		t.Fatalf("soft %+v", j)
	}
	// A success resets errorsSinceLastSuccess.
	e.mustDo("PUT", "/v1/scheduler/job/success/soft", "", 200)
	if j := e.job("soft"); j.ErrorsSinceLastSuccess != 0 || j.SuccessCount != 1 {
		t.Fatalf("soft after success %+v", j)
	}
}

func TestLostAttemptsDoNotUseUpRetries(t *testing.T) {
	e := newEnv(t)
	e.mustDo("POST", "/v1/scheduler/iso8601", `{"name":"l","command":"true","schedule":"R1//PT1H","retries":0}`, 204)
	e.settle()
	ids := e.allocate()
	e.setTask(ids[0], api.TaskLost) // the agent restarted and lost it
	e.settle()
	r := e.runs("l")[0]
	if r.State != RunRetrying || r.Lost != 1 {
		t.Fatalf("%+v", r)
	}
	got := e.allocate() // at once: no retry delay for a lost attempt
	if len(got) != 1 || got[0] != "ct.l.1.2" {
		t.Fatalf("relaunch %v", got)
	}
	e.setTask(got[0], api.TaskFailed) // a real failure: retries is 0
	e.settle()
	if r := e.runs("l")[0]; r.State != RunFailed {
		t.Fatalf("%+v", r)
	}
	if j := e.job("l"); j.ErrorCount != 1 {
		t.Fatalf("%+v", j)
	}
}
