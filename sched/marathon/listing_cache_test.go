package marathon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// TestListingFragmentsMatchFreshRendering lists apps through one framework
// (whose per-app renderings survive from listing to listing) and through a
// new framework each time (nothing cached) after every kind of change a
// listing shows, and wants the same bytes.
func TestListingFragmentsMatchFreshRendering(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 4; i++ {
		r := e.do("PUT", fmt.Sprintf("/v2/apps/g/app-%d", i), `{"cmd":"sleep 1000","cpus":0.01,"mem":8,"instances":3,"labels":{"n":"`+fmt.Sprint(i)+`"}}`)
		if r.Status >= 300 {
			t.Fatalf("PUT app-%d: %d %s", i, r.Status, r.Body)
		}
	}
	ctx := context.Background()
	apply := func(ops ...sched.Op) {
		t.Helper()
		if _, err := e.m.st.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	putTask := func(id, appID, state string, mut ...func(*sched.TaskRecord)) {
		rec := &sched.TaskRecord{Goal: api.GoalRun, Task: api.Task{ID: id, AppID: appID, Framework: Name, State: state,
			Host: "h1", SlaveID: "a1", Ports: []int{31000}, StagedAt: "2026-11-22T10:00:00.000Z"}}
		for _, f := range mut {
			f(rec)
		}
		apply(sched.Put(sched.TableTasks, id, rec))
	}
	for i := 0; i < 4; i++ {
		for j := 0; j < 3; j++ {
			putTask(fmt.Sprintf("g_app-%d.t%d", i, j), fmt.Sprintf("/g/app-%d", i), api.TaskRunning)
		}
	}
	queries := []string{"", "?embed=apps.tasks", "?embed=app.tasks&embed=apps.lastTaskFailure", "?embed=apps.lastTaskFailure", "?embed=apps.tasks&label=n==1"}
	sawTasks := false
	check := func(state string) {
		t.Helper()
		for _, q := range queries {
			w := httptest.NewRecorder()
			e.f.Handler(e.m).ServeHTTP(w, httptest.NewRequest("GET", "/v2/apps"+q, nil))
			fresh := New(e.f.cfg)
			wf := httptest.NewRecorder()
			fresh.Handler(e.m).ServeHTTP(wf, httptest.NewRequest("GET", "/v2/apps"+q, nil))
			if w.Code != 200 || wf.Code != 200 {
				t.Fatalf("%s, GET /v2/apps%s: %d / %d", state, q, w.Code, wf.Code)
			}
			if !bytes.Equal(w.Body.Bytes(), wf.Body.Bytes()) {
				t.Fatalf("%s, GET /v2/apps%s: cached rendering\n%s\ndiffers from a fresh one\n%s", state, q, w.Body.Bytes(), wf.Body.Bytes())
			}
			var out struct{ Apps []api.AppInfo }
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("%s: %v", state, err)
			}
			for _, a := range out.Apps {
				sawTasks = sawTasks || len(a.Tasks) > 0
			}
		}
	}
	check("initial")
	// One task fails (terminal: it leaves the list and the counts).
	putTask("g_app-1.t0", "/g/app-1", api.TaskFailed)
	check("after a task failed")
	// A task turns unhealthy, another is added, one is deleted.
	f := false
	putTask("g_app-2.t1", "/g/app-2", api.TaskRunning, func(r *sched.TaskRecord) {
		r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: f, TaskID: "g_app-2.t1"}}
	})
	putTask("g_app-2.t9", "/g/app-2", api.TaskStaging)
	apply(sched.Delete(sched.TableTasks, "g_app-3.t2"))
	check("after tasks changed, were added and deleted")
	// The app definition changes.
	if r := e.do("PUT", "/v2/apps/g/app-0?force=true", `{"cmd":"sleep 2000","cpus":0.01,"mem":8,"instances":3}`); r.Status >= 300 {
		t.Fatalf("PUT app-0: %d %s", r.Status, r.Body)
	}
	check("after an app changed")
	// Deployments come and go.
	apply(sched.Put(sched.TableDeployments, "d-x", &api.Deployment{ID: "d-x", Version: "2026-11-22T11:00:00.000Z", AffectedApps: []string{"/g/app-3"}}))
	check("with a deployment")
	apply(sched.Delete(sched.TableDeployments, "d-x"))
	for _, de := range readView(e.m.st).deployments {
		apply(sched.Delete(sched.TableDeployments, de.d.ID))
	}
	check("after the deployments ended")
	// A last failure is recorded (it is not part of the kept rendering).
	putTask("g_app-3.t0", "/g/app-3", api.TaskFailed)
	e.reconcile()
	check("after reconcile")
	// An app is deleted.
	apply(sched.Delete(sched.TableApps, "/g/app-2"))
	check("after an app was deleted")
	if !sawTasks {
		t.Fatal("no listing embedded tasks: the test compares nothing")
	}
}
