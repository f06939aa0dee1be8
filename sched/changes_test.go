package sched

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// TestChangesApplyToSnapshot applies 10,000 random writes (puts and
// deletes of apps, tasks, deployments and jobs, several to a command) to a
// real store, follows them with the change watch over HTTP from a mirror
// that starts from a snapshot, and checks at every step that the mirror
// equals a fresh snapshot at the same index. The store is made to forget
// its older writes quickly, so that some queries fall out of what it
// remembers and must get a snapshot again; a membership change must reach
// the mirror too.
func TestChangesApplyToSnapshot(t *testing.T) {
	old := maxWrites
	maxWrites = 200
	t.Cleanup(func() { maxWrites = old })

	members := NewStaticMembers(agentNode("n1", 4, 4096))
	tm := startMaster(t, members)
	ctx := context.Background()
	eventually(t, 5*time.Second, "the first write", func() bool { return tm.Store().Index() > 0 })

	rng := rand.New(rand.NewPCG(19, 2026))
	pick := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	randomOp := func() Op {
		del := rng.IntN(4) == 0
		switch rng.IntN(10) {
		case 0, 1:
			id := "/" + pick("app", 40)
			if del {
				return Delete(TableApps, id)
			}
			return Put(TableApps, id, &api.App{ID: id, Instances: rng.IntN(5), Labels: map[string]string{"v": pick("", 1000)}})
		case 2:
			id := pick("deploy-", 10)
			if del {
				return Delete(TableDeployments, id)
			}
			return Put(TableDeployments, id, &api.Deployment{ID: id, Version: pick("v", 1000), CurrentStep: rng.IntN(3)})
		case 3:
			name := pick("job", 10)
			if del {
				return Delete(TableJobs, name)
			}
			return Put(TableJobs, name, &api.Job{Name: name, Command: "echo " + pick("", 1000)})
		default:
			id := pick("t", 300)
			if del {
				return Delete(TableTasks, id)
			}
			states := []string{api.TaskStaging, api.TaskRunning, api.TaskKilled, api.TaskFailed}
			return Put(TableTasks, id, &TaskRecord{Task: api.Task{ID: id, AppID: "/" + pick("app", 40), SlaveID: "n1", Host: "127.0.0.1",
				State: states[rng.IntN(len(states))], Ports: []int{31000 + rng.IntN(100)}}, Goal: api.GoalRun})
		}
	}

	var mirror api.Mirror
	gzipSeen, snapshots, deltas := 0, 0, 0
	follow := func() {
		t.Helper()
		for {
			ch, gz := changesOverHTTP(t, tm, mirror.Index(), mirror.NodesHash())
			if gz {
				gzipSeen++
			}
			if ch.Snapshot {
				snapshots++
			} else {
				deltas++
			}
			mirror.Apply(ch)
			fresh, _ := changesOverHTTP(t, tm, 0, "")
			if fresh.Index != mirror.Index() || fresh.NodesHash != mirror.NodesHash() {
				continue // something changed in between: follow again
			}
			var want api.Mirror
			want.Apply(fresh)
			a, _ := json.Marshal(mirror.State())
			b, _ := json.Marshal(want.State())
			if string(a) != string(b) {
				t.Fatalf("at index %d the mirror differs from a snapshot:\nmirror   %.600s\nsnapshot %.600s", mirror.Index(), a, b)
			}
			return
		}
	}
	follow()
	changes := 0
	for changes < 10000 {
		n := 1 + rng.IntN(8)
		ops := make([]Op, 0, n)
		seen := map[string]bool{}
		for len(ops) < n {
			op := randomOp()
			if seen[op.Table+"/"+op.Key] {
				continue
			}
			seen[op.Table+"/"+op.Key] = true
			ops = append(ops, op)
		}
		if _, err := tm.Store().Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		changes += n
		// Mostly follow closely; every fourth stretch of 600 changes, lag
		// behind further than the store remembers.
		if lagging := (changes/600)%4 == 3; !lagging && rng.IntN(6) == 0 {
			follow()
		}
		if changes%2500 < n {
			members.Set(append(members.Nodes(), agentNode(fmt.Sprintf("m%d", changes), 1, 1024)))
			eventually(t, 5*time.Second, "the master sees the new member", func() bool {
				nodes, _ := tm.watchNodes()
				return len(nodes) == len(members.Nodes())
			})
			follow()
			if got := len(mirror.State().Nodes); got != len(members.Nodes()) {
				t.Fatalf("mirror has %d nodes, the membership %d", got, len(members.Nodes()))
			}
		}
	}
	follow()
	if snapshots < 3 || deltas < 100 || gzipSeen == 0 {
		t.Fatalf("want some snapshots again (store forgot), many deltas and a gzipped answer: %d snapshots, %d deltas, %d gzipped", snapshots, deltas, gzipSeen)
	}
	st := mirror.State()
	if len(st.Apps) == 0 || len(st.Tasks) == 0 {
		t.Fatalf("mirror ended empty: %d apps %d tasks", len(st.Apps), len(st.Tasks))
	}
	// The master's own whole state agrees too (nodes aside: it fills Used).
	whole := tm.State()
	if whole.Index == mirror.Index() {
		a, _ := json.Marshal([]any{st.Apps, st.Tasks, st.Deployments, st.Jobs})
		b, _ := json.Marshal([]any{whole.Apps, whole.Tasks, whole.Deployments, whole.Jobs})
		if string(a) != string(b) {
			t.Fatal("mirror differs from Master.State")
		}
	}
	t.Logf("%d changes: %d snapshots, %d deltas, %d gzipped answers", changes, snapshots, deltas, gzipSeen)
}

