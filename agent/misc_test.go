package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestSandboxesToRemove(t *testing.T) {
	now := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name    string
		entries []sandboxEntry
		keep    time.Duration
		count   int
		want    []string
	}{
		{"live sandboxes are never removed", []sandboxEntry{
			{Name: "a", Live: true, DoneAt: ago(48 * time.Hour)},
		}, time.Hour, 1, nil},
		{"older than keep", []sandboxEntry{
			{Name: "old", DoneAt: ago(2 * time.Hour)},
			{Name: "new", DoneAt: ago(time.Minute)},
		}, time.Hour, 100, []string{"old"}},
		{"beyond the newest count", []sandboxEntry{
			{Name: "a", DoneAt: ago(1 * time.Minute)},
			{Name: "b", DoneAt: ago(3 * time.Minute)},
			{Name: "c", DoneAt: ago(2 * time.Minute)},
			{Name: "live", Live: true},
		}, time.Hour, 2, []string{"b"}},
	}
	for _, c := range cases {
		got := sandboxesToRemove(c.entries, now, c.keep, c.count)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSandboxGCRemovesFinishedOnly(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	cfg.SandboxKeepCount = 1
	cfg.GCInterval = 20 * time.Millisecond
	a, _ := startAgent(t, cfg)
	m.set(shTask("done1", `true`))
	waitState(t, m, "done1", api.TaskFinished)
	m.set(shTask("done2", `true`))
	waitState(t, m, "done2", api.TaskFinished)
	m.set(shTask("live", `exec sleep 1000`))
	pidOf(t, a, "live")
	sb := func(id string) bool { _, err := os.Stat(filepath.Join(dir, "sandboxes", id)); return err == nil }
	eventually(t, 5*time.Second, "oldest finished sandbox removed", func() bool { return !sb("done1") })
	if !sb("done2") || !sb("live") {
		t.Errorf("kept the wrong sandboxes: done2=%v live=%v", sb("done2"), sb("live"))
	}
}

// TestGCKeepFollowsDiskUse: Mesos's rule, gc_delay * max(0, 1 -
// headroom - disk use).
func TestGCKeepFollowsDiskUse(t *testing.T) {
	week := 7 * 24 * time.Hour
	for _, c := range []struct {
		headroom, used float64
		want           time.Duration
	}{
		{0.1, 0, week * 9 / 10},
		{0.1, 0.4, week / 2},
		{0.1, 0.9, 0},
		{0.1, 0.97, 0},
		{0, 0.5, week / 2},
	} {
		got := gcKeep(week, c.headroom, c.used)
		if d := got - c.want; d < -time.Second || d > time.Second {
			t.Errorf("headroom %g used %g: keep %s, want %s", c.headroom, c.used, got, c.want)
		}
	}
}

// TestSandboxGCByDiskUse: finished sandboxes are kept for the gc delay
// while the disk has room, and go at the next collection once the disk
// fills past the headroom; a running task's sandbox stays.
func TestSandboxGCByDiskUse(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	cfg.GCInterval = 20 * time.Millisecond
	cfg.SandboxKeep = time.Hour
	cfg.GCDiskHeadroom = 0.1
	var mu sync.Mutex
	used := 0.2
	cfg.DiskUsage = func(string) (float64, error) {
		mu.Lock()
		defer mu.Unlock()
		return used, nil
	}
	a, _ := startAgent(t, cfg)
	m.set(shTask("done", `echo kept`))
	waitState(t, m, "done", api.TaskFinished)
	m.set(shTask("live", `exec sleep 1000`))
	pidOf(t, a, "live")
	sb := func(id string) bool { _, err := os.Stat(filepath.Join(dir, "sandboxes", id)); return err == nil }
	time.Sleep(200 * time.Millisecond) // ten collections
	if !sb("done") {
		t.Fatal("a finished sandbox went with the disk 20% full and an hour to keep it")
	}
	mu.Lock()
	used = 0.95
	mu.Unlock()
	eventually(t, 5*time.Second, "finished sandbox removed with the disk 95% full", func() bool { return !sb("done") })
	if !sb("live") {
		t.Error("the running task's sandbox was removed")
	}
}

func TestCoalesce(t *testing.T) {
	ts := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	yes := true
	var q []queued
	add := func(seq uint64, id, state string, hc []api.HealthCheckResult, ready *bool) {
		q = coalesce(q, queued{seq: seq, st: api.TaskStatus{TaskID: id, State: state, HealthCheckResults: hc, Ready: ready, Timestamp: ts.Add(time.Duration(seq))}})
	}
	add(1, "a", api.TaskStarting, nil, nil)
	add(2, "a", api.TaskRunning, nil, nil)
	add(3, "b", api.TaskRunning, nil, nil)
	add(4, "a", api.TaskRunning, []api.HealthCheckResult{{Alive: true}}, nil) // merges into 2: a's last pending update
	add(5, "a", api.TaskRunning, nil, &yes)                                   // and again
	add(6, "a", api.TaskFinished, nil, nil)
	add(7, "a", api.TaskFinished, nil, nil) // terminal updates never merge
	var got []string
	for _, u := range q {
		got = append(got, u.st.TaskID+":"+u.st.State)
	}
	want := []string{"a:TASK_STARTING", "a:TASK_RUNNING", "b:TASK_RUNNING", "a:TASK_FINISHED", "a:TASK_FINISHED"}
	if !slices.Equal(got, want) {
		t.Fatalf("queue %v\nwant  %v", got, want)
	}
	// The merged update carries both the health results and readiness,
	// with the newest seq (so a post under way does not remove it).
	if m := q[1]; m.seq != 5 || len(m.st.HealthCheckResults) != 1 || m.st.Ready == nil {
		t.Errorf("merged update %+v", m)
	}
}

func TestBuildEnv(t *testing.T) {
	asg := api.Assignment{Task: api.Task{ID: "app.1"}, Spec: api.TaskSpec{Env: map[string]string{"PORT0": "31000", "HOST": "spoofed", "PATH": "/opt/bin"}}}
	env := buildEnv(asg, "/sb", "10.0.0.5", "10.0.0.5:5051", func(k string) string {
		return map[string]string{"PATH": "/usr/bin", "LANG": "C.UTF-8", "SECRET": "x"}[k]
	})
	want := map[string]string{
		"PORT0": "31000", "HOST": "10.0.0.5", "PATH": "/opt/bin", "LANG": "C.UTF-8",
		"MESOS_SANDBOX": "/sb", "MESOS_DIRECTORY": "/sb", "MESOS_AGENT_ENDPOINT": "10.0.0.5:5051", "MESOS_TASK_ID": "app.1",
	}
	if len(env) != len(want) {
		t.Errorf("env %v\nwant %v", env, want)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

func TestAgentAPI(t *testing.T) {
	m := newFakeMaster(t)
	a, _ := startAgent(t, testConfig(t, m, t.TempDir()))
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	m.set(shTask("logs", `printf '0123456789'; echo err >&2; exec sleep 1000`))
	pid := pidOf(t, a, "logs")
	eventually(t, 5*time.Second, "stdout written", func() bool {
		out, _ := os.ReadFile(filepath.Join(a.cfg.DataDir, "sandboxes", "logs", "stdout"))
		return len(out) == 10
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/v1/tasks")
	var tasks struct{ Tasks []TaskInfo }
	if err := json.Unmarshal([]byte(body), &tasks); code != 200 || err != nil || len(tasks.Tasks) != 1 {
		t.Fatalf("GET /v1/tasks: %d %s", code, body)
	}
	if ti := tasks.Tasks[0]; ti.Pid != pid || ti.State != api.TaskRunning || ti.Executor != "process" || !strings.HasSuffix(ti.Sandbox, "/logs") {
		t.Errorf("task info %+v", ti)
	}
	for path, want := range map[string]string{
		"/v1/sandbox/logs/stdout":                   "0123456789",
		"/v1/sandbox/logs/stdout?offset=2&length=3": "234",
		"/v1/sandbox/logs/stdout?offset=-4":         "6789",
		"/v1/sandbox/logs/stderr":                   "err\n",
	} {
		if code, body := get(path); code != 200 || body != want {
			t.Errorf("GET %s = %d %q, want %q", path, code, body, want)
		}
	}
	for _, path := range []string{"/v1/sandbox/logs/passwd", "/v1/sandbox/nope/stdout", "/v1/sandbox/../stdout"} {
		if code, _ := get(path); code < 400 {
			t.Errorf("GET %s = %d, want an error", path, code)
		}
	}
	// A read at the end with ?wait is held until the task writes more.
	sbFile := filepath.Join(a.cfg.DataDir, "sandboxes", "logs", "stdout")
	go func() {
		time.Sleep(300 * time.Millisecond)
		f, err := os.OpenFile(sbFile, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, _ = f.WriteString("AB")
			f.Close()
		}
	}()
	t0 := time.Now()
	if code, body := get("/v1/sandbox/logs/stdout?offset=10&wait=4000"); code != 200 || body != "AB" {
		t.Errorf("a waiting read = %d %q, want the 2 bytes written meanwhile", code, body)
	}
	if el := time.Since(t0); el < 250*time.Millisecond || el > 3*time.Second {
		t.Errorf("a waiting read answered after %v: it should have waited for the write (300 ms), not for wait", el)
	}
	t0 = time.Now()
	if code, body := get("/v1/sandbox/logs/stdout?offset=12&wait=200"); code != 200 || body != "" {
		t.Errorf("a waiting read with nothing new = %d %q, want 200 and nothing", code, body)
	}
	if el := time.Since(t0); el < 190*time.Millisecond {
		t.Errorf("a waiting read with nothing new answered after %v, before its wait (200 ms)", el)
	}
	if code, body := get("/v1/sandbox/logs/stdout?wait=soon"); code != 400 || !strings.Contains(body, "wait") {
		t.Errorf("a bad wait = %d %s, want 400 naming wait", code, body)
	}
	code, body = get("/v1/health")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); code != 200 || err != nil || h.ID != "agent-1" || h.Master != "reachable" || h.Tasks != 1 || !slices.Contains(h.Capabilities, "process") {
		t.Errorf("GET /v1/health: %d %s", code, body)
	}
}

// fakeExecutor is an executor whose backend can be down.
type fakeExecutor struct {
	name string
	down atomic.Pointer[error]
}

func (f *fakeExecutor) Name() string                   { return f.name }
func (f *fakeExecutor) Handles(spec api.TaskSpec) bool { return spec.Container != nil }
func (f *fakeExecutor) Start(ctx context.Context, l Launch) (Handle, error) {
	return nil, errors.New("fake")
}
func (f *fakeExecutor) Recover(ctx context.Context) (map[string]Handle, error)  { return nil, nil }
func (f *fakeExecutor) Cleanup(ctx context.Context, keep map[string]bool) error { return nil }
func (f *fakeExecutor) Available(ctx context.Context) error {
	if e := f.down.Load(); e != nil {
		return *e
	}
	return nil
}

func TestCapabilitiesFollowExecutorAvailability(t *testing.T) {
	m := newFakeMaster(t)
	dir := t.TempDir()
	pe, err := NewProcessExecutor(DefaultProcessConfig(filepath.Join(dir, "process")))
	if err != nil {
		t.Fatal(err)
	}
	fe := &fakeExecutor{name: "docker"}
	downErr := errors.New("cannot reach the Docker daemon at unix:///var/run/docker.sock")
	fe.down.Store(&downErr)
	cfg := testConfig(t, m, dir)
	cfg.Executors = []Executor{fe, pe}
	cfg.ProbeInterval = 20 * time.Millisecond
	var calls atomic.Int32
	cfg.OnCapabilities = func(caps, problems []string) { calls.Add(1) }
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	caps, problems := a.Capabilities()
	if !slices.Equal(caps, []string{"process"}) || len(problems) != 1 || !strings.HasPrefix(problems[0], "docker: cannot reach") {
		t.Fatalf("caps %v problems %v", caps, problems)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fe.down.Store(nil)
	eventually(t, 5*time.Second, "docker capability back", func() bool {
		caps, problems := a.Capabilities()
		return slices.Equal(caps, []string{"docker", "process"}) && len(problems) == 0
	})
	if calls.Load() < 2 {
		t.Errorf("OnCapabilities called %d times, want one per change", calls.Load())
	}
}
