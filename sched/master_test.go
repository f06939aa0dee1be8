package sched

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestLaunchedTasksAreAssignmentsOfTheirAgent(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024), agentNode("n2", 1, 1024))
	fw := &testFramework{name: "tiny", cpus: 0.25, mem: 32, ports: 1}
	fw.add(10) // the two agents hold 8
	tm := startMaster(t, members, fw)
	ctx := context.Background()

	eventually(t, 5*time.Second, "8 tasks placed", func() bool { return len(tasksOf(tm.Store())) == 8 })
	seen := map[string]string{}
	for _, agent := range []string{"n1", "n2"} {
		// The agents' view follows the store (the tracker's scan), a
		// moment later under load.
		var as *api.Assignments
		var err error
		eventually(t, 5*time.Second, agent+" has 4 assignments (1 cpu / 0.25)", func() bool {
			as, err = tm.client.Assignments(ctx, agent, 0, time.Second)
			return err == nil && len(as.Tasks) == 4
		})
		ports := map[int]bool{}
		for _, a := range as.Tasks {
			if a.Task.SlaveID != agent || a.Goal != api.GoalRun || a.Task.State != api.TaskStaging ||
				a.Task.Host != "127.0.0.1" || a.Task.Site != "site-"+agent || a.Task.Framework != "tiny" || a.Task.StagedAt == "" {
				t.Fatalf("assignment of %s: %+v goal %q", agent, a.Task, a.Goal)
			}
			if len(a.Spec.Ports) != 1 || ports[a.Spec.Ports[0]] {
				t.Fatalf("%s: task %s ports %v (duplicate or missing)", agent, a.Task.ID, a.Spec.Ports)
			}
			ports[a.Spec.Ports[0]] = true
			seen[a.Task.ID] = agent
		}
	}
	if len(seen) != 8 {
		t.Fatalf("assignments cover %d distinct tasks, want 8", len(seen))
	}
	// A third agent joins: the two waiting tasks go there.
	members.Set(append(members.Nodes(), agentNode("n3", 1, 1024)))
	eventually(t, 5*time.Second, "the rest placed on n3", func() bool {
		as, err := tm.client.Assignments(ctx, "n3", 0, time.Second)
		return err == nil && len(as.Tasks) == 2
	})
	// /v1/nodes shows what the tasks use.
	nodes, err := tm.client.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		want := map[string]float64{"n1": 1, "n2": 1, "n3": 0.5}[n.ID]
		if diff := n.Used.Cpus - want; diff > 1e-9 || diff < -1e-9 {
			t.Fatalf("node %s used cpus %g, want %g", n.ID, n.Used.Cpus, want)
		}
	}
}

