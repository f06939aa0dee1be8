package marathon

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// TestChangedPassLeavesNothingForAFullPass drives apps through random
// changes — task failures, kills and replacements, scaling, new and
// deleted apps — reconciling with the pass Run makes after a change (only
// the apps that changed). After each such pass a full pass over every app,
// at the same time, must find nothing left to write and agree on whether
// offers are wanted, and offers must place as many tasks as a full pass
// says are missing.
func TestChangedPassLeavesNothingForAFullPass(t *testing.T) {
	e := newEnv(t)
	e.f.setMaster(e.m)
	ctx := context.Background()
	st := e.m.st
	rng := rand.New(rand.NewSource(11))
	putApp := func(id string, n int) {
		cmd := "sleep 1000"
		app := &api.App{ID: id, Cmd: &cmd, Cpus: 0.01, Mem: 8, Instances: n, Version: "2026-11-22T10:00:00.000Z",
			BackoffSeconds: 1, BackoffFactor: 1.15, MaxLaunchDelaySeconds: 300}
		app.UnreachableStrategy.InactiveAfterSeconds, app.UnreachableStrategy.ExpungeAfterSeconds = 300, 600
		if _, err := st.Apply(ctx, []sched.Op{sched.Put(sched.TableApps, id, app)}); err != nil {
			t.Fatal(err)
		}
	}
	apps := map[string]int{}
	for i := 0; i < 8; i++ {
		id := fmt.Sprintf("/churn/app-%d", i)
		apps[id] = 1 + rng.Intn(4)
		putApp(id, apps[id])
	}
	offers := func() []api.Offer {
		var os []api.Offer
		for i := 0; i < 4; i++ {
			os = append(os, offer(fmt.Sprintf("a%d", i), fmt.Sprintf("h%d", i), 100, 100000, api.PortRange{Begin: 31000 + 1000*i, End: 31999 + 1000*i}))
		}
		return os
	}
	if err := e.f.reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for step := 0; step < 150; step++ {
		// Launch what is missing, then make the tasks run.
		os := offers()
		e.commit(e.f.ResourceOffers(ctx, os), os)
		for _, ent := range st.List(sched.TableTasks) {
			rec := ent.Value.(*sched.TaskRecord)
			switch {
			case rec.Task.State == api.TaskStaging:
				e.setState(rec.Task.ID, api.TaskRunning)
			case rec.Goal == api.GoalKill && !api.Terminal(rec.Task.State):
				e.setState(rec.Task.ID, api.TaskKilled)
			}
		}
		// Something changes.
		switch r := rng.Intn(10); {
		case r < 5: // a running task fails
			var running []string
			for _, ent := range st.List(sched.TableTasks) {
				if rec := ent.Value.(*sched.TaskRecord); rec.Task.State == api.TaskRunning {
					running = append(running, rec.Task.ID)
				}
			}
			if len(running) > 0 {
				e.setState(running[rng.Intn(len(running))], api.TaskFailed)
			}
		case r < 7: // scale
			ids := sortedKeys(apps)
			id := ids[rng.Intn(len(ids))]
			apps[id] = rng.Intn(5)
			putApp(id, apps[id])
		case r < 8: // a new app
			id := fmt.Sprintf("/churn/new-%d", step)
			apps[id] = 1 + rng.Intn(3)
			putApp(id, apps[id])
		case r < 9: // an app goes
			ids := sortedKeys(apps)
			id := ids[rng.Intn(len(ids))]
			delete(apps, id)
			if _, err := st.Apply(ctx, []sched.Op{sched.Delete(sched.TableApps, id)}); err != nil {
				t.Fatal(err)
			}
		default: // nothing
		}
		e.m.advance(120 * time.Millisecond) // a full pass is due every 500ms
		if err := e.f.reconcileChanged(ctx, st); err != nil {
			t.Fatal(err)
		}
		e.f.mu.Lock()
		partial := e.f.recon.lastFull.Before(e.m.Now())
		e.f.mu.Unlock()
		if !partial {
			continue
		}
		checked++
		idx, wants := st.Index(), e.f.Wants()
		if err := e.f.reconcile(ctx, st); err != nil {
			t.Fatal(err)
		}
		if st.Index() != idx {
			t.Fatalf("step %d: a full pass wrote what the pass over the changes left (index %d → %d)", step, idx, st.Index())
		}
		if e.f.Wants() != wants {
			t.Fatalf("step %d: the pass over the changes wants offers: %v, a full pass: %v", step, wants, e.f.Wants())
		}
	}
	if checked < 100 {
		t.Fatalf("only %d of 150 passes looked at the changes alone", checked)
	}
	// Once the launch delays have passed, every app runs its instances.
	e.m.advance(time.Hour)
	if err := e.f.reconcileChanged(ctx, st); err != nil {
		t.Fatal(err)
	}
	os := offers()
	e.commit(e.f.ResourceOffers(ctx, os), os)
	for _, ent := range st.List(sched.TableTasks) {
		if rec := ent.Value.(*sched.TaskRecord); rec.Task.State == api.TaskStaging {
			e.setState(rec.Task.ID, api.TaskRunning)
		}
	}
	for id, n := range apps {
		running := 0
		for _, rec := range e.tasks(id) {
			if rec.Goal == api.GoalRun && rec.Task.State == api.TaskRunning {
				running++
			}
		}
		if running != n {
			t.Errorf("%s runs %d tasks, want %d", id, running, n)
		}
	}
}

