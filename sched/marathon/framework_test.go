package marathon

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func TestFrameworkLifecycle(t *testing.T) {
	e := newEnv(t)
	if r := e.do("PUT", "/v2/apps/ssk2/whereisbot", `{"cmd":"sleep 1000","cpus":0.5,"mem":64,"instances":2,
		"portDefinitions":[{"port":0,"name":"http"},{"port":0}],"labels":{"team.name":"bots"},"env":{"X":"y"}}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	if !e.f.Wants() {
		t.Fatal("an app missing instances must want offers")
	}
	offers := []api.Offer{offer("a1", "h1", 1, 1024), offer("a2", "h2", 1, 1024)}
	res := e.f.ResourceOffers(context.Background(), offers)
	if len(res.Launches) != 2 || res.Launches[0].OfferID == res.Launches[1].OfferID {
		t.Fatalf("want 2 launches spread over both agents, got %+v", res.Launches)
	}
	l := res.Launches[0].Task
	if !strings.HasPrefix(l.Task.ID, "ssk2_whereisbot.") || len(l.Task.ID) != len("ssk2_whereisbot.")+36 {
		t.Fatalf("task id %q", l.Task.ID)
	}
	env := l.Spec.Env
	want := map[string]string{
		"PORT0": "31000", "PORT1": "31001", "PORT": "31000", "PORTS": "31000,31001", "PORT_HTTP": "31000",
		"MARATHON_APP_ID": "/ssk2/whereisbot", "MARATHON_APP_RESOURCE_CPUS": "0.5", "MARATHON_APP_RESOURCE_MEM": "64.0",
		"MARATHON_APP_LABELS": "TEAM_NAME", "MARATHON_APP_LABEL_TEAM_NAME": "bots", "MESOS_TASK_ID": l.Task.ID, "X": "y",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["MARATHON_APP_DOCKER_IMAGE"]; ok {
		t.Error("MARATHON_APP_DOCKER_IMAGE is set only for docker apps")
	}
	if l.Spec.Cmd == nil || *l.Spec.Cmd != "sleep 1000" || l.Spec.Resources.Cpus != 0.5 || len(l.Task.ServicePorts) != 2 {
		t.Fatalf("spec %+v task %+v", l.Spec, l.Task)
	}
	recs := e.commit(res, offers)
	e.reconcile()
	if e.f.Wants() {
		t.Fatal("all instances launched: must not want offers")
	}
	// Deployment waits for RUNNING.
	if d := e.m.st.List(sched.TableDeployments); len(d) != 1 {
		t.Fatalf("deployments: %d", len(d))
	}
	for _, r := range recs {
		e.setState(r.Task.ID, api.TaskRunning)
	}
	e.reconcile()
	if d := e.m.st.List(sched.TableDeployments); len(d) != 0 {
		t.Fatalf("deployment must finish when all tasks run: %d left", len(d))
	}

	// A task fails: it is expunged, lastTaskFailure recorded, relaunch delayed 1 s.
	e.setState(recs[0].Task.ID, api.TaskFailed, func(r *sched.TaskRecord) { r.Task.Message = "exit 1" })
	e.reconcile()
	if len(e.tasks("/ssk2/whereisbot")) != 1 {
		t.Fatal("the failed task must be expunged")
	}
	if lf := lastFailure(e.m.st, "/ssk2/whereisbot"); lf == nil || lf.State != api.TaskFailed || lf.TaskID != recs[0].Task.ID {
		t.Fatalf("lastTaskFailure %+v", lf)
	}
	if e.f.Wants() {
		t.Fatal("delayed by backoff: must not want offers yet")
	}
	q := e.f.queueItems(e.m, false)
	if len(q) != 1 || q[0].Count != 1 || q[0].Delay.TimeLeftSeconds != 1 || q[0].Delay.Overdue {
		t.Fatalf("queue during backoff: %+v", q)
	}
	if res := e.f.ResourceOffers(context.Background(), offers); len(res.Launches) != 0 {
		t.Fatal("no launch during the backoff")
	}
	e.m.advance(1100 * time.Millisecond)
	e.reconcile()
	if !e.f.Wants() {
		t.Fatal("backoff over: must want offers")
	}
	res = e.f.ResourceOffers(context.Background(), offers)
	if len(res.Launches) != 1 {
		t.Fatalf("relaunch: %+v", res.Launches)
	}
	r2 := e.commit(res, offers)
	e.setState(r2[0].Task.ID, api.TaskRunning)
	// Second failure: delay grows by the factor.
	e.setState(r2[0].Task.ID, api.TaskFailed)
	e.reconcile()
	if left := e.f.delayLeft(e.m.st.List(sched.TableApps)[0].Value.(*api.App), e.m.Now()); left != 1150*time.Millisecond {
		t.Fatalf("second delay %v, want 1.15s", left)
	}
	// DELETE /v2/queue/{id}/delay resets it.
	if r := e.do("DELETE", "/v2/queue/ssk2/whereisbot/delay", ""); r.Status != 204 {
		t.Fatalf("reset delay: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	if !e.f.Wants() {
		t.Fatal("delay reset: must want offers")
	}
	res = e.f.ResourceOffers(context.Background(), offers)
	r3 := e.commit(res, offers)
	e.setState(r3[0].Task.ID, api.TaskRunning)

	// The plain-text task list of haproxy-marathon-bridge.
	req, _ := http.NewRequest("GET", e.ts.URL+"/v2/tasks", nil)
	req.Header.Set("Accept", "text/plain")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(b), "ssk2_whereisbot\t10000\th") || strings.Count(string(b), "\n") != 2 {
			t.Fatalf("text/plain tasks: %q", b)
		}
	}

	// Scale to 1: the youngest is killed.
	if r := e.do("PUT", "/v2/apps/ssk2/whereisbot", `{"instances":1}`); r.Status != 200 {
		t.Fatalf("scale: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	ts := e.tasks("/ssk2/whereisbot")
	for _, r := range ts {
		wantGoal := api.GoalRun
		if r.Task.ID == r3[0].Task.ID {
			wantGoal = api.GoalKill
		}
		if r.Goal != wantGoal {
			t.Fatalf("task %s goal %s, want %s", r.Task.ID, r.Goal, wantGoal)
		}
	}
	// The agent reports it killed: expunged, no relaunch, no backoff.
	e.setState(r3[0].Task.ID, api.TaskKilled)
	e.reconcile()
	if n := len(e.tasks("/ssk2/whereisbot")); n != 1 || e.f.Wants() {
		t.Fatalf("after scale down: %d tasks, wants %v", n, e.f.Wants())
	}
	if len(e.m.st.List(sched.TableDeployments)) != 0 {
		t.Fatal("the scale deployment must finish")
	}

	// Restart: new tasks first (1.0/1.0), old killed once they run.
	r := e.do("POST", "/v2/apps/ssk2/whereisbot/restart", "")
	if r.Status != 200 {
		t.Fatalf("restart: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	res = e.f.ResourceOffers(context.Background(), offers)
	if len(res.Launches) != 1 {
		t.Fatalf("restart launches %d", len(res.Launches))
	}
	rn := e.commit(res, offers)
	e.reconcile()
	if goalCount(e.tasks("/ssk2/whereisbot"), api.GoalKill) != 0 {
		t.Fatal("the old task must live until the new one runs")
	}
	e.setState(rn[0].Task.ID, api.TaskRunning)
	e.reconcile()
	ts = e.tasks("/ssk2/whereisbot")
	if goalCount(ts, api.GoalKill) != 1 {
		t.Fatalf("old task must be killed once the new one runs: %+v", ts)
	}
	for _, r := range ts {
		if r.Goal == api.GoalKill {
			e.setState(r.Task.ID, api.TaskKilled)
		}
	}
	e.reconcile()
	if len(e.m.st.List(sched.TableDeployments)) != 0 {
		t.Fatal("restart deployment must finish")
	}

	// Delete: tasks killed, app gone, deployment finishes when they end.
	if r := e.do("DELETE", "/v2/apps/ssk2/whereisbot", ""); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	ts = e.tasks("/ssk2/whereisbot")
	if len(ts) != 1 || ts[0].Goal != api.GoalKill {
		t.Fatalf("delete must kill: %+v", ts)
	}
	e.setState(ts[0].Task.ID, api.TaskKilled)
	e.reconcile()
	if len(e.tasks("/ssk2/whereisbot")) != 0 || len(e.m.st.List(sched.TableDeployments)) != 0 {
		t.Fatal("delete must finish")
	}
}

func TestQueueReasonsWhenNothingFits(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/big", `{"cmd":"x","cpus":4,"mem":64}`)
	e.do("PUT", "/v2/apps/fat", `{"cmd":"x","cpus":0.1,"mem":100000}`)
	e.do("PUT", "/v2/apps/pub", `{"cmd":"x","cpus":0.1,"mem":10,"acceptedResourceRoles":["slave_public"]}`)
	e.do("PUT", "/v2/apps/dock", `{"container":{"type":"DOCKER","docker":{"image":"nginx"}},"cpus":0.1,"mem":10,"portDefinitions":[]}`)
	e.do("PUT", "/v2/apps/pinned", `{"cmd":"x","cpus":0.1,"mem":10,"constraints":[["hostname","IS","elsewhere"]]}`)
	e.do("PUT", "/v2/apps/port", `{"cmd":"x","cpus":0.1,"mem":10,"requirePorts":true,"portDefinitions":[{"port":12345}]}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	res := e.f.ResourceOffers(context.Background(), offers)
	if len(res.Launches) != 0 || len(res.Declines) != 1 {
		t.Fatalf("nothing fits: %+v", res)
	}
	if got := strings.Join(res.Declines[0].Reasons, ","); got != "InsufficientCpus,InsufficientMemory,InsufficientPorts,NoCapability,UnfulfilledConstraint,UnfulfilledRole" {
		t.Fatalf("decline reasons %s", got)
	}
	r := e.do("GET", "/v2/queue", "")
	var q struct{ Queue []api.QueueItem }
	r.json(t, &q)
	want := map[string]string{"/big": "InsufficientCpus", "/fat": "InsufficientMemory", "/pub": "UnfulfilledRole",
		"/dock": "NoCapability", "/pinned": "UnfulfilledConstraint", "/port": "InsufficientPorts"}
	if len(q.Queue) != len(want) {
		t.Fatalf("queue: %s", r.Body)
	}
	for _, it := range q.Queue {
		if it.Count != 1 || it.ProcessedOffersSummary == nil || it.ProcessedOffersSummary.ProcessedOffersCount != 1 {
			t.Fatalf("%s: %+v", it.App.ID, it)
		}
		for _, d := range it.ProcessedOffersSummary.RejectSummaryLastOffers {
			wantN := 0
			if d.Reason == want[it.App.ID] {
				wantN = 1
			}
			if d.Declined != wantN {
				t.Errorf("%s: %s declined %d, want %d", it.App.ID, d.Reason, d.Declined, wantN)
			}
		}
	}
	// A docker-capable public agent takes dock and pub.
	o := offer("a2", "h2", 1, 1024)
	o.Role = "slave_public"
	o.Capabilities = []string{"docker"}
	res = e.f.ResourceOffers(context.Background(), []api.Offer{o})
	got := map[string]bool{}
	for _, l := range res.Launches {
		got[l.Task.Task.AppID] = true
	}
	if !got["/pub"] || got["/dock"] || len(res.Launches) != 1 {
		// dock has no acceptedResourceRoles: only "*" offers.
		t.Fatalf("public offer launches %v", got)
	}
}

func TestUnreachableReplacedAndKilledOnReturn(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/svc", `{"cmd":"x","cpus":0.1,"mem":10,"instances":1}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(recs[0].Task.ID, api.TaskRunning)
	e.reconcile()
	// The master marks it unreachable.
	e.setState(recs[0].Task.ID, api.TaskUnreachable)
	e.m.advance(1500 * time.Millisecond)
	e.reconcile()
	if e.f.Wants() {
		t.Fatal("unreachable for less than inactiveAfterSeconds: no reschedule")
	}
	e.m.advance(time.Second)
	e.reconcile()
	ts := e.tasks("/svc")
	if len(ts) != 1 || ts[0].Goal != api.GoalKill || !e.f.Wants() {
		t.Fatalf("past inactiveAfterSeconds: replaced and told to stop: %+v wants %v", ts, e.f.Wants())
	}
	offers2 := []api.Offer{offer("a2", "h2", 1, 1024)}
	res := e.f.ResourceOffers(context.Background(), offers2)
	if len(res.Launches) != 1 {
		t.Fatal("replacement elsewhere")
	}
	e.commit(res, offers2)
	// The agent comes back and reports RUNNING: the goal stays kill.
	e.setState(recs[0].Task.ID, api.TaskRunning)
	e.reconcile()
	ent, _ := e.m.st.Get(sched.TableTasks, recs[0].Task.ID)
	if ent.Value.(*sched.TaskRecord).Goal != api.GoalKill {
		t.Fatal("returned task must be killed")
	}
	if e.f.Wants() {
		t.Fatal("one instance: nothing more to launch")
	}
}

func TestUnhealthyReplacedThenKilled(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/h", `{"cmd":"x","cpus":0.1,"mem":10,"instances":1,
		"healthChecks":[{"protocol":"HTTP","maxConsecutiveFailures":3}]}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	alive := func(ok bool, fails int) func(*sched.TaskRecord) {
		return func(r *sched.TaskRecord) {
			r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: ok, ConsecutiveFailures: fails}}
		}
	}
	e.setState(recs[0].Task.ID, api.TaskRunning, alive(true, 0))
	e.reconcile()
	if len(e.m.st.List(sched.TableDeployments)) != 0 {
		t.Fatal("healthy: deployment done")
	}
	e.setState(recs[0].Task.ID, api.TaskRunning, alive(false, 3))
	events, cancel := e.m.st.Subscribe(64)
	defer cancel()
	e.reconcile()
	if goalCount(e.tasks("/h"), api.GoalKill) != 0 || !e.f.Wants() {
		t.Fatal("replace before kill: the unhealthy task lives while a replacement launches")
	}
	rn := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(rn[0].Task.ID, api.TaskRunning, alive(true, 0))
	e.reconcile()
	ent, _ := e.m.st.Get(sched.TableTasks, recs[0].Task.ID)
	if ent.Value.(*sched.TaskRecord).Goal != api.GoalKill {
		t.Fatal("unhealthy task must be killed once its replacement is healthy")
	}
	timeout := time.After(5 * time.Second)
	seenFailed := false
	for {
		select {
		case ev := <-events:
			if ev.Type == api.EventFailedHealthCheck {
				seenFailed = true
			}
			if ev.Type == api.EventUnhealthyKill {
				if !seenFailed {
					t.Fatal("no failed_health_check_event before the kill")
				}
				return
			}
		case <-timeout:
			t.Fatal("no unhealthy_instance_kill_event")
		}
	}
}

