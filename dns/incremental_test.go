package dns

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// patchState is every golden state's apps and tasks in one state, plus a
// few apps of three tasks.
func patchState() *api.State {
	st := &api.State{Index: 1, Leader: "192.168.1.10:8080", Nodes: baseNodes()}
	seenApp := map[string]bool{}
	gs := goldenStates()
	for _, k := range slices.Sorted(maps.Keys(gs)) {
		g := gs[k]
		if !slices.EqualFunc(g.Nodes, st.Nodes, func(a, b api.Node) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			continue
		}
		for _, a := range g.Apps {
			if !seenApp[a.ID] {
				seenApp[a.ID] = true
				st.Apps = append(st.Apps, a)
			}
		}
		for _, t := range g.Tasks {
			t.ID = k + "-" + t.ID // unique across states
			st.Tasks = append(st.Tasks, t)
		}
	}
	b := benchState(20)
	st.Apps = append(st.Apps, b.Apps...)
	st.Tasks = append(st.Tasks, b.Tasks...)
	return st
}

// mutate returns a new state: st with one random change of the kinds a
// cluster makes (a task killed or back, moved, re-addressed, its health
// flipping, a task added, an app's ports changed or the app removed). st is
// not modified.
func mutate(st *api.State, rng *rand.Rand, n int) *api.State {
	next := *st
	next.Index++
	next.Tasks = slices.Clone(st.Tasks)
	next.Apps = slices.Clone(st.Apps)
	// own copies the element it changes: the others are shared with st.
	ownTask := func(i int) *api.Task { c := *next.Tasks[i]; next.Tasks[i] = &c; return &c }
	ownApp := func(i int) *api.App { c := *next.Apps[i]; next.Apps[i] = &c; return &c }
	agents := []string{agentA, agentB, agentC}
	switch x := rng.IntN(10); {
	case x < 3 && len(next.Tasks) > 0: // killed or back
		tk := ownTask(rng.IntN(len(next.Tasks)))
		if tk.State == api.TaskRunning {
			tk.State = api.TaskKilled
		} else {
			tk.State = api.TaskRunning
		}
	case x < 4 && len(next.Tasks) > 0: // moved to another agent
		ownTask(rng.IntN(len(next.Tasks))).SlaveID = agents[rng.IntN(3)]
	case x < 5 && len(next.Tasks) > 0: // a new address on the overlay
		ownTask(rng.IntN(len(next.Tasks))).IPAddresses = []api.IPAddress{{IPAddress: fmt.Sprintf("10.47.%d.%d", 1+rng.IntN(3), 2+rng.IntN(200))}}
	case x < 6 && len(next.Tasks) > 0: // health flips
		ownTask(rng.IntN(len(next.Tasks))).HealthCheckResults = []api.HealthCheckResult{{Alive: rng.IntN(2) == 0}}
	case x < 8 && len(next.Apps) > 0: // a task added to an app
		a := next.Apps[rng.IntN(len(next.Apps))]
		t := task(fmt.Sprintf("new.%d", n), a.ID, agents[rng.IntN(3)], 32000+rng.IntN(1000))
		if rng.IntN(3) == 0 {
			t.Site = []string{"a", "b"}[rng.IntN(2)]
		}
		next.Tasks = append(next.Tasks, &t)
	case x < 9 && len(next.Apps) > 0: // an app's ports change
		ownApp(rng.IntN(len(next.Apps))).PortDefinitions = []api.PortDefinition{{Port: 10000 + rng.IntN(100), Name: []string{"", "http", "grpc"}[rng.IntN(3)], Protocol: []string{"tcp", "udp", "tcp,udp"}[rng.IntN(3)]}}
	default: // an app and its tasks removed
		if len(next.Apps) < 5 {
			return &next
		}
		i := rng.IntN(len(next.Apps))
		id := next.Apps[i].ID
		next.Apps = slices.Delete(next.Apps, i, i+1)
		next.Tasks = slices.DeleteFunc(next.Tasks, func(t *api.Task) bool { return t.AppID == id })
	}
	return &next
}

