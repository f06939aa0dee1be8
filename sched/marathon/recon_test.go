package marathon

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

var planNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// planApp is an app of n instances at version "v1".
func planApp(id string, n int, mut ...func(*api.App)) *api.App {
	a := &api.App{ID: id, Instances: n, Version: "v1", Cpus: 1, Mem: 10,
		BackoffSeconds: 1, BackoffFactor: 2, MaxLaunchDelaySeconds: 60,
		UnreachableStrategy: api.UnreachableStrategy{InactiveAfterSeconds: 5, ExpungeAfterSeconds: 600}}
	for _, m := range mut {
		m(a)
	}
	return a
}

// planTask is a task of app in state with goal run, updated at planNow.
func planTask(app, id, state string, mut ...func(*sched.TaskRecord)) *sched.TaskRecord {
	r := &sched.TaskRecord{Task: api.Task{ID: id, AppID: app, State: state, Version: "v1", Host: "h1", SlaveID: "a1"},
		Goal: api.GoalRun, UpdatedAt: planNow.Format(time.RFC3339Nano)}
	for _, m := range mut {
		m(r)
	}
	return r
}

// planView is a view of apps and tasks; each task's store index is 100
// plus its position.
func planView(apps []*api.App, recs ...*sched.TaskRecord) *view {
	v := &view{index: 1000, apps: map[string]*api.App{}, appIdx: map[string]uint64{}, tasks: map[string][]taskEntry{}, ports: map[string]map[int]int{}}
	for _, a := range apps {
		v.apps[a.ID] = a
		v.appIDs = append(v.appIDs, a.ID)
	}
	sort.Strings(v.appIDs)
	for i, r := range recs {
		v.tasks[r.Task.AppID] = append(v.tasks[r.Task.AppID], taskEntry{rec: r, idx: uint64(100 + i)})
	}
	return v
}

// describeSteps renders a plan's steps one line each, as
// "kill ID message", "delete ID", "lastFailure APP", "event TYPE" and
// "publish TYPE", and checks that every task write is guarded by a check
// of the index the view holds.
func describeSteps(t *testing.T, v *view, steps []reconStep) [][]string {
	t.Helper()
	idx := map[string]uint64{}
	for _, ts := range v.tasks {
		for _, te := range ts {
			idx[te.rec.Task.ID] = te.idx
		}
	}
	var out [][]string
	for _, s := range steps {
		var lines []string
		for i, op := range s.ops {
			if op.Kind == sched.OpCheck {
				continue
			}
			if op.Table == sched.TableTasks {
				if i == 0 || s.ops[i-1].Kind != sched.OpCheck || s.ops[i-1].Key != op.Key || s.ops[i-1].Index != idx[op.Key] {
					t.Errorf("write of task %s not guarded by a check of index %d", op.Key, idx[op.Key])
				}
			}
			switch {
			case op.Table == sched.TableTasks && op.Kind == sched.OpDelete:
				lines = append(lines, "delete "+op.Key)
			case op.Table == sched.TableTasks && op.Kind == sched.OpPut:
				rec := op.Value.(*sched.TaskRecord)
				if rec.Goal != api.GoalKill {
					t.Errorf("task %s written with goal %s", op.Key, rec.Goal)
				}
				lines = append(lines, strings.TrimSpace("kill "+op.Key+" "+rec.Task.Message))
			case op.Table == sched.TableMeta && strings.HasPrefix(op.Key, metaLastFailure):
				lines = append(lines, "lastFailure "+strings.TrimPrefix(op.Key, metaLastFailure))
			default:
				lines = append(lines, fmt.Sprintf("%s %s/%s", op.Kind, op.Table, op.Key))
			}
		}
		word := "event "
		if s.publish {
			word = "publish "
		}
		for _, e := range s.events {
			lines = append(lines, word+e.Type)
		}
		out = append(out, lines)
	}
	return out
}

func cloneBook(b reconBook) reconBook {
	c := newReconBook()
	for k, v := range b.ended {
		c.ended[k] = v
	}
	for k, v := range b.doomed {
		c.doomed[k] = v
	}
	for k, v := range b.failures {
		c.failures[k] = append([]int(nil), v...)
	}
	return c
}