func TestRollbackAndForceStop(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/r", `{"cmd":"v1","cpus":0.1,"mem":10,"instances":1}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(recs[0].Task.ID, api.TaskRunning)
	e.reconcile()
	r := e.do("PUT", "/v2/apps/r", `{"cmd":"v2"}`)
	var res api.DeploymentResult
	r.json(t, &res)
	e.reconcile()
	nr := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	var deps []api.Deployment
	e.do("GET", "/v2/deployments", "").json(t, &deps)
	if len(deps) != 1 || deps[0].ID != res.DeploymentID || deps[0].CurrentStep != 1 || deps[0].TotalSteps != 1 ||
		deps[0].CurrentActions[0].Action != ActionRestart || deps[0].CurrentActions[0].App != "/r" {
		t.Fatalf("deployments: %+v", deps)
	}
	// Roll back: v1 again, the v2 task is killed, the v1 task stays.
	r = e.do("DELETE", "/v2/deployments/"+res.DeploymentID, "")
	if r.Status != 200 {
		t.Fatalf("rollback: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	var got struct{ App api.AppInfo }
	e.do("GET", "/v2/apps/r", "").json(t, &got)
	if *got.App.Cmd != "v1" || got.App.Version != recs[0].Task.Version {
		t.Fatalf("rolled back to cmd %q version %s, want v1 at its own version %s", *got.App.Cmd, got.App.Version, recs[0].Task.Version)
	}
	ent, _ := e.m.st.Get(sched.TableTasks, nr[0].Task.ID)
	old, _ := e.m.st.Get(sched.TableTasks, recs[0].Task.ID)
	if ent.Value.(*sched.TaskRecord).Goal != api.GoalKill || old.Value.(*sched.TaskRecord).Goal != api.GoalRun {
		t.Fatal("rollback must kill the new version's task and keep the old one")
	}
	e.setState(nr[0].Task.ID, api.TaskKilled)
	e.reconcile()
	if n := len(e.m.st.List(sched.TableDeployments)); n != 0 {
		t.Fatalf("rollback deployment must finish, %d left", n)
	}
	// Force-stop a deployment: 202 and it is gone.
	e.do("PUT", "/v2/apps/r", `{"instances":5}`)
	e.do("GET", "/v2/deployments", "").json(t, &deps)
	if r = e.do("DELETE", "/v2/deployments/"+deps[0].ID+"?force=true", ""); r.Status != 202 {
		t.Fatalf("force stop: %d %s", r.Status, r.Body)
	}
	if n := len(e.m.st.List(sched.TableDeployments)); n != 0 {
		t.Fatal("force-stopped deployment must be gone")
	}
}

func TestKillTaskEndpoints(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/k", `{"cmd":"x","cpus":0.1,"mem":10,"instances":3}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 4, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	if len(recs) != 3 {
		t.Fatalf("launches %d", len(recs))
	}
	var tl struct{ Tasks []api.Task }
	e.do("GET", "/v2/apps/k/tasks", "").json(t, &tl)
	if len(tl.Tasks) != 3 || tl.Tasks[0].Ports == nil || tl.Tasks[0].HealthCheckResults == nil {
		t.Fatalf("tasks: %+v", tl)
	}
	// Kill one without scale: it is replaced.
	r := e.do("DELETE", "/v2/apps/k/tasks/"+recs[0].Task.ID, "")
	if r.Status != 200 || !strings.Contains(string(r.Body), `"task":{"id":"`+recs[0].Task.ID) {
		t.Fatalf("kill task: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	if !e.f.Wants() {
		t.Fatal("a killed task is replaced")
	}
	// Kill one with scale: instances drop to 2.
	r = e.do("POST", "/v2/tasks/delete?scale=true&force=true", `{"ids":["`+recs[1].Task.ID+`"]}`)
	if r.Status != 200 || r.Header.Get("Marathon-Deployment-Id") == "" {
		t.Fatalf("tasks/delete scale: %d %s", r.Status, r.Body)
	}
	var got struct{ App api.AppInfo }
	e.do("GET", "/v2/apps/k", "").json(t, &got)
	if got.App.Instances != 2 {
		t.Fatalf("instances after scale kill: %d", got.App.Instances)
	}
	e.do("GET", "/v2/tasks?status=staging", "").json(t, &tl)
	if len(tl.Tasks) != 3 {
		t.Fatalf("staging tasks (kill goal set, not yet ended): %d", len(tl.Tasks))
	}
}

func TestBackoffResetsOnNewVersion(t *testing.T) {
	e := newEnv(t)
	e.do("PUT", "/v2/apps/b", `{"cmd":"false","cpus":0.1,"mem":10}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(recs[0].Task.ID, api.TaskFinished)
	e.reconcile()
	if e.f.Wants() {
		t.Fatal("FINISHED grows the backoff")
	}
	if r := e.do("PUT", "/v2/apps/b?force=true", `{"cmd":"true"}`); r.Status != 200 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	if !e.f.Wants() {
		t.Fatal("a new version resets the backoff")
	}
}

func TestHealthKillRateLimitAndTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HealthKillBurst = 2
	cfg.HealthKillEvery = 10 * time.Second
	b := New(cfg).bucket
	take := func(now time.Time) bool { return b.take(now, cfg.HealthKillEvery, cfg.HealthKillBurst) }
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, want := range []bool{true, true, false} {
		if take(now) != want {
			t.Fatalf("take %d: %v; want a burst of 2, then none", i+1, !want)
		}
	}
	if take(now.Add(5*time.Second)) || !take(now.Add(10*time.Second)) {
		t.Fatal("one more token every 10 s")
	}

	// No room for a replacement: the unhealthy task is killed after
	// ReplaceTimeout anyway.
	e := newEnv(t)
	e.do("PUT", "/v2/apps/h", `{"cmd":"x","cpus":1,"mem":10,"instances":1,"healthChecks":[{"protocol":"TCP"}]}`)
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(recs[0].Task.ID, api.TaskRunning, func(r *sched.TaskRecord) {
		r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: false, ConsecutiveFailures: 3}}
	})
	e.reconcile()
	if goalCount(e.tasks("/h"), api.GoalKill) != 0 {
		t.Fatal("killed before a replacement had its chance")
	}
	e.m.advance(e.f.cfg.ReplaceTimeout + time.Second)
	e.reconcile()
	if goalCount(e.tasks("/h"), api.GoalKill) != 1 {
		t.Fatal("after ReplaceTimeout the unhealthy task must be killed")
	}
}

func TestReadinessGatesDeployment(t *testing.T) {
	e := newEnv(t)
	r := e.do("PUT", "/v2/apps/rd", `{"cmd":"x","cpus":0.1,"mem":10,"portDefinitions":[{"port":0,"name":"http-api"}],
		"readinessChecks":[{"name":"ready","path":"/ready","portName":"http-api"}]}`)
	if r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	e.reconcile()
	offers := []api.Offer{offer("a1", "h1", 1, 1024)}
	recs := e.commit(e.f.ResourceOffers(context.Background(), offers), offers)
	e.setState(recs[0].Task.ID, api.TaskRunning)
	e.reconcile()
	var deps []api.Deployment
	e.do("GET", "/v2/deployments", "").json(t, &deps)
	if len(deps) != 1 || len(deps[0].CurrentActions[0].ReadinessCheckResults) != 1 || deps[0].CurrentActions[0].ReadinessCheckResults[0].Ready {
		t.Fatalf("running but not ready: the deployment waits and says why: %+v", deps)
	}
	ready := true
	e.setState(recs[0].Task.ID, api.TaskRunning, func(r *sched.TaskRecord) { r.Task.Ready = &ready })
	e.reconcile()
	if n := len(e.m.st.List(sched.TableDeployments)); n != 0 {
		t.Fatal("ready: the deployment finishes")
	}
}