// tableDump is everything a table serves, with site ids as names.
func tableDump(t *Table) string {
	siteName := map[uint16]string{}
	for n, id := range t.sites {
		siteName[id] = n
	}
	var b bytes.Buffer
	for _, n := range slices.Sorted(maps.Keys(maps.Collect(t.names.all()))) {
		e := t.names.get(n)
		fmt.Fprintf(&b, "%s:", n)
		for i, a := range [...]*answer{e.a, e.aaaa, e.srv, e.ptr, e.ns, e.soa, e.any} {
			if a == nil {
				continue
			}
			fmt.Fprintf(&b, " [%d", i)
			for k := range a.rrs {
				fmt.Fprintf(&b, " %x@%s", a.rrs[k], siteName[a.site[k]])
			}
			for _, x := range a.extra {
				fmt.Fprintf(&b, " +%x", x)
			}
			fmt.Fprintf(&b, " sites=%d]", a.nsites)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "records %d\n%s", len(t.Records()), t.ZoneText())
	enum, _ := json.Marshal(t.Enumerate())
	b.Write(enum)
	return b.String()
}

// A table updated change by change serves exactly what a table built from
// scratch from the same state serves: every name, every encoded record and
// its site, the additional records, empty non-terminals and NXDOMAIN
// alike, the zone text and /v1/enumerate.
func TestPatchEqualsRebuild(t *testing.T) {
	t.Run("states", func(t *testing.T) { patchEqualsRebuild(t, false) })
	// As a node runs: each change goes through the watch's Mirror, whose
	// States tell unchanged apps and tasks by their Rev.
	t.Run("mirror", func(t *testing.T) { patchEqualsRebuild(t, true) })
}

// changesBetween is what the master's change watch sends to bring a
// mirror from prev to next.
func changesBetween(prev, next *api.State) *api.Changes {
	c := &api.Changes{Index: next.Index, Leader: next.Leader, Domain: next.Domain, Deleted: &api.Deleted{}}
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	apps, tasks := map[string]string{}, map[string]string{}
	for _, a := range prev.Apps {
		apps[a.ID] = js(a)
	}
	for _, tk := range prev.Tasks {
		tasks[tk.ID] = js(tk)
	}
	for _, a := range next.Apps {
		if old, ok := apps[a.ID]; !ok || old != js(a) {
			c.Apps = append(c.Apps, *a)
		}
		delete(apps, a.ID)
	}
	for _, tk := range next.Tasks {
		if old, ok := tasks[tk.ID]; !ok || old != js(tk) {
			c.Tasks = append(c.Tasks, *tk)
		}
		delete(tasks, tk.ID)
	}
	c.Deleted.Apps = slices.Sorted(maps.Keys(apps))
	c.Deleted.Tasks = slices.Sorted(maps.Keys(tasks))
	return c
}

func patchEqualsRebuild(t *testing.T, viaMirror bool) {
	clock := time.Unix(1796406030, 0)
	newSrv := func() *Server {
		cfg := DefaultConfig()
		cfg.Listen = []string{"127.0.0.1:0"}
		cfg.Forward = false
		cfg.Site = "a"
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// One clock for both: the SOA serial is the time of the build,
		// and a second that ticked between the patch and the rebuild
		// made them differ.
		s.now = func() time.Time { return clock }
		t.Cleanup(func() { s.closeAll(); s.closeUDP() })
		return s
	}
	inc := newSrv()
	rng := rand.New(rand.NewPCG(7, 19))
	st := patchState()
	var mirror api.Mirror
	set := func(prev, next *api.State) {
		if !viaMirror {
			inc.SetState(next)
			return
		}
		if prev == nil {
			mirror.Apply(&api.Changes{Snapshot: true, Index: next.Index, Leader: next.Leader, Domain: next.Domain,
				Nodes: next.Nodes, Apps: vals(next.Apps), Tasks: vals(next.Tasks)})
		} else {
			mirror.Apply(changesBetween(prev, next))
		}
		inc.SetState(mirror.State())
	}
	set(nil, st)
	patched := 0
	const steps = 400
	for i := 0; i < steps; i++ {
		prev := st
		st = mutate(st, rng, i)
		set(prev, st)
		if inc.Table().patched {
			patched++
		}
		if i%20 != 19 && i != steps-1 {
			continue // compare every 20th step, and the last: the patched tables build on each other
		}
		full := newSrv()
		full.SetState(st)
		got, want := tableDump(inc.Table()), tableDump(full.Table())
		if got != want {
			gl, wl := bytes.Split([]byte(got), []byte("\n")), bytes.Split([]byte(want), []byte("\n"))
			for k := 0; k < max(len(gl), len(wl)); k++ {
				var g, w []byte
				if k < len(gl) {
					g = gl[k]
				}
				if k < len(wl) {
					w = wl[k]
				}
				if !bytes.Equal(g, w) {
					t.Fatalf("step %d: the updated table differs from a rebuild at line %d:\n got  %s\n want %s", i, k, g, w)
				}
			}
		}
		if a, b := inc.Status().Records, full.Status().Records; a != b {
			t.Fatalf("step %d: %d records counted, a rebuild has %d", i, a, b)
		}
	}
	if patched < steps/2 {
		t.Errorf("only %d of %d changes were applied incrementally", patched, steps)
	}
	t.Logf("%d of %d changes applied incrementally", patched, steps)
}
