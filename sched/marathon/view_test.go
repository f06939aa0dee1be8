package marathon

import (
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// fullView builds a view of st from nothing, leaving the builder as it was.
func fullView(st *sched.Store) *view {
	builder.Lock()
	defer builder.Unlock()
	sst, sbase, skeys := builder.st, builder.base, builder.keys
	builder.st, builder.base = nil, nil
	v := buildView(st)
	builder.st, builder.base, builder.keys = sst, sbase, skeys
	return v
}

// TestViewFromPreviousMatchesFullRead writes, rewrites, moves and deletes
// tasks (marathon's and another framework's, one at a time and in
// batches) and apps, and wants every view built from the one before to
// list exactly what a view read from nothing lists.
func TestViewFromPreviousMatchesFullRead(t *testing.T) {
	m := newFakeMaster(t)
	st := m.st
	rng := rand.New(rand.NewSource(7))
	ctx := context.Background()
	var live []string
	n := 0
	newTask := func() sched.Op {
		n++
		id := fmt.Sprintf("t%04d", n)
		live = append(live, id)
		fw := Name
		if rng.Intn(5) == 0 {
			fw = "chronos"
		}
		return sched.Put(sched.TableTasks, id, &sched.TaskRecord{Task: api.Task{ID: id, AppID: fmt.Sprintf("/app-%d", rng.Intn(6)), Framework: fw, State: api.TaskRunning,
			SlaveID: fmt.Sprintf("a%d", rng.Intn(3))}, Spec: api.TaskSpec{Ports: []int{31000 + rng.Intn(8)}}})
	}
	for step := 0; step < 300; step++ {
		var batch []sched.Op
		seen := map[string]bool{} // one op per key and batch
		committed := append([]string(nil), live...)
		pick := func() (string, bool) {
			id := committed[rng.Intn(len(committed))]
			if seen[id] {
				return "", false
			}
			seen[id] = true
			return id, true
		}
		for k := 0; k < 1+rng.Intn(4); k++ {
			if rng.Intn(4) == 0 { // an app created, changed or removed
				id := fmt.Sprintf("/app-%d", rng.Intn(9))
				if seen[id] {
					continue
				}
				seen[id] = true
				if rng.Intn(3) == 0 {
					if _, ok := st.Get(sched.TableApps, id); ok {
						batch = append(batch, sched.Delete(sched.TableApps, id))
					}
					continue
				}
				batch = append(batch, sched.Put(sched.TableApps, id, &api.App{ID: id, Instances: step}))
				continue
			}
			switch r := rng.Intn(10); {
			case r < 4 || len(committed) < 3:
				batch = append(batch, newTask())
			case r < 7: // rewrite, sometimes under another app
				id, ok := pick()
				if !ok {
					continue
				}
				ent, _ := st.Get(sched.TableTasks, id)
				rec := *ent.Value.(*sched.TaskRecord)
				rec.Task.State = api.TaskStaging
				if rng.Intn(4) == 0 {
					rec.Task.State = api.TaskFailed
				}
				if rng.Intn(4) == 0 {
					rec.Task.SlaveID = fmt.Sprintf("a%d", rng.Intn(3))
				}
				if rng.Intn(3) == 0 {
					rec.Task.AppID = fmt.Sprintf("/app-%d", rng.Intn(6))
				}
				batch = append(batch, sched.Put(sched.TableTasks, id, &rec))
			default:
				id, ok := pick()
				if !ok {
					continue
				}
				batch = append(batch, sched.Delete(sched.TableTasks, id))
				for i := range live {
					if live[i] == id {
						live = append(live[:i], live[i+1:]...)
						break
					}
				}
			}
		}
		if _, err := st.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if step%3 == 0 { // sometimes several writes between views
			continue
		}
		got, want := readView(st), fullView(st)
		if got.index != want.index || len(got.tasks) != len(want.tasks) {
			t.Fatalf("step %d: view at %d lists %d apps' tasks, a full read at %d lists %d", step, got.index, len(got.tasks), want.index, len(want.tasks))
		}
		if !reflect.DeepEqual(got.apps, want.apps) || !reflect.DeepEqual(got.appIdx, want.appIdx) || !reflect.DeepEqual(got.appIDs, want.appIDs) {
			t.Fatalf("step %d: apps %v %v in the view, %v %v in a full read", step, got.appIDs, got.appIdx, want.appIDs, want.appIdx)
		}
		if !reflect.DeepEqual(got.ports, want.ports) {
			t.Fatalf("step %d: ports held per agent %v in the view, %v in a full read", step, got.ports, want.ports)
		}
		for app, ws := range want.tasks {
			gs := got.tasks[app]
			if len(gs) != len(ws) {
				t.Fatalf("step %d: %s has %d tasks in the view, %d in a full read", step, app, len(gs), len(ws))
			}
			for i := range ws {
				if gs[i].rec != ws[i].rec || gs[i].idx != ws[i].idx {
					t.Fatalf("step %d: %s task %d is %s@%d in the view, %s@%d in a full read", step, app, i, gs[i].rec.Task.ID, gs[i].idx, ws[i].rec.Task.ID, ws[i].idx)
				}
			}
		}
	}
}
