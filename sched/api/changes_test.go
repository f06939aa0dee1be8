package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestChangedSince applies random changes to a Mirror, takes States at
// random points, and checks that what ChangedSince says between any two
// of them is exactly the apps and tasks the changes between them touched,
// and that App and Task find every app and task by id.
func TestChangedSince(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var m Mirror
	type taken struct {
		st          *State
		apps, tasks map[string]bool // touched since the State before
		afterSnap   bool
	}
	var states []taken
	touchedApps, touchedTasks := map[string]bool{}, map[string]bool{}
	snap := false
	index := uint64(0)
	told := 0
	check := func(j int) {
		for i := max(0, j-changeLogLen-3); i <= j; i++ {
			apps, tasks, ok := states[j].st.ChangedSince(states[i].st)
			wantApps, wantTasks, wantOK := map[string]bool{}, map[string]bool{}, j-i <= changeLogLen
			for k := i + 1; k <= j; k++ {
				wantOK = wantOK && !states[k].afterSnap
				maps.Copy(wantApps, states[k].apps)
				maps.Copy(wantTasks, states[k].tasks)
			}
			if ok != wantOK {
				t.Fatalf("states %d → %d: ok %v, want %v (seqs %d %d, snap %v %v)", i, j, ok, wantOK, states[i].st.seq, states[j].st.seq, states[i].afterSnap, states[j].afterSnap)
			}
			if !ok {
				continue
			}
			told++
			if !maps.Equal(apps, wantApps) || !maps.Equal(tasks, wantTasks) {
				t.Fatalf("states %d → %d: apps %v tasks %v, want %v %v", i, j, apps, tasks, wantApps, wantTasks)
			}
			// Apps and tasks not reported are the same in both.
			for _, a := range states[j].st.Apps {
				if !apps[a.ID] {
					if o := states[i].st.App(a.ID); o == nil || o.Rev() != a.Rev() {
						t.Fatalf("states %d → %d: app %s changed, not reported", i, j, a.ID)
					}
				}
			}
			for _, tk := range states[j].st.Tasks {
				if !tasks[tk.ID] {
					if o := states[i].st.Task(tk.ID); o == nil || o.Rev() != tk.Rev() {
						t.Fatalf("states %d → %d: task %s changed, not reported", i, j, tk.ID)
					}
				}
			}
		}
		if _, _, ok := states[j].st.ChangedSince(&State{}); ok {
			t.Fatal("told the changes since a State not from the Mirror")
		}
		var other Mirror
		other.Apply(&Changes{Index: 1, Snapshot: true})
		if _, _, ok := states[j].st.ChangedSince(other.State()); ok {
			t.Fatal("told the changes since another Mirror's State")
		}
	}
	for step := 0; step < 600; step++ {
		index++
		c := &Changes{Index: index}
		switch r := rng.IntN(20); {
		case step == 0 || r == 0 && rng.IntN(4) == 0:
			c.Snapshot = true
			snap = true
			for i := 0; i < 5+rng.IntN(5); i++ {
				c.Apps = append(c.Apps, App{ID: fmt.Sprintf("/a%d", rng.IntN(30))})
			}
		case r < 8:
			for i := 0; i < 1+rng.IntN(3); i++ {
				id := fmt.Sprintf("/a%d.t%d", rng.IntN(30), rng.IntN(5))
				c.Tasks = append(c.Tasks, Task{ID: id, State: TaskRunning})
				touchedTasks[id] = true
			}
		case r < 11:
			id := fmt.Sprintf("/a%d", rng.IntN(30))
			c.Apps = append(c.Apps, App{ID: id, Instances: rng.IntN(4)})
			touchedApps[id] = true
		case r < 14:
			c.Deleted = &Deleted{Tasks: []string{fmt.Sprintf("/a%d.t%d", rng.IntN(30), rng.IntN(5))}}
			touchedTasks[c.Deleted.Tasks[0]] = true
		case r < 16:
			c.Deleted = &Deleted{Apps: []string{fmt.Sprintf("/a%d", rng.IntN(30))}}
			touchedApps[c.Deleted.Apps[0]] = true
		default: // a deployment only
			c.Deployments = []Deployment{{ID: fmt.Sprint(step)}}
		}
		m.Apply(c)
		if rng.IntN(3) == 0 {
			st := m.State()
			states = append(states, taken{st, touchedApps, touchedTasks, snap})
			touchedApps, touchedTasks, snap = map[string]bool{}, map[string]bool{}, false
			check(len(states) - 1)
			for i := range st.Apps {
				if a := st.App(st.Apps[i].ID); a != st.Apps[i] {
					t.Fatalf("App(%s) = %p, want %p", st.Apps[i].ID, a, st.Apps[i])
				}
			}
			for i := range st.Tasks {
				if tk := st.Task(st.Tasks[i].ID); tk != st.Tasks[i] {
					t.Fatalf("Task(%s) = %p, want %p", st.Tasks[i].ID, tk, st.Tasks[i])
				}
			}
			if st.App("/none") != nil || st.Task("/none") != nil {
				t.Fatal("found an app or task that is not there")
			}
		}
	}
	if told < 1000 {
		t.Fatalf("only %d pairs told", told)
	}
}