// putTask writes a task record straight to the store.
func putTask(t *testing.T, s *Store, rec *TaskRecord) uint64 {
	t.Helper()
	idx, err := s.Apply(context.Background(), []Op{Put(TableTasks, rec.Task.ID, rec)})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func TestAssignmentsBlockingQuery(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024), agentNode("n2", 1, 1024))
	tm := startMaster(t, members)
	ctx := context.Background()
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.1", SlaveID: "n1", State: api.TaskRunning}, Goal: api.GoalRun})
	first, err := tm.client.Assignments(ctx, "n1", 0, time.Second)
	if err != nil || len(first.Tasks) != 1 {
		t.Fatalf("first query: %+v %v", first, err)
	}

	type answer struct {
		as  *api.Assignments
		err error
		at  time.Time
	}
	got := make(chan answer, 1)
	go func() {
		as, err := tm.client.Assignments(ctx, "n1", first.Index, 10*time.Second)
		got <- answer{as, err, time.Now()}
	}()
	time.Sleep(100 * time.Millisecond)
	// A change to another agent's tasks does not wake n1.
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "b.1", SlaveID: "n2", State: api.TaskStaging}, Goal: api.GoalRun})
	select {
	case a := <-got:
		t.Fatalf("n1's query woke for n2's task: %+v", a.as)
	case <-time.After(200 * time.Millisecond):
	}
	// Killing n1's task wakes it at once.
	rec := *tasksOf(tm.Store())["a.1"]
	rec.Goal = api.GoalKill
	putTask(t, tm.Store(), &rec)
	wrote := time.Now()
	a := <-got
	if a.err != nil {
		t.Fatal(a.err)
	}
	if d := a.at.Sub(wrote); d > 100*time.Millisecond {
		t.Fatalf("blocking query answered %v after the write, want ≤ 100 ms", d)
	}
	if len(a.as.Tasks) != 1 || a.as.Tasks[0].Goal != api.GoalKill || a.as.Index <= first.Index {
		t.Fatalf("woken answer: %+v", a.as)
	}

	// Deleting the task wakes it too, with an empty list.
	go func() {
		as, err := tm.client.Assignments(ctx, "n1", a.as.Index, 10*time.Second)
		got <- answer{as, err, time.Now()}
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := tm.Store().Apply(ctx, []Op{Delete(TableTasks, "a.1")}); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.err != nil || len(a.as.Tasks) != 0 {
		t.Fatalf("after delete: %+v %v", a.as, a.err)
	}

	// With nothing changing, the query returns after wait.
	start := time.Now()
	idle, err := tm.client.Assignments(ctx, "n1", tm.Store().Index(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle query returned after %v, want about 300 ms", d)
	}
	if len(idle.Tasks) != 0 {
		t.Fatalf("idle answer: %+v", idle)
	}
}

func TestStateWatch(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024))
	tm := startMaster(t, members)
	ctx := context.Background()
	// Index 0 answers at once by design; wait for the leader's first
	// write (the framework id) so the watch below really blocks.
	eventually(t, 5*time.Second, "the first write", func() bool { return tm.Store().Index() > 0 })
	st, err := tm.client.Watch(ctx, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != tm.cfg.APIAdvertise || st.Domain != "pcm" || len(st.Nodes) != 1 {
		t.Fatalf("state: leader %q domain %q nodes %d", st.Leader, st.Domain, len(st.Nodes))
	}
	got := make(chan *api.State, 1)
	go func() {
		s, err := tm.client.Watch(ctx, st.Index, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	time.Sleep(100 * time.Millisecond)
	app := &api.App{ID: "/web", Instances: 1}
	if _, err := tm.Store().Apply(ctx, []Op{Put(TableApps, app.ID, app), Put(TableTasks, "web.1", &TaskRecord{Task: api.Task{ID: "web.1", AppID: "/web", SlaveID: "n1", State: api.TaskRunning}, Spec: api.TaskSpec{Resources: api.Resources{Cpus: 0.5}}})}); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	s := <-got
	if d := time.Since(wrote); d > 100*time.Millisecond {
		t.Fatalf("watch answered %v after the write", d)
	}
	if s.Index <= st.Index || len(s.Apps) != 1 || len(s.Tasks) != 1 || s.Nodes[0].Used.Cpus != 0.5 {
		t.Fatalf("woken state: index %d apps %v tasks %v nodes %+v", s.Index, s.Apps, s.Tasks, s.Nodes)
	}
	// A membership change wakes the watch as well.
	go func() {
		s, _ := tm.client.Watch(ctx, s.Index, 10*time.Second)
		got <- s
	}()
	time.Sleep(50 * time.Millisecond)
	members.Set(append(members.Nodes(), agentNode("n2", 1, 1024)))
	select {
	case s2 := <-got:
		if len(s2.Nodes) != 2 {
			t.Fatalf("after join: %d nodes", len(s2.Nodes))
		}
	case <-time.After(time.Second):
		t.Fatal("membership change did not wake the watch")
	}
	start := time.Now()
	if _, err := tm.client.Watch(ctx, tm.Store().Index(), 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle watch returned after %v, want about 300 ms", d)
	}
	// Bad parameters are a 400 with a message.
	_, err = tm.client.Do(ctx, http.MethodGet, "/v1/state?index=x", nil, nil)
	if api.StatusCode(err) != http.StatusBadRequest {
		t.Fatalf("bad index: %v", err)
	}
}

// nextEvent reads events until one of type typ (skipping others), or fails.
func nextEvent(t *testing.T, ch <-chan api.Event, typ string) map[string]any {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event stream closed waiting for %s", typ)
			}
			if ev.Type != typ {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(ev.Data, &m); err != nil {
				t.Fatalf("event %s: %v", typ, err)
			}
			return m
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}

func TestStatusUpdatesProduceEvents(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024), agentNode("n2", 1, 1024))
	tm := startMaster(t, members)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	putTask(t, tm.Store(), &TaskRecord{
		Task: api.Task{ID: "web.instance-1._app.1", AppID: "/web", SlaveID: "n1", Host: "10.47.1.1", State: api.TaskStaging, Version: "v1", Ports: []int{31000}},
		Goal: api.GoalRun,
	})
	evs, err := tm.client.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		if ev.Type != api.EventStreamAttached || !strings.Contains(string(ev.Data), "remoteAddress") {
			t.Fatalf("first event %s %s", ev.Type, ev.Data)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no event_stream_attached")
	}
	filtered, err := tm.client.Events(ctx, api.EventHealthStatusChanged)
	if err != nil {
		t.Fatal(err)
	}

	post := func(agent string, sts ...api.TaskStatus) (statusAnswer, error) {
		var ans statusAnswer
		_, err := tm.client.Do(ctx, http.MethodPost, "/v1/agents/"+agent+"/status", sts, &ans)
		return ans, err
	}
	id := "web.instance-1._app.1"
	if _, err := post("n1", api.TaskStatus{TaskID: id, State: api.TaskRunning, IPAddresses: []api.IPAddress{{IPAddress: "10.47.1.1", Protocol: "IPv4"}}}); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, evs, api.EventStatusUpdate)
	want := map[string]any{"slaveId": "n1", "taskId": id, "taskStatus": api.TaskRunning, "appId": "/web", "host": "10.47.1.1", "version": "v1"}
	for k, v := range want {
		if ev[k] != v {
			t.Fatalf("status_update_event %s = %v, want %v (%v)", k, ev[k], v, ev)
		}
	}
	if ports, _ := ev["ports"].([]any); len(ports) != 1 || ports[0] != 31000.0 {
		t.Fatalf("event ports %v", ev["ports"])
	}
	if ips, _ := ev["ipAddresses"].([]any); len(ips) != 1 {
		t.Fatalf("event ipAddresses %v", ev["ipAddresses"])
	}
	rec := tasksOf(tm.Store())[id]
	if rec.Task.State != api.TaskRunning || rec.Task.StartedAt == "" {
		t.Fatalf("record after RUNNING: %+v", rec.Task)
	}
	startedAt := rec.Task.StartedAt

	// Health: the first result and every flip emit health_status_changed_event.
	for _, alive := range []bool{true, false} {
		if _, err := post("n1", api.TaskStatus{TaskID: id, State: api.TaskRunning, HealthCheckResults: []api.HealthCheckResult{{Alive: alive}}}); err != nil {
			t.Fatal(err)
		}
		hev := nextEvent(t, filtered, api.EventHealthStatusChanged)
		if hev["alive"] != alive || hev["taskId"] != nil || hev["instanceId"] != "web.instance-1" || hev["appId"] != "/web" {
			t.Fatalf("health event %v, want alive=%v", hev, alive)
		}
	}
	// A no-op and a stale update change nothing and emit nothing.
	idx := tm.Store().Index()
	if _, err := post("n1",
		api.TaskStatus{TaskID: id, State: api.TaskRunning, HealthCheckResults: []api.HealthCheckResult{{Alive: false}}},
		api.TaskStatus{TaskID: id, State: api.TaskStarting}); err != nil {
		t.Fatal(err)
	}
	if tm.Store().Index() != idx {
		t.Fatal("no-op updates wrote to the store")
	}
	// Unknown tasks come back for the agent to kill.
	ans, err := post("n1", api.TaskStatus{TaskID: "ghost.1", State: api.TaskRunning})
	if err != nil || len(ans.Unknown) != 1 || ans.Unknown[0] != "ghost.1" {
		t.Fatalf("unknown task answer %+v %v", ans, err)
	}
	// Another agent may not report this task.
	if _, err := post("n2", api.TaskStatus{TaskID: id, State: api.TaskFailed}); api.StatusCode(err) != http.StatusConflict {
		t.Fatalf("foreign update: %v", err)
	}
	// Bad JSON is a 400 with a message, not a crash.
	_, err = tm.client.Do(ctx, http.MethodPost, "/v1/agents/n1/status", strings.NewReader(`{"taskId":`), nil)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Body.Message == "" {
		t.Fatalf("bad JSON: %v", err)
	}
	// A terminal state is final.
	exit := 1
	if _, err := post("n1", api.TaskStatus{TaskID: id, State: api.TaskFailed, ExitStatus: &exit, Message: "exited 1"}); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, evs, api.EventStatusUpdate)
	if ev["taskStatus"] != api.TaskFailed || ev["message"] != "exited 1" {
		t.Fatalf("failed event %v", ev)
	}
	if _, err := post("n1", api.TaskStatus{TaskID: id, State: api.TaskRunning}); err != nil {
		t.Fatal(err)
	}
	rec = tasksOf(tm.Store())[id]
	if rec.Task.State != api.TaskFailed || rec.Task.ExitStatus == nil || *rec.Task.ExitStatus != 1 || rec.Task.StartedAt != startedAt {
		t.Fatalf("record after FAILED then RUNNING: %+v", rec.Task)
	}
}

