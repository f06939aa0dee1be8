package sched

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// fakeSandboxes answers the agent API's GET /v1/sandbox/{task}/{file} with
// the same offset rules as the agent (negative offsets from the end).
type fakeSandboxes struct {
	mu    sync.Mutex
	files map[string]*strings.Builder // task + "/" + file
}

func (f *fakeSandboxes) write(task, file, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.files[task+"/"+file]
	if b == nil {
		b = &strings.Builder{}
		f.files[task+"/"+file] = b
	}
	b.WriteString(s)
}

func (f *fakeSandboxes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	b := f.files[r.PathValue("task")+"/"+r.PathValue("file")]
	var data string
	if b != nil {
		data = b.String()
	}
	f.mu.Unlock()
	if b == nil {
		http.Error(w, `{"message":"no sandbox"}`, http.StatusNotFound)
		return
	}
	size := int64(len(data))
	off, _ := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	n, _ := strconv.ParseInt(r.URL.Query().Get("length"), 10, 64)
	if off < 0 {
		off = max(size+off, 0)
	}
	off = min(off, size)
	n = min(n, size-off)
	w.Header().Set("X-Sandbox-File-Size", strconv.FormatInt(size, 10))
	w.Header().Set("X-Sandbox-Offset", strconv.FormatInt(off, 10))
	_, _ = io.WriteString(w, data[off:off+n])
}

func startLogsMaster(t *testing.T) (*testMaster, *fakeSandboxes) {
	t.Helper()
	fs := &fakeSandboxes{files: map[string]*strings.Builder{}}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/sandbox/{task}/{file}", fs)
	agentSrv := httptest.NewServer(mux)
	t.Cleanup(agentSrv.Close)
	n := agentNode("n1", 1, 1024)
	n.AgentAPI = strings.TrimPrefix(agentSrv.URL, "http://")
	old := logPoll
	logPoll = 20 * time.Millisecond
	t.Cleanup(func() { logPoll = old })
	return startMaster(t, NewStaticMembers(n)), fs
}

func putLogTask(t *testing.T, m *Master, id, appID, state string) {
	t.Helper()
	rec := &TaskRecord{Task: api.Task{ID: id, AppID: appID, SlaveID: "n1", State: state, Framework: "marathon"}, Goal: api.GoalRun}
	if _, err := m.Store().Apply(context.Background(), []Op{Put(TableTasks, id, rec)}); err != nil {
		t.Fatal(err)
	}
}

