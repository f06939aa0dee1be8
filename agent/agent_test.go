package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// fakeMaster serves the two agent endpoints from assignments a test
// changes, and records the status updates it accepts.
type fakeMaster struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	cond     *sync.Cond
	index    uint64
	tasks    []api.Assignment
	statuses []api.TaskStatus
	down     bool            // answer 503 to everything
	postFail int             // answer 503 to this many more status posts
	forget   map[string]bool // answer these ids as unknown
	posts    int
	// answered: the list answered at each index, so that a delta query
	// (delta=true, as api.Client asks) gets what changed since (the
	// master's delta form); noDelta answers whole lists only.
	answered map[uint64][]api.Assignment
	noDelta  bool
	deltas   int                // delta answers sent
	batches  [][]api.TaskStatus // each status post's updates
}

func newFakeMaster(t *testing.T) *fakeMaster {
	m := &fakeMaster{t: t, index: 1, forget: map[string]bool{}, answered: map[uint64][]api.Assignment{}}
	m.cond = sync.NewCond(&m.mu)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agents/{id}/assignments", m.assignments)
	mux.HandleFunc("POST /v1/agents/{id}/status", m.status)
	m.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		m.mu.Lock()
		m.index++ // release waiters
		m.cond.Broadcast()
		m.mu.Unlock()
		m.srv.CloseClientConnections()
		m.srv.Close()
	})
	return m
}

func (m *fakeMaster) client() *api.Client { return api.NewClient(m.srv.URL) }

func (m *fakeMaster) assignments(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	deadline := time.Now().Add(wait)
	stop := context.AfterFunc(r.Context(), func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer stop()
	timer := time.AfterFunc(wait, func() { m.mu.Lock(); m.cond.Broadcast(); m.mu.Unlock() })
	defer timer.Stop()
	m.mu.Lock()
	for m.index <= after && time.Now().Before(deadline) && r.Context().Err() == nil && !m.down {
		m.cond.Wait()
	}
	if m.down {
		m.mu.Unlock()
		http.Error(w, `{"message":"master down"}`, http.StatusServiceUnavailable)
		return
	}
	out := api.Assignments{Index: m.index, Tasks: slices.Clone(m.tasks)}
	m.answered[m.index] = out.Tasks
	if prev, ok := m.answered[after]; ok && !m.noDelta && r.URL.Query().Get("delta") == "true" {
		m.deltas++
		out = assignmentDelta(prev, out)
	}
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// assignmentDelta is whole as a delta from prev: the assignments added
// or changed, and the ids removed.
func assignmentDelta(prev []api.Assignment, whole api.Assignments) api.Assignments {
	out := api.Assignments{Index: whole.Index, Delta: true, Tasks: []api.Assignment{}}
	was := map[string]api.Assignment{}
	for _, a := range prev {
		was[a.Task.ID] = a
	}
	for _, a := range whole.Tasks {
		if old, ok := was[a.Task.ID]; !ok || !reflect.DeepEqual(old, a) {
			out.Tasks = append(out.Tasks, a)
		}
		delete(was, a.Task.ID)
	}
	for id := range was {
		out.Removed = append(out.Removed, id)
	}
	return out
}

func (m *fakeMaster) status(w http.ResponseWriter, r *http.Request) {
	var ups []api.TaskStatus
	if err := json.NewDecoder(r.Body).Decode(&ups); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.posts++
	m.batches = append(m.batches, ups)
	if m.down || m.postFail > 0 {
		if m.postFail > 0 {
			m.postFail--
		}
		http.Error(w, `{"message":"not now"}`, http.StatusServiceUnavailable)
		return
	}
	var unknown []string
	for _, u := range ups {
		m.statuses = append(m.statuses, u)
		found := false
		for i := range m.tasks {
			if m.tasks[i].Task.ID == u.TaskID && !m.forget[u.TaskID] {
				m.tasks[i].Task.State = u.State
				found = true
			}
		}
		if !found && !slices.Contains(unknown, u.TaskID) {
			unknown = append(unknown, u.TaskID)
		}
	}
	m.index++
	m.cond.Broadcast()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(api.StatusAnswer{Unknown: unknown})
}

// set adds or replaces an assignment.
func (m *fakeMaster) set(a api.Assignment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.Task.State == "" {
		a.Task.State = api.TaskStaging
	}
	for i := range m.tasks {
		if m.tasks[i].Task.ID == a.Task.ID {
			a.Task.State = m.tasks[i].Task.State
			m.tasks[i] = a
			m.index++
			m.cond.Broadcast()
			return
		}
	}
	m.tasks = append(m.tasks, a)
	m.index++
	m.cond.Broadcast()
}

func (m *fakeMaster) setGoal(id, goal string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.tasks {
		if m.tasks[i].Task.ID == id {
			m.tasks[i].Goal = goal
		}
	}
	m.index++
	m.cond.Broadcast()
}

func (m *fakeMaster) remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tasks = slices.DeleteFunc(m.tasks, func(a api.Assignment) bool { return a.Task.ID == id })
	m.index++
	m.cond.Broadcast()
}

func (m *fakeMaster) setDown(down bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.down = down
	m.cond.Broadcast()
}

// states returns the states posted for task id, in order.
func (m *fakeMaster) states(id string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.statuses {
		if s.TaskID == id {
			out = append(out, s.State)
		}
	}
	return out
}

// last returns the last status posted for id with the given state.
func (m *fakeMaster) last(id, state string) (api.TaskStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.statuses) - 1; i >= 0; i-- {
		if s := m.statuses[i]; s.TaskID == id && s.State == state {
			return s, true
		}
	}
	return api.TaskStatus{}, false
}