func TestAgentLossMarksTasksUnreachable(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 2, 1024), agentNode("n2", 2, 1024))
	tm := startMasterWith(t, members, func(c *MasterConfig) { c.AbsentAgentGrace = 500 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A task on an agent the membership has never heard of (renamed, or
	// reaped long ago) is unreachable once the master has led for the grace.
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "old.1", AppID: "/old", SlaveID: "gone", State: api.TaskRunning}, Goal: api.GoalRun})
	time.Sleep(100 * time.Millisecond)
	if s := tasksOf(tm.Store())["old.1"].Task.State; s != api.TaskRunning {
		t.Fatalf("task of an absent agent marked %s before the grace", s)
	}
	eventually(t, 3*time.Second, "absent agent's task unreachable", func() bool {
		return tasksOf(tm.Store())["old.1"].Task.State == api.TaskUnreachable
	})
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.1", AppID: "/a", SlaveID: "n1", State: api.TaskRunning}, Goal: api.GoalRun})
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.2", AppID: "/a", SlaveID: "n1", State: api.TaskFinished}, Goal: api.GoalRun})
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.3", AppID: "/a", SlaveID: "n2", State: api.TaskRunning}, Goal: api.GoalRun})
	evs, err := tm.client.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		t.Fatal(err)
	}
	idx := tm.Store().Index()
	members.SetStatus("n1", NodeSuspect)
	time.Sleep(200 * time.Millisecond)
	if tm.Store().Index() != idx {
		t.Fatal("a suspect member changed the state")
	}
	members.SetStatus("n1", NodeFailed)
	ev := nextEvent(t, evs, api.EventStatusUpdate)
	if ev["taskId"] != "a.1" || ev["taskStatus"] != api.TaskUnreachable {
		t.Fatalf("event %v", ev)
	}
	ts := tasksOf(tm.Store())
	if ts["a.1"].Task.State != api.TaskUnreachable || ts["a.2"].Task.State != api.TaskFinished || ts["a.3"].Task.State != api.TaskRunning {
		t.Fatalf("states: %s %s %s", ts["a.1"].Task.State, ts["a.2"].Task.State, ts["a.3"].Task.State)
	}
	// The agent comes back and reports its task running again.
	members.SetStatus("n1", NodeAlive)
	if err := tm.client.PostStatus(ctx, "n1", []api.TaskStatus{{TaskID: "a.1", State: api.TaskRunning}}); err != nil {
		t.Fatal(err)
	}
	if back := tasksOf(tm.Store())["a.1"].Task; back.State != api.TaskRunning || back.Message != "" {
		t.Fatalf("after return: %s %q", back.State, back.Message)
	}
}

