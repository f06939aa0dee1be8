package marathon

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeAgent plays an agent against the real master's API: it reports
// every assigned task RUNNING and every task to kill KILLED.
type fakeAgent struct {
	id     string
	client *api.Client
	fail   chan string // task ids to report FAILED
}

func (a *fakeAgent) run(ctx context.Context) {
	var idx uint64
	reported := map[string]string{}
	for ctx.Err() == nil {
		as, err := a.client.Assignments(ctx, a.id, idx, 200*time.Millisecond)
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
	drain:
		for {
			select {
			case id := <-a.fail:
				reported[id] = api.TaskFailed
				one := 1
				ups = append(ups, api.TaskStatus{TaskID: id, State: api.TaskFailed, Message: "exit 1", ExitStatus: &one, Timestamp: time.Now()})
			default:
				break drain
			}
		}
		if len(ups) > 0 {
			_ = a.client.PostStatus(ctx, a.id, ups)
		}
	}
}

// serveMaster runs a master of cfg behind an HTTP test server until the
// test ends, and returns once it leads: the context it runs under and its
// API's URL.
func serveMaster(t *testing.T, cfg sched.MasterConfig) (context.Context, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg.APIAdvertise = srv.Listener.Addr().String()
	m, err := sched.NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = m.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
		<-done
	})
	eventually(t, 5*time.Second, "master leads", func() bool { return m.Store().IsLeader() })
	return ctx, srv.URL
}

// TestOnRealMaster runs the framework inside the real master and
// allocator, with a simulated agent: PUT → RUNNING, scale to 3, a failed
// task replaced, restart, delete.
func TestOnRealMaster(t *testing.T) {
	node := api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Status: "alive", Site: "home", Address: "127.0.0.1",
		Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}}}
	members := sched.NewStaticMembers(node)
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = members
	mcfg := DefaultConfig()
	mcfg.Tick = 50 * time.Millisecond
	mcfg.RefuseFor = 50 * time.Millisecond
	fw := New(mcfg)
	cfg.Frameworks = []sched.Framework{fw}
	cfg.AllocInterval = 50 * time.Millisecond
	cfg.RefuseDefault = 50 * time.Millisecond
	ctx, url := serveMaster(t, cfg)
	c := api.NewClient(url)
	agent := &fakeAgent{id: "agent-1", client: c, fail: make(chan string, 4)}
	go agent.run(ctx)

	events, err := c.Events(ctx, api.EventDeploymentSuccess)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.PutApp(ctx, "/ssk2/whereisbot", []byte(`{"cmd":"sleep 1000","cpus":0.1,"mem":32}`), false)
	if err != nil {
		t.Fatal(err)
	}
	waitDeployment := func(id string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Type == api.EventDeploymentSuccess && strings.Contains(string(ev.Data), id) {
					return
				}
			case <-timeout:
				t.Fatalf("deployment %s did not succeed", id)
			}
		}
	}
	waitDeployment(res.DeploymentID)
	running := func(n int) func() bool {
		return func() bool {
			a, err := c.App(ctx, "/ssk2/whereisbot")
			return err == nil && a.TasksRunning == n && len(a.Tasks) == n
		}
	}
	eventually(t, 5*time.Second, "1 task running", running(1))

	res, err = c.PutApp(ctx, "/ssk2/whereisbot", []byte(`{"instances":3}`), false)
	if err != nil {
		t.Fatal(err)
	}
	waitDeployment(res.DeploymentID)
	eventually(t, 5*time.Second, "3 tasks running", running(3))

	a, _ := c.App(ctx, "/ssk2/whereisbot")
	victim := a.Tasks[0].ID
	agent.fail <- victim
	eventually(t, 10*time.Second, "failed task replaced", func() bool {
		a, err := c.App(ctx, "/ssk2/whereisbot")
		if err != nil || a.TasksRunning != 3 || a.LastTaskFailure == nil || a.LastTaskFailure.TaskID != victim {
			return false
		}
		for _, t := range a.Tasks {
			if t.ID == victim {
				return false
			}
		}
		return true
	})

	var rr api.DeploymentResult
	if _, err := c.Do(ctx, "POST", "/v2/apps/ssk2/whereisbot/restart", nil, &rr); err != nil {
		t.Fatal(err)
	}
	waitDeployment(rr.DeploymentID)
	eventually(t, 5*time.Second, "3 new tasks after restart", running(3))

	dr, err := c.DeleteApp(ctx, "/ssk2/whereisbot", false)
	if err != nil {
		t.Fatal(err)
	}
	waitDeployment(dr.DeploymentID)
	if _, err := c.App(ctx, "/ssk2/whereisbot"); api.StatusCode(err) != 404 {
		t.Fatalf("deleted app: %v", err)
	}
}
