package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/marathon"
)

// runTestAgent reports every task assigned to agentID RUNNING, and KILLED
// once it should be killed, through the master's agent API.
func runTestAgent(ctx context.Context, c *api.Client, agentID string) {
	var idx uint64
	reported := map[string]string{}
	for ctx.Err() == nil {
		as, err := c.Assignments(ctx, agentID, idx, 200*time.Millisecond)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		idx = as.Index
		var ups []api.TaskStatus
		for _, t := range as.Tasks {
			want := api.TaskRunning
			if t.Goal == api.GoalKill {
				want = api.TaskKilled
			}
			if reported[t.Task.ID] != want && !api.Terminal(t.Task.State) {
				reported[t.Task.ID] = want
				ups = append(ups, api.TaskStatus{TaskID: t.Task.ID, State: want, Timestamp: time.Now()})
			}
		}
		if len(ups) > 0 {
			_ = c.PostStatus(ctx, agentID, ups)
		}
	}
}

// cliMaster is a real master with the marathon framework on an httptest
// server, one simulated agent node, and the CLI run in-process against it.
type cliMaster struct {
	url  string
	ctx  context.Context
	weft func(args ...string) (string, error)
}

func startCLIMaster(t *testing.T) *cliMaster {
	t.Helper()
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 2, Mem: 2048, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	mc := sched.DefaultMasterConfig()
	mc.Store.Dir = ""
	mc.Members = sched.NewStaticMembers(node)
	mcfg := marathon.DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	mcfg.RefuseFor = 50 * time.Millisecond
	mc.Frameworks = []sched.Framework{marathon.New(mcfg)}
	mc.AllocInterval = 50 * time.Millisecond
	mc.RefuseDefault = 50 * time.Millisecond
	srv := httptest.NewUnstartedServer(nil)
	mc.APIAdvertise = srv.Listener.Addr().String()
	m, err := sched.NewMaster(mc)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = m.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); srv.CloseClientConnections(); srv.Close(); <-done })
	for deadline := time.Now().Add(5 * time.Second); !m.Store().IsLeader(); {
		if time.Now().After(deadline) {
			t.Fatal("master never led")
		}
		time.Sleep(10 * time.Millisecond)
	}
	weft := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := newApp()
		app.Writer, app.ErrWriter = &out, &out
		err := app.RunContext(context.Background(), append([]string{"weft", "--api", srv.URL}, args...))
		return out.String(), err
	}
	return &cliMaster{url: srv.URL, ctx: ctx, weft: weft}
}

// TestAppCommands runs `weft app ...` and `weft deployment ...` in-process
// against a real master with the marathon framework and a simulated agent.
func TestAppCommands(t *testing.T) {
	cm := startCLIMaster(t)
	ctx, weft := cm.ctx, cm.weft
	srv := struct{ URL string }{cm.url}
	dir := t.TempDir()
	file := filepath.Join(dir, "marathon.json")
	os.WriteFile(file, []byte(`{"id":"/ssk2/whereisbot","cmd":"sleep 1000","cpus":0.25,"mem":64,"instances":1}`), 0o644)

	// Nothing runs yet: the app waits, visibly.
	out, err := weft("app", "add", file)
	if err != nil || !strings.Contains(out, "created /ssk2/whereisbot: deployment ") {
		t.Fatalf("add: %v\n%s", err, out)
	}
	depID := regexp.MustCompile(`deployment ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	out, err = weft("deployment", "list")
	if err != nil || !strings.Contains(out, depID) || !strings.Contains(out, "StartApplication /ssk2/whereisbot") {
		t.Fatalf("deployment list: %v\n%s", err, out)
	}
	actx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	go runTestAgent(actx, api.NewClient(srv.URL), "agent-1")
	if out, err := weft("deployment", "watch", "--timeout", "10s", depID); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch: %v\n%s", err, out)
	}
	out, err = weft("app", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "MEMORY", "CPUS", "TASKS/INSTANCES", "HEALTH", "STATUS", "/ssk2/whereisbot", "64 MiB", "0.25", "1/1", "Running"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
	out, err = weft("app", "scale", "/ssk2/whereisbot", "3")
	if err != nil {
		t.Fatalf("scale: %v\n%s", err, out)
	}
	depID = regexp.MustCompile(`deployment ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	if out, err := weft("deployment", "watch", depID); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch scale: %v\n%s", err, out)
	}
	out, err = weft("app", "tasks", "ssk2/whereisbot")
	if err != nil || strings.Count(out, "ssk2_whereisbot.") != 3 || !strings.Contains(out, "RUNNING") {
		t.Fatalf("tasks: %v\n%s", err, out)
	}
	if out, err := weft("app", "show", "/ssk2/whereisbot"); err != nil || !strings.Contains(out, `"tasksRunning": 3`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, err := weft("app", "restart", "/ssk2/whereisbot"); err != nil || !strings.Contains(out, "restarting") {
		t.Fatalf("restart: %v\n%s", err, out)
	}

	// Errors carry Marathon's message and the JSON path.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"id":"/Bad_ID","cmd":"x"}`), 0o644)
	if _, err := weft("app", "add", bad); err == nil || !strings.Contains(err.Error(), "Object is not valid; /id: must fully match") {
		t.Fatalf("bad id error: %v", err)
	}
	os.WriteFile(bad, []byte(`{"id":"/x","cmd":"x","cpus":"many"}`), 0o644)
	if _, err := weft("app", "add", bad); err == nil || !strings.Contains(err.Error(), "Invalid JSON; /cpus: error.expected.jsnumber") {
		t.Fatalf("bad type error: %v", err)
	}
	if _, err := weft("app", "show", "/nope"); err == nil || !strings.Contains(err.Error(), "App '/nope' does not exist") {
		t.Fatalf("unknown app error: %v", err)
	}

	// A deployment that is stopped makes watch fail with exit code 1.
	os.WriteFile(bad, []byte(`{"id":"/huge","cmd":"x","cpus":64}`), 0o644)
	out, err = weft("app", "add", bad)
	if err != nil {
		t.Fatalf("add huge: %v\n%s", err, out)
	}
	hugeDep := regexp.MustCompile(`deployment ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	watchErr := make(chan error, 1)
	go func() {
		_, err := weft("deployment", "watch", "--timeout", "10s", hugeDep)
		watchErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let watch attach its event stream (a failure is then seen as an event)
	if _, err := api.NewClient(srv.URL).Do(ctx, "DELETE", "/v2/deployments/"+hugeDep+"?force=true", nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watchErr:
		if err == nil || !strings.Contains(err.Error(), "failed: stopped by DELETE") {
			t.Fatalf("watch of a stopped deployment: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end")
	}

	out, err = weft("app", "remove", "--force", "/ssk2/whereisbot")
	if err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	depID = regexp.MustCompile(`deployment ([0-9a-f-]{36})`).FindStringSubmatch(out)[1]
	if out, err := weft("deployment", "watch", "--timeout", "10s", depID); err != nil || !strings.Contains(out, "succeeded") {
		t.Fatalf("watch remove: %v\n%s", err, out)
	}
	if out, _ := weft("app", "list"); strings.Contains(out, "whereisbot") {
		t.Fatalf("removed app still listed:\n%s", out)
	}
}