// TestMirrorOrder applies random batches, small and large, of new,
// changed (some twice in one batch) and deleted tasks, and checks the
// Mirror's State against a map of what was applied: every task, the last
// version of each, in id order.
func TestMirrorOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var m Mirror
	want := map[string]string{}
	for step := 0; step < 300; step++ {
		c := &Changes{Index: uint64(step + 1), Snapshot: step == 0}
		n := rng.IntN(4)
		if rng.IntN(10) == 0 {
			n = 20 + rng.IntN(200)
		}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("t%04d", rng.IntN(2000))
			v := fmt.Sprint(step, i)
			c.Tasks = append(c.Tasks, Task{ID: id, Message: v})
			want[id] = v
		}
		if rng.IntN(3) == 0 {
			c.Deleted = &Deleted{}
			for i := 0; i < 1+rng.IntN(20); i++ {
				id := fmt.Sprintf("t%04d", rng.IntN(2000))
				c.Deleted.Tasks = append(c.Deleted.Tasks, id)
				delete(want, id)
			}
		}
		m.Apply(c)
		st := m.State()
		if len(st.Tasks) != len(want) {
			t.Fatalf("step %d: %d tasks, want %d", step, len(st.Tasks), len(want))
		}
		for i, tk := range st.Tasks {
			if want[tk.ID] != tk.Message || i > 0 && st.Tasks[i-1].ID >= tk.ID {
				t.Fatalf("step %d: task %d %s %q (want %q), out of order or stale", step, i, tk.ID, tk.Message, want[tk.ID])
			}
		}
	}
}

// TestMirrorStatesShareAndKeep: a State shares every app and task that
// did not change with the State before it (a change costs what changed,
// not the size of the cluster), and no later Apply changes a State taken
// earlier: each still encodes as it did when it was taken.
func TestMirrorStatesShareAndKeep(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var m Mirror
	type taken struct {
		st   *State
		js   string
		apps map[string]*App
		tks  map[string]*Task
	}
	var states []taken
	var prev *taken
	for step := 0; step < 400; step++ {
		c := &Changes{Index: uint64(step + 1), Snapshot: step == 0}
		for i := 0; i < rng.IntN(4); i++ {
			c.Tasks = append(c.Tasks, Task{ID: fmt.Sprintf("t%03d", rng.IntN(300)), Message: fmt.Sprint(step, i), Ports: []int{step}})
		}
		if step == 0 || rng.IntN(4) == 0 {
			c.Apps = append(c.Apps, App{ID: fmt.Sprintf("/a%02d", rng.IntN(40)), Instances: step})
		}
		if rng.IntN(5) == 0 {
			c.Deleted = &Deleted{Tasks: []string{fmt.Sprintf("t%03d", rng.IntN(300))}, Apps: []string{fmt.Sprintf("/a%02d", rng.IntN(40))}}
		}
		m.Apply(c)
		st := m.State()
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		cur := taken{st, string(b), map[string]*App{}, map[string]*Task{}}
		for _, a := range st.Apps {
			cur.apps[a.ID] = a
		}
		for _, tk := range st.Tasks {
			cur.tks[tk.ID] = tk
		}
		if prev != nil {
			apps, tasks, ok := st.ChangedSince(prev.st)
			if !ok {
				t.Fatalf("step %d: no changes told since the State before", step)
			}
			for id, a := range cur.apps {
				if !apps[id] && prev.apps[id] != a {
					t.Fatalf("step %d: unchanged app %s copied, not shared", step, id)
				}
			}
			for id, tk := range cur.tks {
				if !tasks[id] && prev.tks[id] != tk {
					t.Fatalf("step %d: unchanged task %s copied, not shared", step, id)
				}
			}
		}
		states = append(states, cur)
		prev = &states[len(states)-1]
	}
	for i, s := range states {
		b, err := json.Marshal(s.st)
		if err != nil {
			t.Fatal(err)
		}
		if now := string(b); now != s.js {
			d := 0
			for d < len(now) && d < len(s.js) && now[d] == s.js[d] {
				d++
			}
			from := max(0, d-100)
			t.Fatalf("State %d changed after it was taken, at byte %d:\n was ...%.200s\n now ...%.200s", i, d, s.js[from:], now[from:])
		}
	}
}