func (m *fakeMaster) taskState(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.tasks {
		if a.Task.ID == id {
			return a.Task.State
		}
	}
	return ""
}

// eventually retries cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testConfig is DefaultConfig with short timers.
func testConfig(t *testing.T, m *fakeMaster, dir string) Config {
	cfg := DefaultConfig()
	cfg.ID = "agent-1"
	cfg.Master = m.client()
	cfg.DataDir = dir
	cfg.HostIP = "127.0.0.1"
	cfg.AgentEndpoint = "127.0.0.1:5051"
	cfg.AssignmentsWait = 2 * time.Second
	cfg.RetryMin = 10 * time.Millisecond
	cfg.RetryMax = 50 * time.Millisecond
	cfg.StopTasksOnExit = true
	cfg.CheckSecond = 20 * time.Millisecond
	return cfg
}

// startAgent runs an agent until the test ends (stopping its tasks).
func startAgent(t *testing.T, cfg Config) (*Agent, context.CancelFunc) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("agent run: %v", err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return a, sync.OnceFunc(stop)
}

func shTask(id, cmd string) api.Assignment {
	return api.Assignment{
		Task: api.Task{ID: id, AppID: "/test"},
		Spec: api.TaskSpec{Cmd: &cmd, Env: map[string]string{"FOO": "bar", "MARATHON_APP_ID": "/test"}},
		Goal: api.GoalRun,
	}
}

func waitState(t *testing.T, m *fakeMaster, id, state string) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	eventually(t, 10*time.Second, id+" "+state, func() bool {
		var ok bool
		st, ok = m.last(id, state)
		return ok
	})
	return st
}