// TestChangedPassWithDeployments is TestChangedPassLeavesNothingForAFullPass
// with the changes made through the API, so deployments are under way
// (groups whose apps depend on each other, held back by their deployment's
// order, scaling, new and deleted apps) while tasks fail and start. Once
// the passes over the changes have nothing left to write, a full pass at
// the same time must write nothing either and agree on whether offers are
// wanted; at the end every app runs its instances and no deployment is
// left.
func TestChangedPassWithDeployments(t *testing.T) {
	e := newEnv(t)
	e.f.setMaster(e.m)
	ctx := context.Background()
	st := e.m.st
	rng := rand.New(rand.NewSource(5))
	apps := map[string]int{}
	must := func(r resp) {
		t.Helper()
		if r.Status >= 300 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	offers := func() []api.Offer {
		var os []api.Offer
		for i := 0; i < 4; i++ {
			os = append(os, offer(fmt.Sprintf("a%d", i), fmt.Sprintf("h%d", i), 100, 100000, api.PortRange{Begin: 31000 + 1000*i, End: 31999 + 1000*i}))
		}
		return os
	}
	settle := func(step int) {
		t.Helper()
		for i := 0; ; i++ {
			idx := st.Index()
			if err := e.f.reconcileChanged(ctx, st); err != nil {
				t.Fatal(err)
			}
			if st.Index() == idx {
				return
			}
			if i > 20 {
				t.Fatalf("step %d: the passes over the changes keep writing", step)
			}
		}
	}
	if err := e.f.reconcile(ctx, st); err != nil {
		t.Fatal(err)
	}
	checked, withDeps := 0, 0
	for step := 0; step < 150; step++ {
		os := offers()
		e.commit(e.f.ResourceOffers(ctx, os), os)
		for _, ent := range st.List(sched.TableTasks) {
			rec := ent.Value.(*sched.TaskRecord)
			switch {
			case rec.Task.State == api.TaskStaging && rng.Intn(4) > 0:
				e.setState(rec.Task.ID, api.TaskRunning)
			case rec.Goal == api.GoalKill && !api.Terminal(rec.Task.State) && rng.Intn(4) > 0:
				e.setState(rec.Task.ID, api.TaskKilled)
			}
		}
		switch r := rng.Intn(10); {
		case r < 3: // a running task fails
			var running []string
			for _, ent := range st.List(sched.TableTasks) {
				if rec := ent.Value.(*sched.TaskRecord); rec.Task.State == api.TaskRunning {
					running = append(running, rec.Task.ID)
				}
			}
			if len(running) > 0 {
				e.setState(running[rng.Intn(len(running))], api.TaskFailed)
			}
		case r < 5 && len(apps) > 0: // scale
			ids := sortedKeys(apps)
			id := ids[rng.Intn(len(ids))]
			apps[id] = rng.Intn(4)
			must(e.do("PUT", "/v2/apps"+id+"?force=true", fmt.Sprintf(`{"instances":%d}`, apps[id])))
		case r < 7: // a group of apps, each depending on the one before
			g := fmt.Sprintf("/g%d", step)
			n := 1 + rng.Intn(3)
			var defs []string
			for i := 0; i < n; i++ {
				dep := ""
				if i > 0 {
					dep = fmt.Sprintf(`,"dependencies":["%s/a%d"]`, g, i-1)
				}
				apps[fmt.Sprintf("%s/a%d", g, i)] = 1 + rng.Intn(2)
				defs = append(defs, fmt.Sprintf(`{"id":"a%d","cmd":"sleep 1000","cpus":0.01,"mem":8,"instances":%d,"backoffSeconds":1%s}`, i, apps[fmt.Sprintf("%s/a%d", g, i)], dep))
			}
			must(e.do("POST", "/v2/groups", fmt.Sprintf(`{"id":"%s","apps":[%s]}`, g, strings.Join(defs, ","))))
		case r < 8 && len(apps) > 0: // an app goes
			ids := sortedKeys(apps)
			id := ids[rng.Intn(len(ids))]
			delete(apps, id)
			must(e.do("DELETE", "/v2/apps"+id+"?force=true", ""))
		default: // nothing
		}
		e.m.advance(120 * time.Millisecond) // a full pass is due every 500ms
		if err := e.f.reconcileChanged(ctx, st); err != nil {
			t.Fatal(err)
		}
		e.f.mu.Lock()
		partial := e.f.recon.lastFull.Before(e.m.Now())
		e.f.mu.Unlock()
		if !partial {
			continue
		}
		settle(step)
		checked++
		if len(st.List(sched.TableDeployments)) > 0 {
			withDeps++
		}
		idx, wants := st.Index(), e.f.Wants()
		if err := e.f.reconcile(ctx, st); err != nil {
			t.Fatal(err)
		}
		if st.Index() != idx {
			t.Fatalf("step %d: a full pass wrote what the passes over the changes left (index %d → %d)", step, idx, st.Index())
		}
		if e.f.Wants() != wants {
			t.Fatalf("step %d: the passes over the changes want offers: %v, a full pass: %v", step, wants, e.f.Wants())
		}
	}
	if checked < 100 || withDeps < 30 {
		t.Fatalf("only %d of 150 passes looked at the changes alone, %d with deployments under way", checked, withDeps)
	}
	// Once the launch delays have passed, every app runs its instances and
	// every deployment is done, by passes over the changes alone.
	e.m.advance(time.Hour)
	for round := 0; round < 10; round++ {
		settle(-1)
		os := offers()
		e.commit(e.f.ResourceOffers(ctx, os), os)
		for _, ent := range st.List(sched.TableTasks) {
			rec := ent.Value.(*sched.TaskRecord)
			switch {
			case rec.Task.State == api.TaskStaging:
				e.setState(rec.Task.ID, api.TaskRunning)
			case rec.Goal == api.GoalKill && !api.Terminal(rec.Task.State):
				e.setState(rec.Task.ID, api.TaskKilled)
			}
		}
		e.m.advance(time.Millisecond)
	}
	settle(-1)
	if n := len(st.List(sched.TableDeployments)); n > 0 {
		t.Errorf("%d deployments left", n)
	}
	for id, n := range apps {
		running := 0
		for _, rec := range e.tasks(id) {
			if rec.Goal == api.GoalRun && rec.Task.State == api.TaskRunning {
				running++
			}
		}
		if running != n {
			t.Errorf("%s runs %d tasks, want %d", id, running, n)
		}
	}
}
