package chronos

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// fakeAgent runs no processes: it follows its assignments through the real
// agent API and reports each task running, then finished — or failed when
// the command contains "fail" — after hold.
type fakeAgent struct {
	id   string
	cur  atomic.Pointer[api.Client] // the master it talks to (swapped on restart)
	hold time.Duration

	mu       sync.Mutex
	launched map[string]time.Time
}

// post reports a status until some master takes it.
func (a *fakeAgent) post(ctx context.Context, id, state string) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := a.cur.Load().PostStatus(cctx, a.id, []api.TaskStatus{{TaskID: id, State: state, Timestamp: time.Now()}})
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *fakeAgent) run(ctx context.Context) {
	a.mu.Lock()
	a.launched = map[string]time.Time{}
	a.mu.Unlock()
	var idx uint64
	done := map[string]bool{}
	for ctx.Err() == nil {
		c := a.cur.Load()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		as, err := c.Assignments(cctx, a.id, idx, time.Second)
		cancel()
		if err != nil {
			idx = 0
			time.Sleep(20 * time.Millisecond)
			continue
		}
		idx = as.Index
		for _, t := range as.Tasks {
			id := t.Task.ID
			if done[id] || api.Terminal(t.Task.State) {
				continue
			}
			done[id] = true
			a.mu.Lock()
			a.launched[id] = time.Now()
			a.mu.Unlock()
			final := api.TaskFinished
			if t.Spec.Cmd != nil && strings.Contains(*t.Spec.Cmd, "fail") {
				final = api.TaskFailed
			}
			if t.Goal == api.GoalKill {
				final = api.TaskKilled
			}
			go func(id, final string) {
				a.post(ctx, id, api.TaskRunning)
				select {
				case <-time.After(a.hold):
				case <-ctx.Done():
					return
				}
				a.post(ctx, id, final)
			}(id, final)
		}
	}
}

var agentNode = api.Node{ID: "agent-1", Name: "agent-1", Role: api.RoleAgent, Site: "home",
	Status: "alive", Address: "127.0.0.1", Resources: api.Resources{Cpus: 8, Mem: 16384, Disk: 100000}}

type realMaster struct {
	m      *sched.Master
	client *api.Client
	f      *Framework
	stop   func()
}

// runMaster starts a real master (store in dir; "" is in memory) with the
// chronos framework behind an httptest server.
func runMaster(t *testing.T, dir string, cfg Config) *realMaster {
	t.Helper()
	f := New(cfg)
	mc := sched.DefaultMasterConfig()
	mc.Store.Dir = dir
	mc.Members = sched.NewStaticMembers(agentNode)
	mc.Frameworks = []sched.Framework{f}
	mc.AllocInterval = 100 * time.Millisecond
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			srv.CloseClientConnections()
			srv.Close()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("master did not stop")
			}
		})
	}
	t.Cleanup(stop)
	eventually(t, 5*time.Second, "the master leads", func() bool { return m.Store().IsLeader() })
	return &realMaster{m: m, client: api.NewClient(srv.URL), f: f, stop: stop}
}

func startAgent(t *testing.T, c *api.Client, hold time.Duration) *fakeAgent {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ag := &fakeAgent{id: agentNode.ID, hold: hold}
	ag.cur.Store(c)
	go ag.run(ctx)
	return ag
}

func startRealMaster(t *testing.T, cfg Config) (*sched.Master, *api.Client, *Framework) {
	rm := runMaster(t, "", cfg)
	startAgent(t, rm.client, 50*time.Millisecond)
	return rm.m, rm.client, rm.f
}

func TestRealMasterChainAndRetries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FailureRetry = 100 * time.Millisecond
	m, c, f := startRealMaster(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, j := range []api.Job{
		{Name: "extract", Command: "echo extract", Shell: true, Schedule: "R//PT24H"},
		{Name: "transform", Command: "echo transform", Shell: true, Parents: []string{"extract"}},
		{Name: "load", Command: "echo load", Shell: true, Parents: []string{"transform"}},
		{Name: "flaky", Command: "fail please", Shell: true, Schedule: "R1//PT1H", Retries: 2},
	} {
		path := "/v1/scheduler/iso8601"
		if len(j.Parents) > 0 {
			path = "/v1/scheduler/dependency"
		}
		if _, err := c.Do(ctx, "POST", path, j, nil); err != nil {
			t.Fatalf("submitting %s: %v", j.Name, err)
		}
	}
	eventually(t, 15*time.Second, "the chain extract → transform → load completes", func() bool {
		e, ok := m.Store().Get(sched.TableJobs, "load")
		return ok && e.Value.(*api.Job).SuccessCount == 1
	})
	eventually(t, 15*time.Second, "flaky fails for good after 3 attempts", func() bool {
		e, _ := m.Store().Get(sched.TableJobs, "flaky")
		return e.Value.(*api.Job).ErrorCount == 1
	})
	runs := f.Runs("flaky")
	if len(runs) != 1 || runs[0].Attempt != 3 || runs[0].State != RunFailed {
		t.Fatalf("flaky ledger %+v", runs)
	}
	for _, name := range []string{"extract", "transform", "load"} {
		if runs := f.Runs(name); len(runs) != 1 || runs[0].State != RunSucceeded {
			t.Fatalf("%s ledger %+v", name, runs)
		}
	}
	// The history is served through the API client.
	var hist []api.JobRun
	if _, err := c.Do(ctx, "GET", "/scheduler/job/runs/load", nil, &hist); err != nil || len(hist) != 1 {
		t.Fatalf("history %v %v", hist, err)
	}
}

func TestRealMasterRestartMidRun(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	rm := runMaster(t, dir, cfg)
	ag := startAgent(t, rm.client, 1500*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := rm.client.Do(ctx, "POST", "/scheduler/iso8601", api.Job{Name: "nightly", Command: "echo run", Shell: true, Schedule: "R//PT24H"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.client.Do(ctx, "POST", "/scheduler/dependency", api.Job{Name: "after", Command: "echo after", Shell: true, Parents: []string{"nightly"}}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "nightly runs", func() bool {
		r := rm.f.Runs("nightly")
		if len(r) != 1 || r[0].State != RunRunning {
			return false
		}
		e, ok := rm.m.Store().Get(sched.TableTasks, r[0].TaskID)
		return ok && e.Value.(*sched.TaskRecord).Task.State == api.TaskRunning
	})
	rm.stop() // the master dies with the run in flight

	rm2 := runMaster(t, dir, cfg)
	ag.cur.Store(rm2.client)
	eventually(t, 15*time.Second, "the dependant runs after the restart", func() bool {
		e, ok := rm2.m.Store().Get(sched.TableJobs, "after")
		return ok && e.Value.(*api.Job).SuccessCount == 1
	})
	time.Sleep(300 * time.Millisecond) // let any duplicate show itself
	if r := rm2.f.Runs("nightly"); len(r) != 1 || r[0].State != RunSucceeded || r[0].Attempt != 1 {
		t.Fatalf("nightly ledger %+v", r)
	}
	e, _ := rm2.m.Store().Get(sched.TableJobs, "nightly")
	if j := e.Value.(*api.Job); j.SuccessCount != 1 || j.ErrorCount != 0 {
		t.Fatalf("nightly counters %+v", j)
	}
	ag.mu.Lock()
	n := len(ag.launched)
	ag.mu.Unlock()
	if n != 2 {
		t.Fatalf("the agent was handed %d tasks, want 2 (nightly once, after once)", n)
	}
}
