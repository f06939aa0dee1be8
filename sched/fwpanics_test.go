package sched

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// wantsPanics is a framework whose Wants panics.
type wantsPanics struct{ panicky }

func (wantsPanics) Name() string { return "wobbly" }
func (wantsPanics) Wants() bool  { panic("wobbly wants") }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A framework that panics in Wants is logged with its stack, counted on
// /metrics and shown among the master node's problems.
func TestFrameworkPanicIsLoggedCountedAndShown(t *testing.T) {
	master := agentNode("m1", 1, 1024)
	master.Role = api.RoleMaster
	members := NewStaticMembers(master, agentNode("n1", 1, 1024))
	var logs syncBuf
	tm := startMasterWith(t, members, func(c *MasterConfig) {
		c.Store.NodeID = "m1"
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}, wantsPanics{})
	eventually(t, 5*time.Second, "the panic logged", func() bool { return strings.Contains(logs.String(), "framework panicked") })
	if l := logs.String(); !strings.Contains(l, "wobbly wants") || !strings.Contains(l, "safeWants") {
		t.Fatalf("the log has no panic value or stack:\n%.2000s", l)
	}
	resp, err := http.Get(tm.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `weft_framework_panics_total{framework="wobbly",method="Wants"}`) {
		t.Fatalf("/metrics has no panic count")
	}
	var nodes struct{ Nodes []api.Node }
	if _, err := tm.client.Do(context.Background(), http.MethodGet, "/v1/nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Nodes {
		has := strings.Contains(strings.Join(n.Problems, ";"), "framework wobbly panicked in Wants")
		if has != (n.ID == "m1") {
			t.Fatalf("node %s problems %q", n.ID, n.Problems)
		}
	}
}

// With Safe, no framework runs or gets offers, and the node says so.
func TestSafeModePausesFrameworks(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 4, 4096))
	fw := &testFramework{name: "f", cpus: 0.5, mem: 32}
	fw.add(2)
	tm := startMasterWith(t, members, func(c *MasterConfig) { c.Safe = true; c.Store.NodeID = "n1" }, fw)
	time.Sleep(500 * time.Millisecond) // ten allocation rounds
	if n := len(fw.offerRounds()); n != 0 {
		t.Fatalf("a paused framework got %d offer rounds", n)
	}
	if fw.running.Load() != 0 {
		t.Fatal("a paused framework's Run runs")
	}
	if n := len(tasksOf(tm.Store())); n != 0 {
		t.Fatalf("%d tasks launched in safe mode", n)
	}
	if p := tm.Nodes()[0].Problems; len(p) == 0 || !strings.Contains(p[0], "safe mode") {
		t.Fatalf("problems %q", p)
	}
}

// boomValue panics when decoded: a stand-in for any bug in applying an
// entry.
type boomValue struct{}

func (*boomValue) UnmarshalJSON([]byte) error { panic("boom while applying") }

// A panic while applying a raft entry is an error of that entry: the
// store stays usable, and a restart that replays the log comes up.
func TestApplyPanicDoesNotTakeTheStoreDown(t *testing.T) {
	tableTypes["boom"] = func() any { return new(boomValue) }
	t.Cleanup(func() { delete(tableTypes, "boom") })
	dir := t.TempDir()
	s := openTestStore(t, dir)
	ctx := context.Background()
	_, err := s.Apply(ctx, []Op{Put("boom", "k", map[string]int{"a": 1})})
	if err == nil || !strings.Contains(err.Error(), "panic: boom while applying") {
		t.Fatalf("Apply: %v", err)
	}
	app := &api.App{ID: "/after"}
	if _, err := s.Apply(ctx, []Op{Put(TableApps, app.ID, app)}); err != nil {
		t.Fatalf("the next Apply: %v", err)
	}
	s.Close()
	s = openTestStore(t, dir) // replays the entry that panicked
	defer s.Close()
	// Leadership is reported once the log is applied again.
	eventually(t, 5*time.Second, "leading after the replay", s.IsLeader)
	if _, ok := s.Get(TableApps, "/after"); !ok {
		t.Fatal("the app written after the panic is gone after a restart")
	}
}
