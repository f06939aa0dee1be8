package sched

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// filler sets every exported field it can reach to a distinct non-zero
// value: pointers allocated, slices and maps of two entries.
type filler struct{ n int }

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

func (f *filler) fill(v reflect.Value, depth int) {
	f.n++
	if v.Type() == rawMessageType {
		v.SetBytes([]byte(fmt.Sprintf(`{"k":%d}`, f.n)))
		return
	}
	if v.Type() == reflect.TypeOf(time.Time{}) {
		v.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, f.n, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", f.n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(f.n % 100))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(f.n % 100))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(f.n) + 0.25)
	case reflect.Pointer:
		if depth > 6 {
			return
		}
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		if depth > 6 {
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			f.fill(s.Index(i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		if depth > 6 {
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i < 2; i++ {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			f.fill(k, depth+1)
			f.fill(e, depth+1)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i), depth+1)
			}
		}
	}
}

// roundTrip is what a follower (or the leader replaying its log) holds for
// v: the value encodeCommand wrote, decoded as the state machine does.
func roundTrip(t *testing.T, table string, v any) any {
	t.Helper()
	b, spans, err := encodeCommand([]Op{Put(table, "k", v)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, vals, err := decodeCommand(b)
	if err != nil || len(cmd.Ops) != 1 {
		t.Fatalf("decoding %s: %v", b, err)
	}
	// The proposer's own path decodes a value from its span alike.
	sp := spans[0]
	v2, err := decodeValue(table, "k", b[sp.from:sp.to])
	if err != nil || !reflect.DeepEqual(v2, vals[0]) {
		t.Fatalf("%s: the value at its span decodes as %+v (%v), the entry's as %+v", table, v2, err, vals[0])
	}
	return vals[0]
}

// The leader keeps what the allocator hands it (putOwned) instead of
// decoding it; that is only right if a follower, decoding the entry,
// holds the same value. Every table's type, filled field by field, goes
// through the JSON round trip: whatever ownable accepts must come back
// unchanged, the new tasks of the allocator (as marathon writes them,
// and with every field set) must be accepted.
func TestOwnableValuesRoundTrip(t *testing.T) {
	for table, mk := range tableTypes {
		v := mk()
		f := &filler{}
		f.fill(reflect.ValueOf(v).Elem(), 0)
		if rec, ok := v.(*TaskRecord); ok {
			rec.Task.HealthCheckResults = nil // a new task has none
		}
		got := roundTrip(t, table, v)
		if ownable(table, v) && !reflect.DeepEqual(got, v) {
			t.Errorf("%s: ownable, but the JSON round trip changes it:\n got %+v\nwant %+v", table, got, v)
		}
	}
	full := &TaskRecord{}
	(&filler{}).fill(reflect.ValueOf(full).Elem(), 0)
	full.Task.HealthCheckResults = nil
	cmd := "sleep 1"
	launch := &TaskRecord{
		Task: api.Task{ID: "web.1", AppID: "/web", Host: "10.0.0.1", SlaveID: "a1", State: api.TaskStaging, StagedAt: "2026-01-02T03:04:05.000Z",
			Version: "2026-01-01T00:00:00.000Z", Ports: []int{31000}, HealthCheckResults: []api.HealthCheckResult{}, Framework: "marathon", Site: "ams", Region: "ams"},
		Spec: api.TaskSpec{Cmd: &cmd, Env: map[string]string{"PORT0": "31000"}, Resources: api.Resources{Cpus: 0.1, Mem: 64, Ports: []api.PortRange{{Begin: 31000, End: 31000}}},
			Ports: []int{31000}, KillGracePeriodSeconds: 3},
		Goal: api.GoalRun, UpdatedAt: "2026-01-02T03:04:05.123456789Z",
	}
	for _, rec := range []*TaskRecord{full, launch} {
		if !ownable(TableTasks, rec) {
			t.Fatalf("a new task is not ownable: %+v", rec)
		}
		if got := roundTrip(t, TableTasks, rec); !reflect.DeepEqual(got, rec) {
			t.Fatalf("task changes in its JSON round trip:\n got %+v\nwant %+v", got, rec)
		}
	}
	withResults := *launch
	withResults.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: true, TaskID: "web.1"}}
	if ownable(TableTasks, &withResults) {
		t.Fatal("a task with health results (which lose their taskId in JSON) is ownable")
	}
	if ownable(TableTasks, *launch) || ownable(TableApps, &api.App{ID: "/web"}) {
		t.Fatal("a task not by pointer, or an app, is ownable")
	}
}

// On the leader, a command of owned and other puts, a check, a delete and
// events is applied without decoding the owned values: the store holds the
// very record handed over, the rest decoded from the entry. After a
// restart, replaying the log from disk (as a follower applies it), every
// value is decoded and equal to what the leader held.
func TestLeaderKeepsOwnedValues(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	ctx := context.Background()
	if _, err := s.Apply(ctx, []Op{Put(TableTasks, "old.1", &TaskRecord{Task: api.Task{ID: "old.1"}})}); err != nil {
		t.Fatal(err)
	}
	rec := &TaskRecord{Task: api.Task{ID: "web.1", AppID: "/web", SlaveID: "a1", State: api.TaskStaging, Ports: []int{31000}, HealthCheckResults: []api.HealthCheckResult{}}, Goal: api.GoalRun}
	other := &TaskRecord{Task: api.Task{ID: "web.2", AppID: "/web", SlaveID: "a2"}, Goal: api.GoalRun}
	app := &api.App{ID: "/web", Instances: 2}
	events, cancel := s.Subscribe(4)
	defer cancel()
	idx, err := s.Apply(ctx, []Op{
		Check(TableTasks, "web.1", 0), putOwned(TableTasks, "web.1", rec),
		Put(TableTasks, "web.2", other), // not owned: decoded
		Put(TableApps, "/web", app),
		Delete(TableTasks, "old.1"),
	}, api.Event{Type: "deployment_info"})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := s.Get(TableTasks, "web.1")
	if !ok || e.Value != any(rec) || e.CreateIndex != idx {
		t.Fatalf("owned task: %+v, want the record handed over at index %d", e, idx)
	}
	e2, _ := s.Get(TableTasks, "web.2")
	if e2.Value == any(other) || !reflect.DeepEqual(e2.Value, other) {
		t.Fatalf("a put not owned is kept as handed over or differs: %+v", e2.Value)
	}
	if a, _ := s.Get(TableApps, "/web"); !reflect.DeepEqual(a.Value, app) {
		t.Fatalf("app %+v", a.Value)
	}
	if _, ok := s.Get(TableTasks, "old.1"); ok {
		t.Fatal("old.1 not deleted")
	}
	select {
	case ev := <-events:
		if ev.Type != "deployment_info" || ev.Index != idx {
			t.Fatalf("event %+v, want deployment_info at %d", ev, idx)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// A check that fails fails the whole command, owned values too.
	if _, err := s.Apply(ctx, []Op{Check(TableTasks, "web.1", 0), putOwned(TableTasks, "web.3", &TaskRecord{Task: api.Task{ID: "web.3"}})}); err == nil {
		t.Fatal("conflicting command applied")
	}
	if _, ok := s.Get(TableTasks, "web.3"); ok {
		t.Fatal("web.3 written by a failed command")
	}
	s.mu.RLock()
	want := map[string]any{}
	for k, e := range s.tables[TableTasks] {
		want[k] = e.Value
	}
	s.mu.RUnlock()
	s.propMu.Lock()
	left := len(s.proposed)
	s.propMu.Unlock()
	if left != 0 {
		t.Fatalf("%d proposals left after their applies", left)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, dir)
	defer s.Close()
	eventually(t, 5*time.Second, "log replayed", func() bool { return s.Index() >= idx })
	for k, v := range want {
		e, ok := s.Get(TableTasks, k)
		if !ok || !reflect.DeepEqual(e.Value, v) {
			t.Fatalf("%s after replaying the log: %+v, the leader held %+v", k, e.Value, v)
		}
		if e.Value == v {
			t.Fatalf("%s: replayed value is the leader's pointer", k)
		}
	}
}
