package sched

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// testFramework launches tasks on the offers it gets until it has launched
// want tasks; it records every offer round.
type testFramework struct {
	name      string
	cpus, mem float64
	ports     int    // host ports per task
	prefix    string // task id prefix, for frameworks of several masters

	running atomic.Int32 // Run calls in progress

	mu        sync.Mutex
	want      int
	seq       int
	decline   bool
	refuseFor time.Duration
	rounds    [][]api.Offer
}

func (f *testFramework) Name() string { return f.name }
func (f *testFramework) Run(ctx context.Context, m MasterHandle) error {
	f.running.Add(1)
	defer f.running.Add(-1)
	<-ctx.Done()
	return nil
}
func (f *testFramework) Routes(mux *http.ServeMux, m MasterHandle) {}

func (f *testFramework) Wants() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.want > 0
}

func (f *testFramework) add(n int) {
	f.mu.Lock()
	f.want += n
	f.mu.Unlock()
}

func (f *testFramework) offerRounds() [][]api.Offer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]api.Offer(nil), f.rounds...)
}

func (f *testFramework) ResourceOffers(ctx context.Context, offers []api.Offer) OfferResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rounds = append(f.rounds, offers)
	var res OfferResult
	for _, o := range offers {
		if f.decline {
			res.Declines = append(res.Declines, Decline{OfferID: o.ID, RefuseFor: f.refuseFor, Reasons: []string{"InsufficientCpus"}})
			continue
		}
		left := o.Resources
		var free []int
		for _, r := range o.Resources.Ports {
			for p := r.Begin; p <= r.End; p++ {
				free = append(free, p)
			}
		}
		launched := false
		for f.want > 0 && left.Cpus >= f.cpus-eps && left.Mem >= f.mem-eps && len(free) >= f.ports {
			f.seq++
			f.want--
			id := fmt.Sprintf("%s%s.t%d", f.prefix, f.name, f.seq)
			res.Launches = append(res.Launches, Launch{OfferID: o.ID, Task: TaskRecord{
				Task: api.Task{ID: id, AppID: "/" + f.name, Version: "2026-11-22T03:00:00.000Z"},
				Spec: api.TaskSpec{Resources: api.Resources{Cpus: f.cpus, Mem: f.mem}, Ports: append([]int(nil), free[:f.ports]...)},
			}})
			free = free[f.ports:]
			left.Cpus -= f.cpus
			left.Mem -= f.mem
			launched = true
		}
		if !launched {
			res.Declines = append(res.Declines, Decline{OfferID: o.ID, RefuseFor: f.refuseFor})
		}
	}
	return res
}

func agentNode(id string, cpus, mem float64) api.Node {
	return api.Node{
		ID: id, Name: id, Role: api.RoleAgent, Status: NodeAlive, Site: "site-" + id,
		Address:   "127.0.0.1",
		Resources: api.Resources{Cpus: cpus, Mem: mem, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31099}}},
	}
}

type testMaster struct {
	*Master
	members *StaticMembers
	srv     *httptest.Server
	client  *api.Client
	cancel  context.CancelFunc
}

// startMaster runs a master with an in-memory store behind an httptest
// server and waits until it leads.
func startMaster(t *testing.T, members *StaticMembers, fws ...Framework) *testMaster {
	t.Helper()
	return startMasterWith(t, members, nil, fws...)
}

// startMasterWith is startMaster with a chance to change the config.
func startMasterWith(t *testing.T, members *StaticMembers, tweak func(*MasterConfig), fws ...Framework) *testMaster {
	t.Helper()
	cfg := DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = members
	cfg.Frameworks = fws
	cfg.AllocInterval = 50 * time.Millisecond
	cfg.KeepAlive = 200 * time.Millisecond
	srv := httptest.NewUnstartedServer(nil)
	cfg.APIAdvertise = srv.Listener.Addr().String()
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := NewMaster(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = m.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	tm := &testMaster{Master: m, members: members, srv: srv, client: api.NewClient(srv.URL), cancel: cancel}
	t.Cleanup(func() {
		cancel()
		srv.CloseClientConnections()
		srv.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("master did not stop")
		}
	})
	eventually(t, 5*time.Second, "master leads", func() bool { return m.Store().IsLeader() })
	return tm
}

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

func tasksOf(s *Store) map[string]*TaskRecord {
	out := map[string]*TaskRecord{}
	for _, e := range s.List(TableTasks) {
		out[e.Key] = e.Value.(*TaskRecord)
	}
	return out
}