func TestMasterEndpoints(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024))
	tm := startMaster(t, members, panicky{})
	ctx := context.Background()
	var leader map[string]string
	if _, err := tm.client.Do(ctx, http.MethodGet, "/v2/leader", nil, &leader); err != nil || leader["leader"] != tm.cfg.APIAdvertise {
		t.Fatalf("/v2/leader: %v %v", leader, err)
	}
	var info map[string]any
	if _, err := tm.client.Do(ctx, http.MethodGet, "/v2/info", nil, &info); err != nil {
		t.Fatal(err)
	}
	if info["name"] != "marathon" || info["elected"] != true || info["leader"] != tm.cfg.APIAdvertise || info["frameworkId"] == "" {
		t.Fatalf("/v2/info: %v", info)
	}
	if _, ok := info["marathon_config"].(map[string]any); !ok {
		t.Fatalf("/v2/info has no marathon_config: %v", info)
	}
	// A single master cannot abdicate, and says why.
	_, err := tm.client.Do(ctx, http.MethodDelete, "/v2/leader", nil, nil)
	if api.StatusCode(err) != http.StatusConflict {
		t.Fatalf("DELETE /v2/leader: %v", err)
	}
	body := func(path string) (int, string) {
		resp, err := http.Get(tm.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := body("/ping"); code != 200 || strings.TrimSpace(b) != "pong" {
		t.Fatalf("/ping: %d %q", code, b)
	}
	if code, b := body("/v2/plugins"); code != 200 || !strings.Contains(b, `"plugins":[]`) {
		t.Fatalf("/v2/plugins: %d %q", code, b)
	}
	if code, b := body("/v2/nonsense"); code != 404 || !strings.Contains(b, `"message"`) {
		t.Fatalf("/v2/nonsense: %d %q", code, b)
	}
	if code, b := body("/v2/boom"); code != 500 || !strings.Contains(b, `"message"`) {
		t.Fatalf("panicking handler: %d %q", code, b)
	}
	code, b := body("/metrics")
	// What `promtool check metrics` checks (it runs this linter).
	if probs, err := promlint.New(strings.NewReader(b)).Lint(); err != nil || len(probs) > 0 {
		t.Fatalf("/metrics fails promtool's lint: %v %+v", err, probs)
	}
	for _, want := range []string{`weft_tasks{state="TASK_RUNNING"}`, "weft_apps 0", "weft_leader 1", `weft_api_requests_total{code="500",route="GET /v2/boom"} 1`, `weft_nodes{status="alive"} 1`, `weft_raft_index{kind="applied"}`, "weft_raft_apply_seconds_bucket"} {
		if code != 200 || !strings.Contains(b, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, b)
		}
	}
}