func TestPlanReconcile(t *testing.T) {
	healthy := func(r *sched.TaskRecord) {
		r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: true}}
	}
	failing := func(n int) func(r *sched.TaskRecord) {
		return func(r *sched.TaskRecord) {
			r.Task.HealthCheckResults = []api.HealthCheckResult{{Alive: false, ConsecutiveFailures: n}}
		}
	}
	checked := func(a *api.App) {
		a.HealthChecks = []api.HealthCheck{{Protocol: "TCP", MaxConsecutiveFailures: 3}}
	}
	updated := func(ago time.Duration) func(r *sched.TaskRecord) {
		return func(r *sched.TaskRecord) { r.UpdatedAt = planNow.Add(-ago).Format(time.RFC3339Nano) }
	}
	goalKill := func(r *sched.TaskRecord) { r.Goal = api.GoalKill }
	staged := func(at string) func(r *sched.TaskRecord) {
		return func(r *sched.TaskRecord) { r.Task.StagedAt = at }
	}

	type want struct {
		steps       [][]string
		ended       []string
		backoff     []string // apps whose backoff grew
		backoffDrop []string
		doomed      []string
		forget      []string
		waiting     []string
		satisfied   []string
		wants       []string
		tokensLeft  float64
	}
	cases := []struct {
		name   string
		v      *view
		only   []string // nil: a full pass
		book   reconBook
		bo     map[string]backoffState
		wants  []string // at the last pass
		tokens float64
		want   want
	}{
		{
			name: "a failed task is expunged, its failure recorded, and the relaunch waits for the backoff",
			v:    planView([]*api.App{planApp("/a", 1)}, planTask("/a", "a.1", api.TaskFailed)),
			want: want{steps: [][]string{{"lastFailure /a", "delete a.1"}}, ended: []string{"a.1"},
				backoff: []string{"/a"}, waiting: []string{"/a"}},
		},
		{
			name: "an end already counted does not grow the backoff again",
			v:    planView([]*api.App{planApp("/a", 1)}, planTask("/a", "a.1", api.TaskFailed)),
			book: reconBook{ended: map[string]bool{"a.1": true}},
			want: want{steps: [][]string{{"lastFailure /a", "delete a.1"}}, ended: []string{"a.1"},
				waiting: []string{"/a"}, wants: []string{"/a"}},
		},
		{
			name: "a killed task is expunged without a failure",
			v:    planView([]*api.App{planApp("/a", 0)}, planTask("/a", "a.1", api.TaskKilled, goalKill)),
			want: want{steps: [][]string{{"delete a.1"}}, ended: []string{"a.1"}, satisfied: []string{"/a"}},
		},
		{
			name: "the tasks of a deleted app are killed",
			v:    planView(nil, planTask("/gone", "g.1", api.TaskRunning)),
			want: want{steps: [][]string{{"kill g.1 app /gone was deleted"}}},
		},
		{
			name: "scaling down kills the youngest",
			v: planView([]*api.App{planApp("/a", 1)},
				planTask("/a", "a.old", api.TaskRunning, staged("2026-11-22T09:00:00.000Z")),
				planTask("/a", "a.new", api.TaskRunning, staged("2026-11-22T09:30:00.000Z"))),
			want: want{steps: [][]string{{"kill a.new"}}, satisfied: []string{"/a"}},
		},
		{
			name: "a task unreachable past inactiveAfterSeconds is replaced",
			v:    planView([]*api.App{planApp("/a", 1)}, planTask("/a", "a.1", api.TaskUnreachable, updated(10*time.Second))),
			want: want{steps: [][]string{{"kill a.1 unreachable for longer than inactiveAfterSeconds; replaced"}},
				waiting: []string{"/a"}, wants: []string{"/a"}},
		},
		{
			name: "a task unreachable for less is waited for",
			v:    planView([]*api.App{planApp("/a", 1)}, planTask("/a", "a.1", api.TaskUnreachable, updated(2*time.Second))),
			want: want{satisfied: []string{"/a"}},
		},
		{
			name: "a killed task unreachable past expungeAfterSeconds is expunged",
			v: planView([]*api.App{planApp("/a", 1)},
				planTask("/a", "a.1", api.TaskUnreachable, goalKill, updated(601*time.Second)),
				planTask("/a", "a.2", api.TaskRunning)),
			want: want{steps: [][]string{{"delete a.1"}}, satisfied: []string{"/a"}},
		},
		{
			name: "an unhealthy task at full strength is killed; its failure is published first",
			v: planView([]*api.App{planApp("/a", 1, checked)},
				planTask("/a", "a.1", api.TaskRunning, healthy),
				planTask("/a", "a.2", api.TaskRunning, failing(3))),
			tokens: 1,
			want: want{steps: [][]string{{"publish failed_health_check_event"},
				{"kill a.2 killed: failed health checks", "event unhealthy_instance_kill_event"}},
				doomed: []string{"a.2"}, satisfied: []string{"/a"}},
		},
		{
			name: "no health-kill token left: the unhealthy task stays, marked",
			v: planView([]*api.App{planApp("/a", 1, checked)},
				planTask("/a", "a.1", api.TaskRunning, healthy),
				planTask("/a", "a.2", api.TaskRunning, failing(3))),
			tokens: 0.5,
			want: want{steps: [][]string{{"publish failed_health_check_event"}},
				doomed: []string{"a.2"}, satisfied: []string{"/a"}, tokensLeft: 0.5},
		},
		{
			name: "an unhealthy task below full strength waits for its replacement",
			v:    planView([]*api.App{planApp("/a", 1, checked)}, planTask("/a", "a.1", api.TaskRunning, failing(4))),
			book: reconBook{failures: map[string][]int{"a.1": {4}}, doomed: map[string]time.Time{"a.1": planNow.Add(-time.Second)}},
			// the count did not grow: nothing is published
			tokens: 5,
			want:   want{waiting: []string{"/a"}, wants: []string{"/a"}, tokensLeft: 5},
		},
		{
			name: "a full pass forgets the tasks no longer stored and the backoff of deleted apps",
			v:    planView([]*api.App{planApp("/a", 1)}, planTask("/a", "a.1", api.TaskRunning)),
			book: reconBook{ended: map[string]bool{"x.1": true}, doomed: map[string]time.Time{"x.2": planNow, "a.1": planNow},
				failures: map[string][]int{"x.1": {1}}},
			bo:   map[string]backoffState{"/x": {delay: time.Second, version: "v1"}},
			want: want{forget: []string{"x.1", "x.2"}, backoffDrop: []string{"/x"}, satisfied: []string{"/a"}},
		},
		{
			name: "a new version resets the backoff",
			v:    planView([]*api.App{planApp("/a", 1)}),
			bo:   map[string]backoffState{"/a": {delay: time.Minute, notBefore: planNow.Add(time.Minute), version: "v0"}},
			want: want{backoffDrop: []string{"/a"}, waiting: []string{"/a"}, wants: []string{"/a"}},
		},
		{
			name: "a delayed app waits without wanting offers",
			v:    planView([]*api.App{planApp("/a", 1)}),
			bo:   map[string]backoffState{"/a": {delay: time.Minute, notBefore: planNow.Add(time.Minute), version: "v1"}},
			want: want{waiting: []string{"/a"}},
		},
		{
			name:  "a pass over changes keeps the wants of the apps it did not look at",
			v:     planView([]*api.App{planApp("/a", 1), planApp("/b", 1)}, planTask("/a", "a.1", api.TaskRunning)),
			only:  []string{"/a"},
			wants: []string{"/a", "/b"},
			want:  want{satisfied: []string{"/a"}, wants: []string{"/b"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			book := newReconBook()
			for k, v := range c.book.ended {
				book.ended[k] = v
			}
			for k, v := range c.book.doomed {
				book.doomed[k] = v
			}
			for k, v := range c.book.failures {
				book.failures[k] = v
			}
			in := reconInput{v: c.v, full: c.only == nil, now: planNow, cfg: DefaultConfig(), book: &book,
				backoff: c.bo, bucket: tokenBucket{tokens: c.tokens, refilled: planNow}}
			if c.only != nil {
				in.only = map[string]bool{}
				for _, id := range c.only {
					in.only[id] = true
				}
			}
			if c.wants != nil {
				in.wants = map[string]bool{}
				for _, id := range c.wants {
					in.wants[id] = true
				}
			}
			before := cloneBook(book)
			boBefore := fmt.Sprint(c.bo)
			p := planReconcile(in)
			if !reflect.DeepEqual(cloneBook(book), before) || fmt.Sprint(c.bo) != boBefore {
				t.Error("planReconcile modified its input")
			}
			got := want{
				steps: describeSteps(t, c.v, p.steps), ended: p.ended, backoffDrop: p.backoffDrop,
				forget: p.forget, waiting: p.waiting, satisfied: p.satisfied,
				backoff: sortedKeys(p.backoff), doomed: sortedKeys(p.doomed), wants: sortedKeys(p.wants),
				tokensLeft: p.bucket.tokens,
			}
			norm := func(w *want) {
				for _, s := range []*[]string{&w.ended, &w.backoff, &w.backoffDrop, &w.doomed, &w.forget, &w.waiting, &w.satisfied, &w.wants} {
					if len(*s) == 0 {
						*s = nil
					}
				}
			}
			exp := c.want
			norm(&got)
			norm(&exp)
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, exp)
			}
			// The same input plans the same writes.
			if again := describeSteps(t, c.v, planReconcile(in).steps); !reflect.DeepEqual(again, got.steps) {
				t.Errorf("a second plan differs: %v", again)
			}
		})
	}
}

func TestPlanReconcileCutsLargeWrites(t *testing.T) {
	var recs []*sched.TaskRecord
	for i := 0; i < 200; i++ {
		recs = append(recs, planTask("/gone", fmt.Sprintf("g.%03d", i), api.TaskRunning))
	}
	book := newReconBook()
	p := planReconcile(reconInput{v: planView(nil, recs...), full: true, now: planNow, cfg: DefaultConfig(), book: &book})
	var sizes []int
	for _, s := range p.steps {
		sizes = append(sizes, len(s.ops))
	}
	// Two ops (check, put) per task; a step is cut once it holds 256.
	if !reflect.DeepEqual(sizes, []int{256, 144}) {
		t.Fatalf("step sizes %v, want [256 144]", sizes)
	}
}
