package sched

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// TestAssignmentDeltasApplyToList makes 10,000 random task writes on a
// real master (tasks created, changed, killed, moved between three
// agents, deleted, several to a command), follows each agent's
// assignments with the delta query over HTTP into an api.AssignmentMirror,
// and checks that the mirror equals the agent's whole list at the same
// index. The tracker keeps few removals here, so an agent that lags far
// behind must get its whole list again.
func TestAssignmentDeltasApplyToList(t *testing.T) {
	old := maxRemovals
	maxRemovals = 20
	t.Cleanup(func() { maxRemovals = old })

	agents := []string{"n1", "n2", "n3"}
	members := NewStaticMembers(agentNode("n1", 4, 4096), agentNode("n2", 4, 4096), agentNode("n3", 4, 4096))
	tm := startMaster(t, members)
	ctx := context.Background()
	eventually(t, 5*time.Second, "the first write", func() bool { return tm.Store().Index() > 0 })

	rng := rand.New(rand.NewPCG(19, 7))
	randomOp := func() Op {
		id := fmt.Sprintf("app%d.t%d", rng.IntN(10), rng.IntN(150))
		if rng.IntN(5) == 0 {
			return Delete(TableTasks, id)
		}
		states := []string{api.TaskStaging, api.TaskRunning, api.TaskKilled, api.TaskFailed, api.TaskUnreachable}
		goals := []string{api.GoalRun, api.GoalRun, api.GoalKill}
		cmd := fmt.Sprintf("sleep %d", rng.IntN(1000))
		return Put(TableTasks, id, &TaskRecord{
			Task: api.Task{ID: id, AppID: "/app", SlaveID: agents[rng.IntN(len(agents))], Host: "127.0.0.1",
				State: states[rng.IntN(len(states))], Ports: []int{31000 + rng.IntN(100)}},
			Spec: api.TaskSpec{Cmd: &cmd, Resources: api.Resources{Cpus: 0.01, Mem: 1}},
			Goal: goals[rng.IntN(len(goals))],
		})
	}

	mirrors := map[string]*api.AssignmentMirror{}
	for _, a := range agents {
		mirrors[a] = &api.AssignmentMirror{}
	}
	var snapshots, deltas, deltaBytes, wholeBytes int
	follow := func(agent string) {
		t.Helper()
		eventually(t, 5*time.Second, "the tracker follows the store", func() bool {
			idx := tm.tracker.update(tm.Store())
			return idx == tm.Store().Index()
		})
		mirror := mirrors[agent]
		as, n := assignmentsOverHTTP(t, tm, agent, mirror.Index(), true)
		if as.Delta {
			deltas++
			deltaBytes += n
		} else {
			snapshots++
		}
		mirror.Apply(as)
		whole, n := assignmentsOverHTTP(t, tm, agent, 0, false)
		wholeBytes += n
		if whole.Delta || whole.Removed != nil {
			t.Fatalf("a whole list marked as a delta: %+v", whole)
		}
		tm.tracker.mu.Lock()
		hadTask := tm.tracker.last[agent] > 0
		tm.tracker.mu.Unlock()
		// (An agent that never had a task is answered at the index the
		// master has applied, whatever the query.)
		if whole.Index != mirror.Index() && hadTask {
			t.Fatalf("%s: the delta answer is at index %d, the whole list at %d", agent, mirror.Index(), whole.Index)
		}
		got, _ := json.Marshal(mirror.Assignments().Tasks)
		want, _ := json.Marshal(whole.Tasks)
		if string(got) != string(want) {
			t.Fatalf("%s at index %d: the mirror differs from the whole list:\nmirror %.800s\nwhole  %.800s", agent, mirror.Index(), got, want)
		}
	}
	for _, a := range agents {
		follow(a)
	}
	changes := 0
	for changes < 10000 {
		n := 1 + rng.IntN(6)
		ops := make([]Op, 0, n)
		seen := map[string]bool{}
		for len(ops) < n {
			op := randomOp()
			if !seen[op.Key] {
				seen[op.Key] = true
				ops = append(ops, op)
			}
		}
		if _, err := tm.Store().Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		changes += n
		// n3 lags behind for long stretches (more removals than are kept);
		// the others follow closely.
		for _, a := range agents {
			lagging := a == "n3" && (changes/500)%3 != 2
			if !lagging && rng.IntN(4) == 0 {
				follow(a)
			}
		}
	}
	for _, a := range agents {
		follow(a)
	}
	if snapshots < 5 || deltas < 1000 {
		t.Fatalf("want snapshots again (a lagging agent) and many deltas: %d snapshots, %d deltas", snapshots, deltas)
	}
	total := 0
	for _, a := range agents {
		total += len(mirrors[a].Assignments().Tasks)
	}
	if total == 0 {
		t.Fatal("the mirrors ended empty")
	}
	t.Logf("%d changes: %d snapshots, %d deltas (%d B on average), whole lists %d B on average", changes, snapshots, deltas, deltaBytes/max(deltas, 1), wholeBytes/(snapshots+deltas))

	// A delta query blocks while nothing changes, and wakes for its own
	// agent's change, with only that task.
	after := mirrors["n1"].Index()
	done := make(chan *api.Assignments, 1)
	go func() {
		as, err := tm.client.AssignmentChanges(ctx, "n1", after, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- as
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := tm.Store().Apply(ctx, []Op{Put(TableTasks, "other.1", &TaskRecord{Task: api.Task{ID: "other.1", SlaveID: "n2", State: api.TaskRunning}, Goal: api.GoalRun})}); err != nil {
		t.Fatal(err)
	}
	select {
	case as := <-done:
		t.Fatalf("n1's delta query returned for n2's task: %+v", as)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := tm.Store().Apply(ctx, []Op{Put(TableTasks, "mine.1", &TaskRecord{Task: api.Task{ID: "mine.1", SlaveID: "n1", State: api.TaskStaging}, Goal: api.GoalRun})}); err != nil {
		t.Fatal(err)
	}
	select {
	case as := <-done:
		if !as.Delta || len(as.Tasks) != 1 || as.Tasks[0].Task.ID != "mine.1" || len(as.Removed) != 0 {
			t.Fatalf("n1's delta after one new task: %+v", as)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("n1's delta query did not wake for its new task")
	}
}

// assignmentsOverHTTP asks for agent's assignments without waiting and
// returns the answer with its size on the wire.
func assignmentsOverHTTP(t *testing.T, tm *testMaster, agent string, after uint64, delta bool) (*api.Assignments, int) {
	t.Helper()
	url := fmt.Sprintf("%s/v1/agents/%s/assignments?index=%d&wait=0s&delta=%v", tm.srv.URL, agent, after, delta)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	var as api.Assignments
	if err := json.Unmarshal(b, &as); err != nil {
		t.Fatalf("GET %s: %v in %.300s", url, err, b)
	}
	return &as, len(b)
}