func TestTaskFinishesWithEnvAndSandbox(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	startAgent(t, testConfig(t, m, dir))
	m.set(shTask("t1", `echo hello; echo oops >&2; env > env.txt; exit 0`))
	st := waitState(t, m, "t1", api.TaskFinished)
	if st.ExitStatus == nil || *st.ExitStatus != 0 {
		t.Errorf("exit status = %v, want 0", st.ExitStatus)
	}
	if got := m.states("t1"); !slices.Equal(got, []string{api.TaskStarting, api.TaskRunning, api.TaskFinished}) {
		t.Errorf("states = %v", got)
	}
	sb := filepath.Join(dir, "sandboxes", "t1")
	out, _ := os.ReadFile(filepath.Join(sb, "stdout"))
	errOut, _ := os.ReadFile(filepath.Join(sb, "stderr"))
	if string(out) != "hello\n" || string(errOut) != "oops\n" {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
	env, _ := os.ReadFile(filepath.Join(sb, "env.txt"))
	for _, want := range []string{
		"FOO=bar", "HOST=127.0.0.1", "MESOS_SANDBOX=" + sb, "MESOS_DIRECTORY=" + sb,
		"MESOS_TASK_ID=t1", "MESOS_AGENT_ENDPOINT=127.0.0.1:5051", "MARATHON_APP_ID=/test", "PATH=",
	} {
		if !strings.Contains(string(env), "\n"+want) && !strings.HasPrefix(string(env), want) {
			t.Errorf("task env lacks %q:\n%s", want, env)
		}
	}
}

func TestTaskFailsWithStatusAndStderr(t *testing.T) {
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("t3", `echo "cannot open config" >&2; exit 3`))
	st := waitState(t, m, "t3", api.TaskFailed)
	if st.ExitStatus == nil || *st.ExitStatus != 3 {
		t.Errorf("exit status = %v, want 3", st.ExitStatus)
	}
	if !strings.Contains(st.Message, "status 3") || !strings.Contains(st.Message, "cannot open config") {
		t.Errorf("message %q lacks the exit status or the stderr tail", st.Message)
	}
}

func TestArgsRunWithoutShell(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	startAgent(t, testConfig(t, m, dir))
	a := api.Assignment{Task: api.Task{ID: "args"}, Goal: api.GoalRun,
		Spec: api.TaskSpec{Args: []string{"echo", "$HOST", "two words"}}}
	m.set(a)
	waitState(t, m, "args", api.TaskFinished)
	out, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "args", "stdout"))
	if string(out) != "$HOST two words\n" {
		t.Errorf("stdout = %q: args must be exec'd directly, not through a shell", out)
	}
}

// pidOf waits for the task to run here and returns its pid (= its pgid).
func pidOf(t *testing.T, a *Agent, id string) int {
	t.Helper()
	pid := 0
	eventually(t, 10*time.Second, "pid of "+id, func() bool {
		for _, ti := range a.Tasks() {
			if ti.ID == id && ti.Pid > 0 {
				pid = ti.Pid
			}
		}
		return pid > 0
	})
	return pid
}

// readPid waits for a pid file a task writes.
func readPid(t *testing.T, path string) int {
	t.Helper()
	pid := 0
	eventually(t, 10*time.Second, "pid file "+path, func() bool {
		raw, err := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		return err == nil && pid > 0
	})
	return pid
}

// gone reports whether no process (zombies included) is left in group pgid.
func groupGone(pgid int) bool {
	return len(groupMembers(pgid)) == 0
}

func processGone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err != nil
}

