package sched

import (
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestApplyStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	alive := []api.HealthCheckResult{{Alive: true}}
	dead := []api.HealthCheckResult{{Alive: false}}
	rec := func(state string, hs []api.HealthCheckResult) *TaskRecord {
		// Stored results carry the instance id the master filled in (no task id since Marathon 1.4).
		if hs != nil {
			hs = []api.HealthCheckResult{{Alive: hs[0].Alive, InstanceID: "a.1"}}
		}
		return &TaskRecord{Task: api.Task{ID: "a.1", AppID: "/a", State: state, HealthCheckResults: hs}}
	}
	cases := []struct {
		name      string
		old       *TaskRecord
		st        api.TaskStatus
		changed   bool
		state     string
		events    []string
		startedAt bool
	}{
		{"staging to running", rec(api.TaskStaging, nil), api.TaskStatus{State: api.TaskRunning}, true, api.TaskRunning, []string{api.EventStatusUpdate}, true},
		{"same state, nothing new", rec(api.TaskRunning, nil), api.TaskStatus{State: api.TaskRunning}, false, api.TaskRunning, nil, false},
		{"stale starting after running", rec(api.TaskRunning, nil), api.TaskStatus{State: api.TaskStarting}, false, api.TaskRunning, nil, false},
		{"terminal is final", rec(api.TaskFinished, nil), api.TaskStatus{State: api.TaskRunning}, false, api.TaskFinished, nil, false},
		{"unreachable agent back", rec(api.TaskUnreachable, nil), api.TaskStatus{State: api.TaskRunning}, true, api.TaskRunning, []string{api.EventStatusUpdate}, true},
		{"agents cannot report unreachable", rec(api.TaskRunning, nil), api.TaskStatus{State: api.TaskUnreachable}, false, api.TaskRunning, nil, false},
		{"first health result", rec(api.TaskRunning, nil), api.TaskStatus{State: api.TaskRunning, HealthCheckResults: alive}, true, api.TaskRunning, []string{api.EventHealthStatusChanged}, false},
		{"health flips", rec(api.TaskRunning, alive), api.TaskStatus{HealthCheckResults: dead}, true, api.TaskRunning, []string{api.EventHealthStatusChanged}, false},
		{"health unchanged", rec(api.TaskRunning, alive), api.TaskStatus{HealthCheckResults: alive}, false, api.TaskRunning, nil, false},
		{"failure with health and state", rec(api.TaskRunning, alive), api.TaskStatus{State: api.TaskFailed, HealthCheckResults: dead}, true, api.TaskFailed, []string{api.EventStatusUpdate, api.EventHealthStatusChanged}, false},
		{"unknown state leaves the state", rec(api.TaskRunning, nil), api.TaskStatus{State: "TASK_BOGUS", Message: "hm"}, true, api.TaskRunning, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, evs, changed := applyStatus(c.old, c.st, now)
			if changed != c.changed || got.Task.State != c.state {
				t.Fatalf("changed %v state %s, want %v %s", changed, got.Task.State, c.changed, c.state)
			}
			var types []string
			for _, e := range evs {
				types = append(types, e.Type)
			}
			if len(types) != len(c.events) {
				t.Fatalf("events %v, want %v", types, c.events)
			}
			for i := range types {
				if types[i] != c.events[i] {
					t.Fatalf("events %v, want %v", types, c.events)
				}
			}
			if (got.Task.StartedAt != "") != c.startedAt {
				t.Fatalf("startedAt %q", got.Task.StartedAt)
			}
			if changed && (c.old.Task.HealthCheckResults != nil && got.Task.HealthCheckResults != nil && &c.old.Task.HealthCheckResults[0] == &got.Task.HealthCheckResults[0]) {
				t.Fatal("applyStatus shares or mutates the stored record")
			}
		})
	}
}

func TestPlanStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	store := map[string]*TaskRecord{
		"mine":   {Task: api.Task{ID: "mine", SlaveID: "n1", State: api.TaskStaging}},
		"theirs": {Task: api.Task{ID: "theirs", SlaveID: "n2", State: api.TaskRunning}},
	}
	get := func(id string) (*TaskRecord, uint64, bool) { r, ok := store[id]; return r, 7, ok }
	p := planStatus("n1", []api.TaskStatus{
		{TaskID: "mine", State: api.TaskStarting},
		{TaskID: "mine", State: api.TaskRunning},
		{TaskID: "ghost", State: api.TaskRunning},
		{TaskID: "ghost", State: api.TaskFailed},
	}, get, now)
	if len(p.Ops) != 2 || p.Ops[0].Kind != OpCheck || p.Ops[0].Index != 7 || p.Ops[1].Value.(*TaskRecord).Task.State != api.TaskRunning {
		t.Fatalf("ops %+v", p.Ops)
	}
	if len(p.Events) != 2 || len(p.Unknown) != 1 || p.Unknown[0] != "ghost" || len(p.Foreign) != 0 {
		t.Fatalf("plan %+v", p)
	}
	if store["mine"].Task.State != api.TaskStaging {
		t.Fatal("planStatus mutated the stored record")
	}
	p = planStatus("n1", []api.TaskStatus{{TaskID: "theirs", State: api.TaskFailed}}, get, now)
	if len(p.Foreign) != 1 || len(p.Ops) != 0 {
		t.Fatalf("foreign plan %+v", p)
	}
}

func TestLostAgents(t *testing.T) {
	nodes := []api.Node{
		{ID: "alive", Status: NodeAlive}, {ID: "sus", Status: NodeSuspect},
		{ID: "dead", Status: NodeFailed}, {ID: "gone", Status: NodeLeft},
		{ID: "back", Status: NodeFailed}, {ID: "back", Status: NodeAlive}, // rejoined under a new member name
		{ID: "bye", Status: "leaving"},
	}
	tasks := []Entry{
		{Key: "x", Value: &TaskRecord{Task: api.Task{SlaveID: "vanished", State: api.TaskRunning}}},
		{Key: "y", Value: &TaskRecord{Task: api.Task{SlaveID: "ended", State: api.TaskFinished}}},
	}
	cases := []struct {
		absent bool
		want   []string
	}{
		{false, []string{"dead", "gone"}},
		{true, []string{"dead", "gone", "vanished"}},
	}
	for _, c := range cases {
		got := lostAgents(nodes, tasks, c.absent)
		if len(got) != len(c.want) {
			t.Fatalf("absent=%v: lost %v, want %v", c.absent, got, c.want)
		}
		for _, id := range c.want {
			if !got[id] {
				t.Fatalf("absent=%v: lost %v, want %v", c.absent, got, c.want)
			}
		}
	}
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	all := []Entry{
		{Key: "a", ModifyIndex: 4, Value: &TaskRecord{Task: api.Task{ID: "a", SlaveID: "dead", State: api.TaskRunning}}},
		{Key: "b", ModifyIndex: 5, Value: &TaskRecord{Task: api.Task{ID: "b", SlaveID: "dead", State: api.TaskUnreachable}}},
		{Key: "c", ModifyIndex: 6, Value: &TaskRecord{Task: api.Task{ID: "c", SlaveID: "dead", State: api.TaskKilled}}},
		{Key: "d", ModifyIndex: 7, Value: &TaskRecord{Task: api.Task{ID: "d", SlaveID: "alive", State: api.TaskRunning}}},
	}
	ops, evs := planUnreachable(map[string]bool{"dead": true}, all, now)
	if len(ops) != 2 || ops[0].Key != "a" || ops[0].Index != 4 || ops[1].Value.(*TaskRecord).Task.State != api.TaskUnreachable || len(evs) != 1 {
		t.Fatalf("ops %+v events %d", ops, len(evs))
	}
	if all[0].Value.(*TaskRecord).Task.State != api.TaskRunning {
		t.Fatal("planUnreachable mutated the stored record")
	}
}