// changesOverHTTP asks the change watch without waiting, accepting gzip,
// and reports whether the answer came gzipped.
func changesOverHTTP(t *testing.T, tm *testMaster, after uint64, nodes string) (*api.Changes, bool) {
	t.Helper()
	url := fmt.Sprintf("%s/v1/state/changes?index=%d&nodes=%s&wait=0s", tm.srv.URL, after, nodes)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req) // the transport asks for gzip and decodes it
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	var ch api.Changes
	if err := json.Unmarshal(b, &ch); err != nil {
		t.Fatal(err)
	}
	return &ch, resp.Uncompressed
}

// TestWatcherFollowsMaster runs the node's shared watcher against a real
// master: two consumers (dns and lb) get the first state, then a write
// reaches both within a blocking query (no polling), then a membership
// change; the query blocks while nothing changes.
func TestWatcherFollowsMaster(t *testing.T) {
	members := NewStaticMembers(agentNode("n1", 4, 4096))
	tm := startMaster(t, members)
	eventually(t, 5*time.Second, "the first write", func() bool { return tm.Store().Index() > 0 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &api.Watcher{Source: tm.client, Wait: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	dnsC, lbC := w.Consumer(), w.Consumer()
	first, err := dnsC.Watch(ctx, 0, 5*time.Second)
	if err != nil || first == nil || len(first.Nodes) != 1 || first.Leader != tm.cfg.APIAdvertise {
		t.Fatalf("first state: %+v %v", first, err)
	}
	if st, err := lbC.Watch(ctx, 0, 5*time.Second); err != nil || st != first {
		t.Fatalf("the second consumer gets the same state: %v", err)
	}
	got := make(chan *api.State, 2)
	for _, c := range []*api.WatchConsumer{dnsC, lbC} {
		go func() {
			st, err := c.Watch(ctx, first.Index, 10*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- st
		}()
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case st := <-got:
		t.Fatalf("a consumer returned with nothing changed: index %d", st.Index)
	default:
	}
	app := &api.App{ID: "/web", Instances: 1}
	if _, err := tm.Store().Apply(ctx, []Op{Put(TableApps, app.ID, app), Put(TableTasks, "web.1", &TaskRecord{Task: api.Task{ID: "web.1", AppID: "/web", SlaveID: "n1", State: api.TaskRunning}})}); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	for range 2 {
		st := <-got
		if len(st.Apps) != 1 || len(st.Tasks) != 1 || st.Tasks[0].State != api.TaskRunning {
			t.Fatalf("after the write: %+v", st)
		}
	}
	if d := time.Since(wrote); d > 2*time.Second {
		t.Fatalf("the write reached the consumers after %v", d)
	}
	// A kill and a new member come through as changes too.
	if _, err := tm.Store().Apply(ctx, []Op{Delete(TableTasks, "web.1")}); err != nil {
		t.Fatal(err)
	}
	members.Set(append(members.Nodes(), agentNode("n2", 1, 1024)))
	eventually(t, 5*time.Second, "the consumer sees the delete and the new member", func() bool {
		st := w.State()
		return st != nil && len(st.Tasks) == 0 && len(st.Apps) == 1 && len(st.Nodes) == 2
	})
}