// panicky is a framework whose only route panics.
type panicky struct{}

func (panicky) Name() string                                  { return "panicky" }
func (panicky) Run(ctx context.Context, m MasterHandle) error { <-ctx.Done(); return nil }
func (panicky) Wants() bool                                   { return false }
func (panicky) ResourceOffers(context.Context, []api.Offer) OfferResult {
	return OfferResult{}
}
func (panicky) Routes(mux *http.ServeMux, m MasterHandle) {
	mux.HandleFunc("GET /v2/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
}

// orderRecorder records which framework got offers, in order.
type orderRecorder struct {
	mu    sync.Mutex
	order []string
}

type recordingFramework struct {
	*testFramework
	rec *orderRecorder
}

func (f recordingFramework) ResourceOffers(ctx context.Context, offers []api.Offer) OfferResult {
	f.rec.mu.Lock()
	f.rec.order = append(f.rec.order, f.name)
	f.rec.mu.Unlock()
	return f.testFramework.ResourceOffers(ctx, offers)
}

func TestDRFOffersGoToTheFrameworkWithTheSmallerShare(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 4, 4096))
	rec := &orderRecorder{}
	big := recordingFramework{&testFramework{name: "big", cpus: 1, mem: 10}, rec}
	small := recordingFramework{&testFramework{name: "small", cpus: 1, mem: 10}, rec}
	tm := startMaster(t, members, big, small)
	// big already holds 2 of 4 cpus.
	for _, id := range []string{"big.x", "big.y"} {
		putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: id, SlaveID: "n1", Framework: "big", State: api.TaskRunning}, Spec: api.TaskSpec{Resources: api.Resources{Cpus: 1, Mem: 10}}})
	}
	time.Sleep(100 * time.Millisecond)
	big.add(2)
	small.add(2)
	tm.Revive()
	eventually(t, 5*time.Second, "both frameworks got offers", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.order) >= 1 && len(tasksOf(tm.Store())) == 4
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.order[0] != "small" {
		t.Fatalf("offer order %v: the framework with the smaller dominant share goes first", rec.order)
	}
	byFw := map[string]int{}
	for _, r := range tasksOf(tm.Store()) {
		byFw[r.Task.Framework]++
	}
	if byFw["small"] != 2 || byFw["big"] != 2 {
		t.Fatalf("tasks per framework %v: small should get the 2 free cpus", byFw)
	}
}

func TestDeclineRefusesUntilTheAgentChanges(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 1, 1024))
	fw := &testFramework{name: "picky", decline: true, refuseFor: time.Hour}
	fw.add(1)
	tm := startMaster(t, members, fw)
	eventually(t, 5*time.Second, "first offer", func() bool { return len(fw.offerRounds()) == 1 })
	time.Sleep(300 * time.Millisecond) // six allocation intervals
	if n := len(fw.offerRounds()); n != 1 {
		t.Fatalf("declined agent offered %d times within the refusal", n)
	}
	// The agent's attributes change: the refusal lapses.
	n := agentNode("n1", 1, 1024)
	n.Attributes = map[string]string{"disk": "ssd"}
	members.Set([]api.Node{n})
	eventually(t, 5*time.Second, "offer after the agent changed", func() bool { return len(fw.offerRounds()) == 2 })
	if got := fw.offerRounds()[1][0].Attributes["disk"]; got != "ssd" {
		t.Fatalf("offer attributes %v", fw.offerRounds()[1][0].Attributes)
	}
	// Revive (new demand) lifts the refusal too.
	tm.Revive()
	eventually(t, 5*time.Second, "offer after Revive", func() bool { return len(fw.offerRounds()) == 3 })
	// The master itself stayed up and leading throughout.
	if !tm.Store().IsLeader() {
		t.Fatal("master lost leadership")
	}
}