func TestKillWithGraceHandlesSIGTERM(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	a, _ := startAgent(t, testConfig(t, m, dir))
	task := shTask("term", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done`)
	task.Spec.KillGracePeriodSeconds = 5
	m.set(task)
	pgid := pidOf(t, a, "term")
	waitState(t, m, "term", api.TaskRunning)
	eventually(t, 5*time.Second, "task ready", func() bool {
		out, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "term", "stdout"))
		return strings.Contains(string(out), "ready")
	})
	start := time.Now()
	m.setGoal("term", api.GoalKill)
	waitState(t, m, "term", api.TaskKilled)
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("a task that exits on SIGTERM took %s to be killed", d)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "term", "stdout"))
	if !strings.Contains(string(out), "got-term") {
		t.Errorf("the task never saw SIGTERM; stdout %q", out)
	}
	if got := m.states("term"); !slices.Equal(got, []string{api.TaskStarting, api.TaskRunning, api.TaskKilling, api.TaskKilled}) {
		t.Errorf("states = %v", got)
	}
	eventually(t, 5*time.Second, "process group gone", func() bool { return groupGone(pgid) })
}

func TestKillIgnoringSIGTERMGetsSIGKILLAfterGrace(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	a, _ := startAgent(t, testConfig(t, m, dir))
	// The shell and its child both ignore SIGTERM (ignored signals are inherited).
	task := shTask("stubborn", `trap '' TERM; sleep 1000 & echo $! > child.pid; wait; wait`)
	task.Spec.KillGracePeriodSeconds = 0.5
	m.set(task)
	pgid := pidOf(t, a, "stubborn")
	child := readPid(t, filepath.Join(dir, "sandboxes", "stubborn", "child.pid"))
	start := time.Now()
	m.setGoal("stubborn", api.GoalKill)
	st := waitState(t, m, "stubborn", api.TaskKilled)
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("killed after %s, before its 0.5 s grace period", d)
	}
	if !strings.Contains(st.Message, "killed") {
		t.Errorf("message %q", st.Message)
	}
	if !groupGone(pgid) {
		t.Errorf("process group %d still has members %v after TASK_KILLED", pgid, groupMembers(pgid))
	}
	if !processGone(child) {
		t.Errorf("child %d of the task is still there (zombie or alive)", child)
	}
}

func TestNoStrayChildAfterExit(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	startAgent(t, testConfig(t, m, dir))
	m.set(shTask("stray", `sleep 1000 & echo $! > child.pid; exit 0`))
	waitState(t, m, "stray", api.TaskFinished)
	child := readPid(t, filepath.Join(dir, "sandboxes", "stray", "child.pid"))
	if !processGone(child) {
		t.Errorf("background child %d outlived its task", child)
	}
}

func TestKillsTaskNoLongerAssigned(t *testing.T) {
	m := newFakeMaster(t)
	a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("gone", `exec sleep 1000`))
	pgid := pidOf(t, a, "gone")
	waitState(t, m, "gone", api.TaskRunning)
	m.remove("gone")
	eventually(t, 10*time.Second, "unassigned task killed", func() bool { return groupGone(pgid) })
}

func TestKillsTaskUnknownToMaster(t *testing.T) {
	m := newFakeMaster(t)
	a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
	m.mu.Lock()
	m.forget["ghost"] = true // listed, but unknown when its status arrives
	m.mu.Unlock()
	m.set(shTask("ghost", `echo $$ > pid; exec sleep 1000`))
	// The answer to TASK_STARTING already says unknown, so the task may be
	// stopped before or after its process started; either way it must end.
	eventually(t, 10*time.Second, "task listed as killed", func() bool {
		ts := a.Tasks()
		return len(ts) == 1 && ts[0].State == api.TaskKilled
	})
	if raw, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "sandboxes", "ghost", "pid")); err == nil {
		// The shell may have been killed between creating the file and
		// writing its pid: an empty file names no process.
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pgid > 1 {
			eventually(t, 5*time.Second, "unknown task's group gone", func() bool { return groupGone(pgid) })
		}
	}
}

func TestGoalKillBeforeStartReportsKilled(t *testing.T) {
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	a := shTask("never", `exec sleep 1000`)
	a.Goal = api.GoalKill
	m.set(a)
	waitState(t, m, "never", api.TaskKilled)
	if slices.Contains(m.states("never"), api.TaskRunning) {
		t.Error("a task assigned with goal kill was started")
	}
}

func TestLostAfterAgentRestart(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	a1, stop1 := startAgent(t, cfg)
	m.set(shTask("lost", `exec sleep 1000`))
	pgid := pidOf(t, a1, "lost")
	eventually(t, 10*time.Second, "master sees RUNNING", func() bool { return m.taskState("lost") == api.TaskRunning })
	// The agent dies with the master out of reach (a crash, a host
	// reboot), so nobody learns that its task stopped with it.
	m.setDown(true)
	stop1() // StopTasksOnExit: the process dies with the agent
	eventually(t, 5*time.Second, "task stopped with the agent", func() bool { return groupGone(pgid) })
	m.setDown(false)
	if _, ok := m.last("lost", api.TaskKilled); ok {
		t.Fatal("KILLED reached a master that was down")
	}
	startAgent(t, cfg)
	st := waitState(t, m, "lost", api.TaskLost)
	if st.Message != "agent restarted; task was not recovered" {
		t.Errorf("message %q", st.Message)
	}
	if n := strings.Count(strings.Join(m.states("lost"), " "), api.TaskStarting); n != 1 {
		t.Errorf("the task was started %d times; the restarted agent must not start it again", n)
	}
}

func TestRecoverAfterAgentRestart(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	cfg.StopTasksOnExit = false
	a1, stop1 := startAgent(t, cfg)
	m.set(shTask("kept", `exec sleep 1000`))
	pgid := pidOf(t, a1, "kept")
	t.Cleanup(func() { killGroup(pgid, syscall.SIGKILL) })
	eventually(t, 10*time.Second, "master sees RUNNING", func() bool { return m.taskState("kept") == api.TaskRunning })
	stop1()
	if groupGone(pgid) {
		t.Fatal("the task stopped with the agent although StopTasksOnExit is false")
	}
	cfg.StopTasksOnExit = true
	a2, _ := startAgent(t, cfg)
	eventually(t, 10*time.Second, "recovered task listed", func() bool {
		ts := a2.Tasks()
		return len(ts) == 1 && ts[0].Pid == pgid
	})
	if st, ok := m.last("kept", api.TaskLost); ok {
		t.Fatalf("a recovered task was reported lost: %+v", st)
	}
	m.setGoal("kept", api.GoalKill)
	waitState(t, m, "kept", api.TaskKilled)
	eventually(t, 5*time.Second, "recovered task's group gone", func() bool { return groupGone(pgid) })
}

func TestStatusRetriedUntilMasterAccepts(t *testing.T) {
	m := newFakeMaster(t)
	m.mu.Lock()
	m.postFail = 8
	m.mu.Unlock()
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("retry", `exit 0`))
	waitState(t, m, "retry", api.TaskFinished)
	if got := m.states("retry"); !slices.Equal(got, []string{api.TaskStarting, api.TaskRunning, api.TaskFinished}) {
		t.Errorf("states = %v, want every update once, in order", got)
	}
	m.mu.Lock()
	posts := m.posts
	m.mu.Unlock()
	if posts < 9 {
		t.Errorf("only %d posts: the 503s were not retried", posts)
	}
}

func TestMasterUnreachableStopsNothing(t *testing.T) {
	m := newFakeMaster(t)
	a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("steady", `exec sleep 1000`))
	pgid := pidOf(t, a, "steady")
	waitState(t, m, "steady", api.TaskRunning)
	m.setDown(true)
	eventually(t, 5*time.Second, "agent notices the master is down", func() bool {
		return a.Health().Master == "unreachable"
	})
	time.Sleep(300 * time.Millisecond) // several failed polls with the 10-50 ms backoff
	if groupGone(pgid) {
		t.Fatal("the task was stopped while the master was unreachable")
	}
	m.setDown(false)
	eventually(t, 5*time.Second, "agent reaches the master again", func() bool { return a.Health().Master == "reachable" })
	if groupGone(pgid) || slices.Contains(m.states("steady"), api.TaskKilling) {
		t.Fatalf("task disturbed by the outage: states %v", m.states("steady"))
	}
}

func TestFetchFileURI(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(src, []byte("#!/bin/sh\necho fetched-ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startAgent(t, testConfig(t, m, dir))
	a := shTask("fetch", `./run.sh`)
	a.Spec.Fetch = []api.Fetch{{URI: "file://" + src, Executable: true}}
	m.set(a)
	waitState(t, m, "fetch", api.TaskFinished)
	out, _ := os.ReadFile(filepath.Join(dir, "sandboxes", "fetch", "stdout"))
	if string(out) != "fetched-ok\n" {
		t.Errorf("stdout %q", out)
	}

	bad := shTask("badfetch", `true`)
	bad.Spec.Fetch = []api.Fetch{{URI: "http://127.0.0.1:1/nothing.tgz"}}
	m.set(bad)
	st := waitState(t, m, "badfetch", api.TaskFailed)
	if !strings.Contains(st.Message, "127.0.0.1:1") {
		t.Errorf("fetch failure message %q does not name the URI", st.Message)
	}
}

func TestKillsTaskTheMasterConsidersEnded(t *testing.T) {
	m := newFakeMaster(t)
	a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("replaced", `exec sleep 1000`))
	pgid := pidOf(t, a, "replaced")
	waitState(t, m, "replaced", api.TaskRunning)
	// The master marked it lost while the agent was away (and replaced it).
	m.mu.Lock()
	m.tasks[0].Task.State = api.TaskLost
	m.index++
	m.cond.Broadcast()
	m.mu.Unlock()
	eventually(t, 10*time.Second, "task killed", func() bool { return groupGone(pgid) })
}

func TestMaxCompletionSecondsFailsTheTask(t *testing.T) {
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	task := shTask("slowjob", `exec sleep 1000`)
	task.Spec.MaxCompletionSeconds = 0.2
	m.set(task)
	st := waitState(t, m, "slowjob", api.TaskFailed)
	if !strings.Contains(st.Message, "maxCompletionSeconds") {
		t.Errorf("message %q", st.Message)
	}
}

func TestRestartedAgentStopsLeftoverTheMasterDropped(t *testing.T) {
	m := newFakeMaster(t)
	cfg := testConfig(t, m, t.TempDir())
	cfg.StopTasksOnExit = false
	a1, stop1 := startAgent(t, cfg)
	m.set(shTask("leftover", `exec sleep 1000`))
	pgid := pidOf(t, a1, "leftover")
	t.Cleanup(func() { killGroup(pgid, syscall.SIGKILL) })
	waitState(t, m, "leftover", api.TaskRunning)
	stop1()
	m.remove("leftover") // expunged while the agent was down
	startAgent(t, cfg)
	eventually(t, 10*time.Second, "leftover process stopped", func() bool { return groupGone(pgid) })
}

func TestOrphansOfARunningTaskAreReaped(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	startAgent(t, testConfig(t, m, dir))
	// The subshell exits at once, so sleep is orphaned (re-parented to the
	// agent) and exits a moment later while the task keeps running.
	m.set(shTask("spawner", `(sleep 0.1 & echo $! > orphan.pid); exec sleep 1000`))
	orphan := readPid(t, filepath.Join(dir, "sandboxes", "spawner", "orphan.pid"))
	eventually(t, 10*time.Second, "the exited orphan reaped (no zombie)", func() bool { return processGone(orphan) })
	// The reaper scans on SIGCHLD: an orphan that exits long after the
	// scans that followed its task's start is reaped too, within one
	// spacing of scans (reapEvery) and some headroom.
	m.set(shTask("late", `(sleep 4 & echo $! > orphan.pid); exec sleep 1000`))
	late := readPid(t, filepath.Join(dir, "sandboxes", "late", "orphan.pid"))
	eventually(t, 10*time.Second, "the late orphan exited", func() bool {
		st, _, _, ok := procStat(late)
		return !ok || st == 'Z'
	})
	eventually(t, reapEvery+3*time.Second, "the late orphan reaped (no zombie)", func() bool { return processGone(late) })
}

func TestStopTasksOnExitReportsKilled(t *testing.T) {
	m := newFakeMaster(t)
	a, stop := startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("bye", `exec sleep 1000`))
	pgid := pidOf(t, a, "bye")
	waitState(t, m, "bye", api.TaskRunning)
	stop()
	if !groupGone(pgid) {
		t.Error("task still running after Run returned with StopTasksOnExit")
	}
	if _, ok := m.last("bye", api.TaskKilled); !ok {
		t.Errorf("the master was not told the task was killed: %v", m.states("bye"))
	}
}

// setState changes what the master believes of a task, as gossip declaring
// the agent failed does (TASK_UNREACHABLE).
func (m *fakeMaster) setState(id, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.tasks {
		if m.tasks[i].Task.ID == id {
			m.tasks[i].Task.State = state
		}
	}
	m.index++
	m.cond.Broadcast()
}

// A master that briefly thought this agent gone (its tasks UNREACHABLE)
// hears at once that the task still runs, so nothing is replaced; the task
// itself is not restarted.
func TestReportsRunningTaskTheMasterThoughtUnreachable(t *testing.T) {
	m := newFakeMaster(t)
	startAgent(t, testConfig(t, m, t.TempDir()))
	m.set(shTask("back", `exec sleep 1000`))
	waitState(t, m, "back", api.TaskRunning)
	m.setState("back", api.TaskUnreachable)
	eventually(t, 5*time.Second, "RUNNING re-reported", func() bool { return m.taskState("back") == api.TaskRunning })
	starts := 0
	for _, s := range m.states("back") {
		if s == api.TaskStarting {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("states %v: the task was started again", m.states("back"))
	}
}

// TestDeltaAndWholeAssignmentsReconcileAlike: the agent reconciles a delta
// answer alone (the work follows the change, not the number of tasks),
// and ends where a whole-list reconcile ends: a task killed on request, a
// task no longer assigned killed and then forgotten once it has ended, a
// finished task forgotten once unassigned, an unreachable task
// re-reported.
func TestDeltaAndWholeAssignmentsReconcileAlike(t *testing.T) {
	for _, mode := range []string{"delta", "whole"} {
		t.Run(mode, func(t *testing.T) {
			m := newFakeMaster(t)
			m.noDelta = mode == "whole"
			a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
			m.set(shTask("kill", `exec sleep 1000`))
			m.set(shTask("drop", `exec sleep 1000`))
			m.set(shTask("done", `exit 0`))
			m.set(shTask("back", `exec sleep 1000`))
			waitState(t, m, "kill", api.TaskRunning)
			waitState(t, m, "drop", api.TaskRunning)
			waitState(t, m, "back", api.TaskRunning)
			waitState(t, m, "done", api.TaskFinished)

			m.setGoal("kill", api.GoalKill)
			waitState(t, m, "kill", api.TaskKilled)
			m.remove("drop")
			// Killed, and let go of. Its TASK_KILLED may not reach the
			// master: the master answers the TASK_KILLING post that it
			// does not know the task any more, and the agent drops what
			// it still has queued for it (as it must for a real master
			// that forgot the task).
			eventually(t, 10*time.Second, "drop killed and let go of", func() bool {
				for _, ti := range a.Tasks() {
					if ti.ID == "drop" {
						return false
					}
				}
				st := m.states("drop")
				return slices.Contains(st, api.TaskKilling) || slices.Contains(st, api.TaskKilled)
			})
			m.remove("done")
			m.remove("kill")
			m.setState("back", api.TaskUnreachable)
			eventually(t, 5*time.Second, "back's RUNNING re-reported", func() bool { return m.taskState("back") == api.TaskRunning })
			var ids []string
			eventually(t, 5*time.Second, "the agent holds only back", func() bool {
				ids = ids[:0]
				for _, ti := range a.Tasks() {
					ids = append(ids, ti.ID)
				}
				return slices.Equal(ids, []string{"back"})
			})
			if n := len(m.states("back")); m.states("back")[0] != api.TaskStarting || slices.Index(m.states("back")[1:], api.TaskStarting) >= 0 {
				t.Fatalf("back's states %v (%d): started again", m.states("back"), n)
			}
			m.mu.Lock()
			deltas := m.deltas
			m.mu.Unlock()
			if mode == "delta" && deltas < 5 || mode == "whole" && deltas != 0 {
				t.Fatalf("%s mode: %d delta answers", mode, deltas)
			}
		})
	}
}

// TestStartingAndRunningGoInOnePost: a process task's TASK_STARTING waits
// (StartingLinger) for its TASK_RUNNING, and both reach the master in one
// post, in order: one commit for the launch instead of two. Without the
// linger they usually go in two.
func TestStartingAndRunningGoInOnePost(t *testing.T) {
	for _, linger := range []time.Duration{2 * time.Second, -1} {
		t.Run(linger.String(), func(t *testing.T) {
			m := newFakeMaster(t)
			cfg := testConfig(t, m, t.TempDir())
			cfg.StartingLinger = linger
			startAgent(t, cfg)
			began := time.Now()
			m.set(shTask("quick", `exec sleep 1000`))
			waitState(t, m, "quick", api.TaskRunning)
			if d := time.Since(began); linger > 0 && d > linger {
				t.Errorf("RUNNING after %v: the linger was not cut short by RUNNING", d)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			var together bool
			for _, b := range m.batches {
				var states []string
				for _, u := range b {
					if u.TaskID == "quick" {
						states = append(states, u.State)
					}
				}
				together = together || slices.Equal(states, []string{api.TaskStarting, api.TaskRunning})
			}
			switch {
			case linger > 0 && !together:
				t.Fatalf("STARTING and RUNNING in separate posts: %v", m.batches)
			case linger < 0 && together:
				// Possible without the linger too, when the reporter wakes late.
				t.Logf("without the linger, STARTING and RUNNING still went in one post")
			}
		})
	}
}
