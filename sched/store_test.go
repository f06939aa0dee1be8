package sched

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func openTestStore(t *testing.T, dir string) *Store {
	t.Helper()
	cfg := DefaultStoreConfig()
	cfg.Dir = dir
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStorePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	ctx := context.Background()
	app := &api.App{ID: "/ssk2/whereisbot", Instances: 2}
	idx, err := s.Apply(ctx, []Op{Check(TableApps, app.ID, 0), Put(TableApps, app.ID, app)})
	if err != nil {
		t.Fatal(err)
	}
	if idx == 0 {
		t.Fatal("index did not rise")
	}
	// A second create of the same id conflicts and writes nothing.
	_, err = s.Apply(ctx, []Op{Check(TableApps, app.ID, 0), Put(TableApps, app.ID, &api.App{ID: app.ID, Instances: 9})})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []Op{Put(TableJobs, "extract", &api.Job{Name: "extract"})}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(s.List(TableJobs)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e, ok := s.Get(TableApps, app.ID)
	if !ok || e.Value.(*api.App).Instances != 2 {
		t.Fatalf("app after restart: %+v %v", e, ok)
	}
	if len(s.List(TableJobs)) != 1 {
		t.Fatal("job written after the snapshot was lost")
	}
}

func TestStoreWatchAndEvents(t *testing.T) {
	s := openTestStore(t, "")
	defer s.Close()
	ctx := context.Background()
	start := s.Index()
	evs, cancel := s.Subscribe(8)
	defer cancel()
	done := make(chan uint64)
	go func() {
		idx, _ := s.Watch(ctx, start)
		done <- idx
	}()
	time.Sleep(20 * time.Millisecond)
	idx, err := s.Apply(ctx, []Op{Put(TableMeta, "k", map[string]int{"a": 1})}, api.NewEvent(api.EventAPIPost, map[string]string{"uri": "/v2/apps/x"}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got != idx {
			t.Fatalf("watch returned %d, want %d", got, idx)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watch did not wake")
	}
	select {
	case ev := <-evs:
		if ev.Type != api.EventAPIPost || ev.Index != idx {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if _, err := s.Watch(wctx, idx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("watch with no write: %v", err)
	}
}

// TestStoreReadChanged wants the keys of one table written or deleted
// after an index, in order, and complete false for an index the store
// cannot account for.
func TestStoreReadChanged(t *testing.T) {
	s := openTestStore(t, "")
	defer s.Close()
	ctx := context.Background()
	put := func(ops ...Op) uint64 {
		t.Helper()
		idx, err := s.Apply(ctx, ops)
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	task := func(id string) *TaskRecord { return &TaskRecord{Task: api.Task{ID: id}} }
	i1 := put(Put(TableTasks, "a", task("a")), Put(TableTasks, "b", task("b")))
	put(Put(TableApps, "/x", &api.App{ID: "/x"}), Check(TableTasks, "a", i1), Put(TableTasks, "a", task("a")))
	i3 := put(Delete(TableTasks, "b"))
	changed := func(after uint64) ([]string, bool, uint64) {
		var keys []string
		var ok bool
		var at uint64
		s.ReadChanged(TableTasks, after, func(index uint64, tables map[string]map[string]*Entry, k []string, complete bool) {
			keys, ok, at = k, complete, index
		})
		return keys, ok, at
	}
	if keys, ok, at := changed(i1); !ok || at != i3 || len(keys) != 2 || keys[0] != "a" || keys[1] != "b" {
		t.Fatalf("after %d: keys %v complete %v at %d, want [a b] complete at %d", i1, keys, ok, at, i3)
	}
	if keys, ok, _ := changed(i3); !ok || len(keys) != 0 {
		t.Fatalf("after the last write: keys %v complete %v, want none, complete", keys, ok)
	}
	if _, ok, _ := changed(i3 + 100); ok {
		t.Fatal("an index above the store's is reported complete")
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snap, err := (*fsm)(s).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := snap.(*lazySnapshot).encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(enc.Tables[TableTasks]) != 1 || enc.Index != i3 {
		t.Fatalf("snapshot at %d holds %d tasks, want 1 at %d", enc.Index, len(enc.Tables[TableTasks]), i3)
	}
	b, _ := json.Marshal(enc)
	if err := (*fsm)(s).Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := changed(i1); ok {
		t.Fatal("keys written before a restore are reported complete")
	}
	if keys, ok, _ := changed(i3); !ok || len(keys) != 0 {
		t.Fatalf("after the restored index: keys %v complete %v, want none, complete", keys, ok)
	}
}

// TestStoreReadChangedForgetsOldWrites wants the store to say a read is
// incomplete once the writes after its index are forgotten, and complete
// for indexes it still covers.
func TestStoreReadChangedForgetsOldWrites(t *testing.T) {
	defer func(n int) { maxWrites = n }(maxWrites)
	maxWrites = 4
	s := openTestStore(t, "")
	defer s.Close()
	ctx := context.Background()
	var idx []uint64
	for i := 0; i < 12; i++ {
		id := fmt.Sprintf("t%d", i)
		n, err := s.Apply(ctx, []Op{Put(TableTasks, id, &TaskRecord{Task: api.Task{ID: id}}), Put(TableMeta, id, json.RawMessage(`1`))})
		if err != nil {
			t.Fatal(err)
		}
		idx = append(idx, n)
	}
	check := func(after uint64) ([]string, bool) {
		var keys []string
		var ok bool
		s.ReadChanged(TableTasks, after, func(_ uint64, _ map[string]map[string]*Entry, k []string, complete bool) { keys, ok = k, complete })
		return keys, ok
	}
	if _, ok := check(idx[0]); ok {
		t.Fatal("a read after the first of 12 writes (24 keys, 4 kept) is reported complete")
	}
	keys, ok := check(idx[10])
	if !ok || len(keys) != 1 || keys[0] != "t11" {
		t.Fatalf("after the 11th write: keys %v complete %v, want [t11]", keys, ok)
	}
}

// encodeCommand writes what json.Marshal of the command writes, once
// decoded: puts with values (HTML-escaped text, nested structs), deletes,
// checks with and without an index, events, and no events.
func TestEncodeCommandDecodesAsMarshal(t *testing.T) {
	rec := &TaskRecord{Task: api.Task{ID: "a.1", AppID: "/a<b>&c", Ports: []int{31000}}, Goal: api.GoalRun}
	ops := []Op{Check(TableTasks, "a.1", 0), Put(TableTasks, "a.1", rec), Check(TableTasks, "a.2", 7), Delete(TableTasks, "a.2"), Put(TableTasks, "a.3", nil)}
	for _, events := range [][]api.Event{nil, {{Type: "status_update_event", Data: json.RawMessage(`{"x":1}`)}}} {
		got, _, err := encodeCommand(ops, events)
		if err != nil {
			t.Fatal(err)
		}
		want := command{Events: events}
		for _, op := range ops {
			w := wireOp{Kind: op.Kind, Table: op.Table, Key: op.Key, Index: op.Index}
			if op.Kind == OpPut {
				w.Value, _ = json.Marshal(op.Value)
			}
			want.Ops = append(want.Ops, w)
		}
		wantB, _ := json.Marshal(want)
		var g, w command
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("decoding %s: %v", got, err)
		}
		if err := json.Unmarshal(wantB, &w); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*command{&g, &w} {
			for i := range c.Ops {
				var b bytes.Buffer
				if len(c.Ops[i].Value) > 0 {
					_ = json.Compact(&b, c.Ops[i].Value)
					c.Ops[i].Value = b.Bytes()
				}
			}
		}
		if gb, wb := fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", w); gb != wb || len(g.Ops) != len(ops) {
			t.Fatalf("encodeCommand decodes as\n%s\nwant\n%s", gb, wb)
		}
	}
	if _, _, err := encodeCommand([]Op{Put("nope", "k", 1)}, nil); err == nil {
		t.Fatal("unknown table: no error")
	}
}
