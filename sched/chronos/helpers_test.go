package chronos

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeMaster is the slice of the master a framework sees.
type fakeMaster struct {
	store   *sched.Store
	now     func() time.Time
	revives atomic.Int64
}

func (m *fakeMaster) Store() *sched.Store { return m.store }
func (m *fakeMaster) Revive()             { m.revives.Add(1) }
func (m *fakeMaster) Nodes() []api.Node   { return nil }
func (m *fakeMaster) Now() time.Time      { return m.now() }
func (m *fakeMaster) Logger(c string) sched.Logger {
	return slog.New(slog.DiscardHandler).With("component", c)
}

func openStore(t *testing.T) *sched.Store {
	t.Helper()
	s, err := sched.OpenStore(sched.DefaultStoreConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// The single voter may need a moment to accept writes.
	for i := 0; ; i++ {
		if _, err := s.Apply(ctx, []sched.Op{sched.Put(sched.TableMeta, "probe", json.RawMessage(`1`))}); err == nil {
			break
		} else if i > 200 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// env is a framework over a real in-memory store with a fake clock.
type env struct {
	t     *testing.T
	clk   *clock
	store *sched.Store
	m     *fakeMaster
	f     *Framework
	mux   *http.ServeMux
	srv   *httptest.Server
}

func testConfig(clk *clock) Config {
	cfg := DefaultConfig()
	cfg.Now = clk.Now
	return cfg
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)}
	s := openStore(t)
	return newEnvOn(t, s, clk, testConfig(clk))
}

// newEnvOn starts a framework over an existing store: a "restarted master".
func newEnvOn(t *testing.T, s *sched.Store, clk *clock, cfg Config) *env {
	e := &env{t: t, clk: clk, store: s, m: &fakeMaster{store: s, now: clk.Now}}
	e.f = New(cfg)
	e.mux = http.NewServeMux()
	e.f.Routes(e.mux, e.m)
	e.srv = httptest.NewServer(e.mux)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// settle runs passes until one writes nothing.
func (e *env) settle() {
	e.t.Helper()
	for i := 0; i < 20; i++ {
		before := e.store.Index()
		if _, err := e.f.step(e.ctx()); err != nil {
			e.t.Fatalf("step: %v", err)
		}
		if e.store.Index() == before {
			return
		}
	}
	e.t.Fatal("the framework never settled")
}

func offer(id string) api.Offer {
	return api.Offer{ID: "o-" + id, AgentID: id, Hostname: id + ".example", Site: "home",
		Resources: api.Resources{Cpus: 4, Mem: 4096, Disk: 10000}}
}

// allocate offers resources and commits the launches the way the
// allocator does. It returns the launched task ids.
func (e *env) allocate(offers ...api.Offer) []string {
	e.t.Helper()
	if len(offers) == 0 {
		offers = []api.Offer{offer("a1")}
	}
	res := e.f.ResourceOffers(e.ctx(), offers)
	byID := map[string]api.Offer{}
	for _, o := range offers {
		byID[o.ID] = o
	}
	ops := append([]sched.Op{}, res.Ops...)
	var ids []string
	for _, l := range res.Launches {
		tr := l.Task
		o := byID[l.OfferID]
		tr.Task.SlaveID, tr.Task.Host, tr.Task.Site = o.AgentID, o.Hostname, o.Site
		tr.Task.State, tr.Task.StagedAt, tr.Goal = api.TaskStaging, api.Timestamp(e.clk.Now()), api.GoalRun
		ops = append(ops, sched.Put(sched.TableTasks, tr.Task.ID, &tr))
		ids = append(ids, tr.Task.ID)
	}
	if len(ops) > 0 {
		if _, err := e.store.Apply(e.ctx(), ops, res.Events...); err != nil {
			e.t.Fatalf("committing launches: %v", err)
		}
	}
	return ids
}

// setTask is an agent's status update.
func (e *env) setTask(id, state string) {
	e.t.Helper()
	ent, ok := e.store.Get(sched.TableTasks, id)
	if !ok {
		e.t.Fatalf("task %s not found", id)
	}
	tr := *ent.Value.(*sched.TaskRecord)
	tr.Task.State = state
	if _, err := e.store.Apply(e.ctx(), []sched.Op{sched.Put(sched.TableTasks, id, &tr)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) task(id string) (sched.TaskRecord, bool) {
	ent, ok := e.store.Get(sched.TableTasks, id)
	if !ok {
		return sched.TaskRecord{}, false
	}
	return *ent.Value.(*sched.TaskRecord), true
}

func (e *env) job(name string) api.Job {
	e.t.Helper()
	ent, ok := e.store.Get(sched.TableJobs, name)
	if !ok {
		e.t.Fatalf("job %s not found", name)
	}
	return *ent.Value.(*api.Job)
}

func (e *env) runs(name string) []api.JobRun { return e.f.Runs(name) }

func (e *env) states(name string) string {
	var s []string
	for _, r := range e.runs(name) {
		s = append(s, r.State)
	}
	return strings.Join(s, ",")
}

// do sends a request to the API and returns status and body.
func (e *env) do(method, path, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

func (e *env) mustDo(method, path, body string, want int) string {
	e.t.Helper()
	code, out := e.do(method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: got %d %s, want %d", method, path, code, out, want)
	}
	return out
}

// eventually retries cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