// An agent that hangs up its long poll and answers no gossip ping is taken
// for dead at once (its tasks unreachable, the membership shows it
// failed) though gossip still calls it alive; one that polls again within
// the grace, or answers a ping, is not.
func TestAgentHungUpAndSilentIsLostFast(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 2, 1024), agentNode("n2", 2, 1024))
	tm := startMaster(t, members)
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.1", AppID: "/a", SlaveID: "n1", State: api.TaskRunning}, Goal: api.GoalRun})
	putTask(t, tm.Store(), &TaskRecord{Task: api.Task{ID: "a.2", AppID: "/a", SlaveID: "n2", State: api.TaskRunning}, Goal: api.GoalRun})
	var silent sync.Map // names that answer no ping
	members.SetPing(func(name string) error {
		if _, ok := silent.Load(name); ok {
			return errors.New("no ack")
		}
		return nil
	})
	open := func(agent string) int {
		tm.polls.mu.Lock()
		defer tm.polls.mu.Unlock()
		return tm.polls.open[agent]
	}
	// poll opens agent's long poll and returns its hang-up.
	poll := func(agent string) func() {
		ctx, cancel := context.WithCancel(context.Background())
		before := open(agent)
		as, err := tm.client.Assignments(ctx, agent, 0, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = tm.client.Assignments(ctx, agent, as.Index, 30*time.Second) }()
		eventually(t, 2*time.Second, agent+"'s poll open", func() bool { return open(agent) > before })
		return func() {
			cancel()
			eventually(t, 2*time.Second, agent+"'s poll closed", func() bool { return open(agent) <= before })
		}
	}
	status := func(agent string) string {
		for _, n := range tm.Nodes() {
			if n.ID == agent {
				return n.Status
			}
		}
		return ""
	}
	state := func(id string) string { return tasksOf(tm.Store())[id].Task.State }

	// n2 hangs up but answers pings: alive.
	poll("n2")()
	// n1 answers no ping but polls again within the grace: alive.
	silent.Store("n1", true)
	hangUp := poll("n1")
	hangUp()
	reopen := poll("n1")
	time.Sleep(1500 * time.Millisecond)
	if state("a.1") != api.TaskRunning || state("a.2") != api.TaskRunning || status("n1") != NodeAlive || status("n2") != NodeAlive {
		t.Fatalf("after hang-ups with a poll again or a ping answered: tasks %s %s, agents %s %s",
			state("a.1"), state("a.2"), status("n1"), status("n2"))
	}

	// n1 stops on purpose: it hangs up, says so, answers no ping — and is
	// left to gossip.
	reopen()
	if err := tm.client.AgentStopping(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if state("a.1") != api.TaskRunning || status("n1") != NodeAlive {
		t.Fatalf("after a stop on purpose: task %s, agent %s", state("a.1"), status("n1"))
	}
	// It comes back (which clears the notice), then hangs up and stays
	// silent: lost well before gossip would say so.
	back := poll("n1")
	start := time.Now()
	back()
	eventually(t, 3*time.Second, "n1's task unreachable", func() bool { return state("a.1") == api.TaskUnreachable })
	t.Logf("silent agent's task unreachable %v after it hung up", time.Since(start).Round(time.Millisecond))
	if status("n1") != NodeFailed || state("a.2") != api.TaskRunning {
		t.Fatalf("n1 %s (want failed), a.2 %s", status("n1"), state("a.2"))
	}
	for _, n := range members.Nodes() {
		if n.ID == "n1" && n.Status != NodeAlive {
			t.Fatalf("gossip's own view changed: %s", n.Status)
		}
	}
	// It polls again: no longer taken for dead.
	defer poll("n1")()
	if status("n1") != NodeAlive {
		t.Fatalf("n1 polls again but shows %s", status("n1"))
	}
}
