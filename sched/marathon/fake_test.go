package marathon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// fakeMaster is a sched.MasterHandle over a real in-memory store, with a
// settable clock and node list.
type fakeMaster struct {
	st *sched.Store

	mu      sync.Mutex
	now     time.Time
	nodes   []api.Node
	revived int
}

func newFakeMaster(t *testing.T) *fakeMaster {
	t.Helper()
	st, err := sched.OpenStore(sched.DefaultStoreConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for !st.IsLeader() {
		time.Sleep(5 * time.Millisecond)
	}
	return &fakeMaster{st: st, now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
}

func (m *fakeMaster) Store() *sched.Store { return m.st }
func (m *fakeMaster) Revive() {
	m.mu.Lock()
	m.revived++
	m.mu.Unlock()
}
func (m *fakeMaster) Nodes() []api.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]api.Node(nil), m.nodes...)
}
func (m *fakeMaster) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}
func (m *fakeMaster) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}
func (m *fakeMaster) Logger(component string) sched.Logger {
	return slog.New(slog.DiscardHandler).With("component", component)
}

// testEnv is a framework with its fake master and an httptest server.
type testEnv struct {
	t  *testing.T
	m  *fakeMaster
	f  *Framework
	ts *httptest.Server
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	m := newFakeMaster(t)
	cfg := DefaultConfig()
	cfg.Now = m.Now
	f := New(cfg)
	ts := httptest.NewServer(f.Handler(m))
	t.Cleanup(ts.Close)
	return &testEnv{t: t, m: m, f: f, ts: ts}
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.Body, err)
	}
}

func (e *testEnv) do(method, path, body string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.ts.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{r.StatusCode, r.Header, b}
}

// offer builds an offer of an agent.
func offer(id, host string, cpus, mem float64, ports ...api.PortRange) api.Offer {
	if ports == nil {
		ports = []api.PortRange{{Begin: 31000, End: 31100}}
	}
	return api.Offer{ID: "o-" + id, AgentID: id, Hostname: host, Site: "site1", Role: "*",
		Resources: api.Resources{Cpus: cpus, Mem: mem, Disk: 1000, Ports: ports}}
}

// commit writes launches as the allocator does.
func (e *testEnv) commit(res sched.OfferResult, offers []api.Offer) []sched.TaskRecord {
	e.t.Helper()
	byID := map[string]api.Offer{}
	for _, o := range offers {
		byID[o.ID] = o
	}
	var ops []sched.Op
	var out []sched.TaskRecord
	for _, l := range res.Launches {
		rec := l.Task
		o := byID[l.OfferID]
		rec.Task.SlaveID = o.AgentID
		rec.Task.Host = o.Hostname
		rec.Task.Site = o.Site
		rec.Task.StagedAt = api.Timestamp(e.m.Now())
		rec.Task.State = api.TaskStaging
		rec.Task.Framework = Name
		rec.Goal = api.GoalRun
		rec.UpdatedAt = e.m.Now().Format(time.RFC3339Nano)
		ops = append(ops, sched.Check(sched.TableTasks, rec.Task.ID, 0), sched.Put(sched.TableTasks, rec.Task.ID, &rec))
		out = append(out, rec)
		e.m.advance(time.Millisecond)
	}
	if len(ops) > 0 {
		if _, err := e.m.st.Apply(context.Background(), ops); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// setState writes a status update as the master would.
func (e *testEnv) setState(id, state string, mut ...func(*sched.TaskRecord)) {
	e.t.Helper()
	ent, ok := e.m.st.Get(sched.TableTasks, id)
	if !ok {
		e.t.Fatalf("no task %s", id)
	}
	rec := *ent.Value.(*sched.TaskRecord)
	rec.Task.State = state
	rec.UpdatedAt = e.m.Now().Format(time.RFC3339Nano)
	if state == api.TaskRunning && rec.Task.StartedAt == "" {
		rec.Task.StartedAt = api.Timestamp(e.m.Now())
	}
	for _, f := range mut {
		f(&rec)
	}
	if _, err := e.m.st.Apply(context.Background(), []sched.Op{sched.Put(sched.TableTasks, id, &rec)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) reconcile() {
	e.t.Helper()
	e.f.setMaster(e.m)
	if err := e.f.reconcileChanged(context.Background(), e.m.st); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) tasks(appID string) []*sched.TaskRecord {
	var out []*sched.TaskRecord
	for _, ent := range e.m.st.List(sched.TableTasks) {
		rec := ent.Value.(*sched.TaskRecord)
		if rec.Task.AppID == appID {
			out = append(out, rec)
		}
	}
	return out
}

func goalCount(recs []*sched.TaskRecord, goal string) int {
	n := 0
	for _, r := range recs {
		if r.Goal == goal {
			n++
		}
	}
	return n
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return buf.String()
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