func readLogs(t *testing.T, c *api.Client, id, stream string, offset int64) (string, int) {
	t.Helper()
	rc, err := c.TaskLogs(context.Background(), id, stream, offset, false)
	if err != nil {
		return err.Error(), api.StatusCode(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), 200
}

func TestTaskLogsThroughMasterOffsets(t *testing.T) {
	tm, fs := startLogsMaster(t)
	putLogTask(t, tm.Master, "web.1", "/shop/web", api.TaskRunning)
	fs.write("web.1", "stdout", "hello\nworld\n")
	fs.write("web.1", "stderr", "oops\n")
	for _, c := range []struct {
		stream string
		offset int64
		want   string
	}{
		{"stdout", 0, "hello\nworld\n"},
		{"stdout", 6, "world\n"},
		{"stdout", -6, "world\n"},
		{"stdout", 100, ""},
		{"stderr", 0, "oops\n"},
	} {
		got, code := readLogs(t, tm.client, "web.1", c.stream, c.offset)
		if code != 200 || got != c.want {
			t.Errorf("%s from %d: %d %q, want %q", c.stream, c.offset, code, got, c.want)
		}
	}
	// More than one agent read (1 MiB each) comes back whole.
	big := strings.Repeat("0123456789abcde\n", 3<<16)
	fs.write("web.1", "stdout", big)
	if got, code := readLogs(t, tm.client, "web.1", "stdout", 12); code != 200 || got != big {
		t.Errorf("3 MiB log: %d, %d bytes, want %d", code, len(got), len(big))
	}
	for _, c := range []struct {
		path string
		code int
		msg  string
	}{
		{"/v1/tasks/web.1/logs?stream=stdin", 400, "stream must be stdout or stderr"},
		{"/v1/tasks/web.1/logs?offset=x", 400, "offset must be an integer"},
		{"/v1/tasks/web.1/logs?follow=maybe", 400, "follow must be true or false"},
		{"/v1/tasks/nope.1/logs", 404, "no task nope.1"},
	} {
		resp, err := http.Get(tm.srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(b), c.msg) {
			t.Errorf("GET %s: %d %s, want %d %q", c.path, resp.StatusCode, b, c.code, c.msg)
		}
	}
	// A task whose agent holds no sandbox (already collected) is a 404.
	putLogTask(t, tm.Master, "web.2", "/shop/web", api.TaskRunning)
	if got, code := readLogs(t, tm.client, "web.2", "stdout", 0); code != 404 || !strings.Contains(got, "no agent holds the sandbox") {
		t.Errorf("collected sandbox: %d %s", code, got)
	}
}

func TestTaskLogsFollowEndsWhenTaskIsDone(t *testing.T) {
	tm, fs := startLogsMaster(t)
	putLogTask(t, tm.Master, "job.1", "/etl/load", api.TaskRunning)
	fs.write("job.1", "stdout", "line 1\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := tm.client.TaskLogs(ctx, "job.1", "stdout", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string, 100)
	ended := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			lines <- sc.Text()
		}
		ended <- sc.Err()
	}()
	want := func(line string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != line {
				t.Fatalf("got %q, want %q", got, line)
			}
		case <-ctx.Done():
			t.Fatalf("no %q while following", line)
		}
	}
	want("line 1")
	// Written after the follow started: it arrives while the task runs.
	fs.write("job.1", "stdout", "line 2\n")
	want("line 2")
	select {
	case err := <-ended:
		t.Fatalf("follow ended while the task runs: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The last words and the end of the task: everything, then the end.
	fs.write("job.1", "stdout", "line 3\n")
	putLogTask(t, tm.Master, "job.1", "/etl/load", api.TaskFinished)
	want("line 3")
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("follow ended with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("follow did not end after the task finished")
	}
}

func TestTaskLogsFinishedChronosRun(t *testing.T) {
	tm, fs := startLogsMaster(t)
	run := &api.JobRun{ID: "nightly:1", Job: "nightly", State: "succeeded", TaskID: "ct:nightly:1"}
	if _, err := tm.Store().Apply(context.Background(), []Op{Put(TableJobRuns, run.ID, run)}); err != nil {
		t.Fatal(err)
	}
	fs.write("ct:nightly:1", "stdout", "done\n")
	if got, code := readLogs(t, tm.client, "ct:nightly:1", "stdout", 0); code != 200 || got != "done\n" {
		t.Fatalf("finished run: %d %q", code, got)
	}
	// Following a finished run reads to the end and stops.
	rc, err := tm.client.TaskLogs(context.Background(), "ct:nightly:1", "stdout", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "done\n" {
		t.Fatalf("follow of a finished run: %q %v", b, err)
	}
}

func TestTaskLogsACLIsAReadOfTheApp(t *testing.T) {
	tm, fs := startLogsMaster(t)
	ctx := context.Background()
	putLogTask(t, tm.Master, "a.1", "/team-a/web", api.TaskRunning)
	putLogTask(t, tm.Master, "b.1", "/team-b/web", api.TaskRunning)
	fs.write("a.1", "stdout", "a\n")
	fs.write("b.1", "stdout", "b\n")
	boot, err := tm.client.ACLBootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mgmt := api.NewClient(tm.srv.URL)
	mgmt.Token = boot.SecretID
	if _, err := mgmt.ACLPolicyApply(ctx, "ro", strings.NewReader("apps:\n  /team-a/*: read\n")); err != nil {
		t.Fatal(err)
	}
	tok, err := mgmt.ACLTokenCreate(ctx, api.ACLTokenCreate{Name: "reader", Policies: []string{"ro"}})
	if err != nil {
		t.Fatal(err)
	}
	reader := api.NewClient(tm.srv.URL)
	reader.Token = tok.SecretID
	if got, code := readLogs(t, reader, "a.1", "stdout", 0); code != 200 || got != "a\n" {
		t.Errorf("read token on its app: %d %q", code, got)
	}
	if got, code := readLogs(t, reader, "b.1", "stdout", 0); code != 403 || !strings.Contains(got, "/team-b/web") {
		t.Errorf("read token on another app: %d %q, want 403", code, got)
	}
	if _, code := readLogs(t, tm.client, "a.1", "stdout", 0); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
}
