package sched

import (
	"context"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func task(id, agent, fw, state string, cpus, mem float64, ports ...int) *TaskRecord {
	return &TaskRecord{
		Task: api.Task{ID: id, SlaveID: agent, Framework: fw, State: state},
		Spec: api.TaskSpec{Resources: api.Resources{Cpus: cpus, Mem: mem}, Ports: ports},
	}
}

func TestFreeResources(t *testing.T) {
	total := api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Gpus: 1, Ports: []api.PortRange{{Begin: 31000, End: 31009}}}
	cases := []struct {
		name  string
		tasks []*TaskRecord
		want  api.Resources
	}{
		{"no tasks: everything free", nil, total},
		{"running task uses cpus, mem and its ports",
			[]*TaskRecord{task("a", "n1", "marathon", api.TaskRunning, 1, 512, 31000, 31005)},
			api.Resources{Cpus: 3, Mem: 3584, Disk: 1000, Gpus: 1, Ports: []api.PortRange{{Begin: 31001, End: 31004}, {Begin: 31006, End: 31009}}}},
		{"terminal tasks free their resources",
			[]*TaskRecord{
				task("a", "n1", "marathon", api.TaskFinished, 1, 512, 31000),
				task("b", "n1", "marathon", api.TaskFailed, 1, 512, 31001),
				task("c", "n1", "marathon", api.TaskKilled, 1, 512),
				task("d", "n1", "chronos", api.TaskStaging, 0.5, 100, 31009),
			},
			api.Resources{Cpus: 3.5, Mem: 3996, Disk: 1000, Gpus: 1, Ports: []api.PortRange{{Begin: 31000, End: 31008}}}},
		{"unreachable tasks still hold resources",
			[]*TaskRecord{task("a", "n1", "marathon", api.TaskUnreachable, 2, 1024)},
			api.Resources{Cpus: 2, Mem: 3072, Disk: 1000, Gpus: 1, Ports: total.Ports}},
		{"other agents' tasks do not count",
			[]*TaskRecord{task("a", "n2", "marathon", api.TaskRunning, 2, 1024, 31000)},
			total},
		{"overcommitted agent clamps at zero",
			[]*TaskRecord{task("a", "n1", "marathon", api.TaskRunning, 5, 5000)},
			api.Resources{Cpus: 0, Mem: 0, Disk: 1000, Gpus: 1, Ports: total.Ports}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			byAgent, _ := usageOf(c.tasks)
			got := freeResources(total, byAgent["n1"])
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("free = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestDRFOrder(t *testing.T) {
	total := api.Resources{Cpus: 10, Mem: 1000, Disk: 100}
	cases := []struct {
		name  string
		alloc map[string]api.Resources
		want  []string
	}{
		{"nothing allocated: by name", nil, []string{"chronos", "marathon"}},
		{"marathon holds more cpu share",
			map[string]api.Resources{"marathon": {Cpus: 5, Mem: 100}, "chronos": {Cpus: 1, Mem: 300}},
			[]string{"chronos", "marathon"}},
		{"chronos dominant on memory",
			map[string]api.Resources{"marathon": {Cpus: 5, Mem: 100}, "chronos": {Cpus: 1, Mem: 600}},
			[]string{"marathon", "chronos"}},
		{"disk counts too",
			map[string]api.Resources{"marathon": {Cpus: 1, Disk: 90}, "chronos": {Cpus: 2}},
			[]string{"chronos", "marathon"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := drfOrder([]string{"marathon", "chronos"}, c.alloc, total)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("order = %v, want %v", got, c.want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	n := api.Node{ID: "n1", Attributes: map[string]string{"rack": "r1"}}
	free := api.Resources{Cpus: 2, Mem: 100}
	fp := agentFingerprint(n, free)
	cases := []struct {
		name string
		at   time.Time
		fp   string
		fw   string
		want bool
	}{
		{"within the refusal", now.Add(4 * time.Second), fp, "marathon", true},
		{"other frameworks still get the agent", now.Add(time.Second), fp, "chronos", false},
		{"expired", now.Add(5 * time.Second), fp, "marathon", false},
		{"free resources changed", now.Add(time.Second), agentFingerprint(n, api.Resources{Cpus: 3, Mem: 100}), "marathon", false},
		{"attributes changed", now.Add(time.Second), agentFingerprint(api.Node{ID: "n1", Attributes: map[string]string{"rack": "r2"}}, free), "marathon", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := refusals{}
			r.refuse("marathon", "n1", fp, now.Add(5*time.Second))
			if got := r.refused(c.fw, "n1", c.fp, c.at); got != c.want {
				t.Fatalf("refused = %v, want %v", got, c.want)
			}
		})
	}
	// A refusal voided by a change stays voided when the agent changes back.
	r := refusals{}
	r.refuse("marathon", "n1", fp, now.Add(5*time.Second))
	r.refused("marathon", "n1", "changed", now.Add(time.Second))
	if r.refused("marathon", "n1", fp, now.Add(2*time.Second)) {
		t.Fatal("refusal survived an agent change")
	}
}

func TestAcceptLaunches(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	node := api.Node{ID: "n1", Name: "edge-1", Site: "ams", Address: "192.0.2.1", OverlayIP: "10.47.1.1"}
	mk := func() map[string]*offerState {
		o := api.Offer{ID: "o1", AgentID: "n1", Resources: api.Resources{Cpus: 1, Mem: 256, Ports: []api.PortRange{{Begin: 31000, End: 31001}}}}
		return map[string]*offerState{"o1": {offer: o, node: node, left: o.Resources}}
	}
	launch := func(id, offer string, cpus, mem float64, ports ...int) Launch {
		return Launch{OfferID: offer, Task: TaskRecord{Task: api.Task{ID: id, AppID: "/a"}, Spec: api.TaskSpec{Resources: api.Resources{Cpus: cpus, Mem: mem}, Ports: ports}}}
	}
	cases := []struct {
		name     string
		launches []Launch
		accepted []string
		rejected []string
	}{
		{"two fit", []Launch{launch("t1", "o1", 0.5, 128, 31000), launch("t2", "o1", 0.5, 128, 31001)}, []string{"t1", "t2"}, nil},
		{"third exceeds cpus", []Launch{launch("t1", "o1", 0.5, 10), launch("t2", "o1", 0.5, 10), launch("t3", "o1", 0.1, 10)}, []string{"t1", "t2"}, []string{"t3"}},
		{"mem exceeds", []Launch{launch("t1", "o1", 0.1, 300)}, nil, []string{"t1"}},
		{"port taken twice", []Launch{launch("t1", "o1", 0.1, 10, 31000), launch("t2", "o1", 0.1, 10, 31000)}, []string{"t1"}, []string{"t2"}},
		{"port not offered", []Launch{launch("t1", "o1", 0.1, 10, 8080)}, nil, []string{"t1"}},
		{"unknown offer", []Launch{launch("t1", "o9", 0.1, 10)}, nil, []string{"t1"}},
		{"existing id", []Launch{launch("exists", "o1", 0.1, 10)}, nil, []string{"exists"}},
		{"duplicate id in one answer", []Launch{launch("t1", "o1", 0.1, 10), launch("t1", "o1", 0.1, 10)}, []string{"t1"}, []string{"t1"}},
		{"negative resources", []Launch{launch("t1", "o1", -1, 10)}, nil, []string{"t1"}},
		{"no id", []Launch{launch("", "o1", 0.1, 10)}, nil, []string{""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			acc, rej := acceptLaunches("marathon", mk(), c.launches, func(id string) bool { return id == "exists" }, now)
			var gotA, gotR []string
			for _, a := range acc {
				gotA = append(gotA, a.Task.ID)
			}
			for _, r := range rej {
				gotR = append(gotR, r.TaskID)
			}
			if !reflect.DeepEqual(gotA, c.accepted) || !reflect.DeepEqual(gotR, c.rejected) {
				t.Fatalf("accepted %v rejected %v (%+v), want %v and %v", gotA, gotR, rej, c.accepted, c.rejected)
			}
		})
	}
	acc, _ := acceptLaunches("marathon", mk(), []Launch{launch("t1", "o1", 0.5, 128, 31001)}, func(string) bool { return false }, now)
	got := acc[0]
	want := api.Task{ID: "t1", AppID: "/a", SlaveID: "n1", Host: "10.47.1.1", Site: "ams", Region: "ams",
		StagedAt: "2026-11-22T03:00:00.000Z", State: api.TaskStaging, Framework: "marathon", Ports: []int{31001}}
	if !reflect.DeepEqual(got.Task, want) || got.Goal != api.GoalRun {
		t.Fatalf("filled task = %+v goal %q\nwant %+v", got.Task, got.Goal, want)
	}
}

func TestCutPorts(t *testing.T) {
	rs := []api.PortRange{{Begin: 10, End: 20}, {Begin: 30, End: 30}}
	got := cutPorts(rs, map[int]struct{}{10: {}, 15: {}, 20: {}, 30: {}, 99: {}})
	want := []api.PortRange{{Begin: 11, End: 14}, {Begin: 16, End: 19}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cutPorts = %v, want %v", got, want)
	}
	if got := portsToRanges(map[int]struct{}{5: {}, 6: {}, 7: {}, 9: {}}); !reflect.DeepEqual(got, []api.PortRange{{Begin: 5, End: 7}, {Begin: 9, End: 9}}) {
		t.Fatalf("portsToRanges = %v", got)
	}
}

func TestAgentTracker(t *testing.T) {
	tr := newAgentTracker()
	entry := func(id, agent string, mod uint64) *Entry {
		return &Entry{Key: id, ModifyIndex: mod, Value: &TaskRecord{Task: api.Task{ID: id, SlaveID: agent}}}
	}
	tasks := map[string]*Entry{"a": entry("a", "n1", 3), "b": entry("b", "n2", 4)}
	tr.scan(5, 1, tasks)
	steps := []struct {
		name   string
		index  uint64
		tasks  map[string]*Entry
		agent  string
		after  uint64
		change bool
		at     uint64 // the agent's last change (or the first scan), not the store's index
	}{
		{"first query answers at once", 5, tasks, "n1", 0, true, 5},
		{"query older than the first scan answers at once", 5, tasks, "n1", 4, true, 5},
		{"nothing new for n1", 5, tasks, "n1", 5, false, 0},
		{"n2's task changes: n1 sleeps on", 6, map[string]*Entry{"a": entry("a", "n1", 3), "b": entry("b", "n2", 6)}, "n1", 5, false, 0},
		{"n2 wakes", 6, map[string]*Entry{"a": entry("a", "n1", 3), "b": entry("b", "n2", 6)}, "n2", 5, true, 6},
		{"n1's task deleted wakes n1", 7, map[string]*Entry{"b": entry("b", "n2", 6)}, "n1", 6, true, 7},
		{"an index from another store answers at once", 7, map[string]*Entry{"b": entry("b", "n2", 6)}, "n2", 900, true, 6},
		{"other agents' changes do not raise n2's index", 8, map[string]*Entry{"b": entry("b", "n2", 6), "c": entry("c", "n3", 8)}, "n2", 6, false, 0},
	}
	for i, s := range steps {
		tr.scan(s.index, uint64(i+2), s.tasks)
		changed, ids, at, _ := tr.since(s.agent, s.after)
		if changed != s.change || (changed && at != s.at) {
			t.Fatalf("%s: changed %v at %d ids %v, want %v at %d", s.name, changed, at, ids, s.change, s.at)
		}
	}
	if _, ids, _, _ := tr.since("n1", 0); len(ids) != 0 {
		t.Fatalf("n1 still has tasks %v after the delete", ids)
	}
	if _, ids, _, _ := tr.since("n2", 0); len(ids) != 1 || ids[0] != "b" {
		t.Fatalf("n2 tasks %v", ids)
	}
}

// TestAgentTrackerUsageFollowsWrites writes, moves, ends and deletes tasks
// and wants the tracker's usage, kept from the keys written, to equal a
// sum over every task; also with the running sums summed afresh every few
// steps.
func TestAgentTrackerUsageFollowsWrites(t *testing.T) {
	t.Run("running-sums", agentTrackerUsageFollowsWrites)
	defer func(n int) { sumRefresh = n }(sumRefresh)
	sumRefresh = 5
	t.Run("summed-afresh", agentTrackerUsageFollowsWrites)
}

func agentTrackerUsageFollowsWrites(t *testing.T) {
	s := openTestStore(t, "")
	defer s.Close()
	ctx := context.Background()
	tr := newAgentTracker()
	rng := rand.New(rand.NewSource(3))
	var ids []string
	for step := 0; step < 200; step++ {
		var ops []Op
		done := map[string]bool{}
		committed := append([]string(nil), ids...)
		for k := 0; k < 1+rng.Intn(3); k++ {
			if len(committed) < 5 || rng.Intn(3) == 0 {
				id := fmt.Sprintf("t%d", step*10+k)
				ids = append(ids, id)
				ops = append(ops, Put(TableTasks, id, &TaskRecord{
					Task: api.Task{ID: id, SlaveID: fmt.Sprintf("n%d", rng.Intn(3)), State: api.TaskRunning, Framework: "marathon"},
					Spec: api.TaskSpec{Resources: api.Resources{Cpus: 0.1, Mem: 32}, Ports: []int{31000 + step*10 + k}}}))
				continue
			}
			id := committed[rng.Intn(len(committed))]
			if done[id] {
				continue
			}
			done[id] = true
			switch rng.Intn(3) {
			case 0:
				ops = append(ops, Delete(TableTasks, id))
				for i := range ids {
					if ids[i] == id {
						ids = append(ids[:i], ids[i+1:]...)
						break
					}
				}
			case 1:
				e, _ := s.Get(TableTasks, id)
				rec := *e.Value.(*TaskRecord)
				rec.Task.State = api.TaskFailed
				ops = append(ops, Put(TableTasks, id, &rec))
			default:
				e, _ := s.Get(TableTasks, id)
				rec := *e.Value.(*TaskRecord)
				rec.Task.SlaveID = fmt.Sprintf("n%d", rng.Intn(3))
				ops = append(ops, Put(TableTasks, id, &rec))
			}
		}
		if _, err := s.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		if step%4 == 0 {
			continue
		}
		got, gotFw := tr.usageNow(s)
		var all []*TaskRecord
		for _, e := range s.List(TableTasks) {
			all = append(all, e.Value.(*TaskRecord))
		}
		want, wantFw := usageOf(all)
		if len(got) != len(want) {
			t.Fatalf("step %d: usage of %d agents, want %d", step, len(got), len(want))
		}
		for a, w := range want {
			g := got[a]
			if g == nil || math.Abs(g.res.Cpus-w.res.Cpus) > 1e-9 || math.Abs(g.res.Mem-w.res.Mem) > 1e-9 || !reflect.DeepEqual(g.ports, w.ports) {
				t.Fatalf("step %d: agent %s uses %+v, want %+v", step, a, g, w)
			}
		}
		if math.Abs(gotFw["marathon"].Cpus-wantFw["marathon"].Cpus) > 1e-9 {
			t.Fatalf("step %d: marathon uses %v cpus, want %v", step, gotFw["marathon"].Cpus, wantFw["marathon"].Cpus)
		}
		perAgent := map[string]int{}
		for _, r := range all {
			perAgent[r.Task.SlaveID]++
		}
		for _, a := range []string{"n0", "n1", "n2"} {
			if _, ids, _, _ := tr.since(a, 0); len(ids) != perAgent[a] {
				t.Fatalf("step %d: agent %s is assigned %d tasks, the store holds %d", step, a, len(ids), perAgent[a])
			}
		}
	}
}
