package lb

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// TestPatchEqualsRebuild feeds a Mirror random changes of the kinds a
// cluster makes (tasks starting, failing, moving, their health flipping,
// apps scaled, relabelled, given other service ports, added and removed,
// now and then one in a blue/green deployment group or on a port another
// app has) and checks after each that the table the proxy keeps patching
// equals BuildTable of the same state, and that most updates were patches.
func TestPatchEqualsRebuild(t *testing.T) {
	for _, cfg := range []TableConfig{
		{Groups: []string{"*"}, Site: "paris"},
		{Groups: []string{"external"}, Site: "tokyo"},
		{Groups: []string{"*"}, StrictMode: true},
	} {
		t.Run(fmt.Sprint(cfg), func(t *testing.T) { patchVsRebuild(t, cfg) })
	}
}

func patchVsRebuild(t *testing.T, cfg TableConfig) {
	rng := rand.New(rand.NewPCG(7, uint64(len(cfg.Site))))
	labelSets := []map[string]string{
		nil,
		{"HAPROXY_GROUP": "external"},
		{"HAPROXY_GROUP": "internal"},
		{"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_GROUP": "external"},
		{"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_PATH": "/api", "HAPROXY_0_ENABLED": "true"},
		{"HAPROXY_0_VHOST": "b.example.com", "HAPROXY_0_MODE": "http", "HAPROXY_0_STICKY": "true", "HAPROXY_0_ENABLED": "true"},
		{"HAPROXY_0_FRONTEND_HEAD": "x", "HAPROXY_0_MODE": "udp"},
		{"HAPROXY_0_PORT": "nope", "HAPROXY_GROUP": "external"},
		{"HAPROXY_0_BALANCE": "leastconn", "HAPROXY_0_ENABLED": "true", "HAPROXY_GROUP": "external"},
	}
	var m api.Mirror
	index := uint64(1)
	versions := []string{"2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z", "2026-11-03T00:00:00.000Z"}
	newApp := func(i int) api.App {
		a := hostApp(fmt.Sprintf("/app-%02d", i), versions[rng.IntN(3)], labelSets[rng.IntN(len(labelSets))], 10000+i)
		if rng.IntN(4) == 0 {
			a.HealthChecks = []api.HealthCheck{{Protocol: "HTTP", Path: "/"}}
		}
		return a
	}
	ns := []string{"n1", "n2", "n3", "elsewhere"}
	newTask := func(app string, n int) api.Task {
		tk := runningTask(fmt.Sprintf("%s.%d", app[1:], n), app, ns[rng.IntN(len(ns))], 31000+rng.IntN(1000))
		if rng.IntN(3) == 0 {
			tk = alive(tk, rng.IntN(2) == 0)
		}
		return tk
	}
	snap := &api.Changes{Index: index, Snapshot: true, Nodes: nodes(), NodesHash: "h"}
	for i := 0; i < 40; i++ {
		a := newApp(i)
		snap.Apps = append(snap.Apps, a)
		for k := 0; k < rng.IntN(3); k++ {
			snap.Tasks = append(snap.Tasks, newTask(a.ID, k))
		}
	}
	m.Apply(snap)
	st := m.State()
	b := buildFull(st, cfg)
	patched, steps := 0, 600
	for step := 0; step < steps; step++ {
		index++
		c := &api.Changes{Index: index}
		cur := m.State()
		for n := 0; n < 1+rng.IntN(2); n++ {
			switch r := rng.IntN(20); {
			case r < 4 && len(cur.Tasks) > 0: // a task's state or health changes
				tk := *cur.Tasks[rng.IntN(len(cur.Tasks))]
				switch rng.IntN(3) {
				case 0:
					tk.State = []string{api.TaskRunning, api.TaskKilled, api.TaskStaging, api.TaskUnreachable}[rng.IntN(4)]
				case 1:
					tk = alive(tk, rng.IntN(2) == 0)
				default:
					tk.Host = ns[rng.IntN(len(ns))]
					tk.SlaveID = "agent-" + tk.Host
				}
				c.Tasks = append(c.Tasks, tk)
			case r < 8: // a task starts
				c.Tasks = append(c.Tasks, newTask(fmt.Sprintf("/app-%02d", rng.IntN(50)), 100+step))
			case r < 10 && len(cur.Tasks) > 0: // a task goes
				c.Deleted = &api.Deleted{Tasks: []string{cur.Tasks[rng.IntN(len(cur.Tasks))].ID}}
			case r < 13: // an app comes or changes (labels, version, port)
				a := newApp(rng.IntN(50))
				if rng.IntN(8) == 0 {
					a.PortDefinitions = []api.PortDefinition{{Port: 10000 + rng.IntN(50)}} // maybe taken
				}
				if rng.IntN(30) == 0 {
					a.Labels = map[string]string{"HAPROXY_DEPLOYMENT_GROUP": "bg", "HAPROXY_GROUP": "external"}
				}
				c.Apps = append(c.Apps, a)
			case r < 14 && len(cur.Apps) > 0: // an app goes (its tasks stay a while)
				c.Deleted = &api.Deleted{Apps: []string{cur.Apps[rng.IntN(len(cur.Apps))].ID}}
			case r < 15: // many apps at once
				for i := 0; i < 20; i++ {
					c.Apps = append(c.Apps, newApp(rng.IntN(50)))
				}
			default: // nothing but the index
			}
		}
		m.Apply(c)
		st := m.State()
		if _, ok := patchTable(&tableBuild{}, st, cfg); ok {
			t.Fatal("patched a build that is not patchable")
		}
		nb, ok := patchTable(b, st, cfg)
		if ok {
			patched++
		} else {
			nb = buildFull(st, cfg)
		}
		want, wantProblems := BuildTable(st, cfg)
		if !reflect.DeepEqual(nb.table, want) || !reflect.DeepEqual(nb.problems, wantProblems) {
			t.Fatalf("step %d: the patched table differs from a rebuild:\npatched %s\nrebuilt %s\nproblems %v\nwant     %v",
				step, dumpTable(nb.table), dumpTable(want), nb.problems, wantProblems)
		}
		b = nb
	}
	if patched < steps/2 {
		t.Fatalf("only %d of %d updates were patches", patched, steps)
	}
}

func dumpTable(t *Table) string {
	s := fmt.Sprintf("index %d, %d services:", t.Index, len(t.Services))
	for _, sv := range t.Services {
		s += fmt.Sprintf("\n  %+v", *sv)
	}
	return s
}

// TestSwapKeepsUnchangedRoutes applies random changes through a Mirror to
// a proxy and checks after each swap that every route holds exactly the
// backends its service names (primary, fallback, draining, cookies), that
// the route of a service the patched table kept is the one of the swap
// before, and that a changed service got a new one.
func TestSwapKeepsUnchangedRoutes(t *testing.T) {
	p, err := New(testConfig(newFakeSource()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.shutdown)
	rng := rand.New(rand.NewPCG(11, 12))
	const napps = 12
	ports := make([]int, 0, napps)
	for len(ports) < napps {
		// Distinct: two apps on one port would share a service.
		if p := freePort(t); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	newApp := func(i int) api.App {
		a := hostApp(fmt.Sprintf("/app-%02d", i), "2026-11-01T00:00:00.000Z", nil, ports[i])
		if rng.IntN(3) == 0 {
			a.Labels = map[string]string{"HAPROXY_0_MODE": "http", "HAPROXY_0_STICKY": "true"}
		}
		return a
	}
	ns := []string{"n1", "n2", "n3"}
	var m api.Mirror
	snap := &api.Changes{Index: 1, Snapshot: true, Nodes: nodes(), NodesHash: "h"}
	for i := 0; i < napps; i++ {
		snap.Apps = append(snap.Apps, newApp(i))
		snap.Tasks = append(snap.Tasks, runningTask(fmt.Sprintf("app-%02d.0", i), fmt.Sprintf("/app-%02d", i), ns[rng.IntN(3)], 31000+i))
	}
	m.Apply(snap)
	p.Apply(m.State())
	addrs := func(bs []*backend) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.addr)
		}
		return out
	}
	kept, renewed := 0, 0
	for step := 0; step < 200; step++ {
		prevRT := p.rt.Load()
		c := &api.Changes{Index: uint64(step + 2)}
		i := rng.IntN(napps)
		app := fmt.Sprintf("/app-%02d", i)
		switch rng.IntN(3) {
		case 0:
			c.Apps = []api.App{newApp(i)}
		case 1:
			c.Tasks = []api.Task{alive(runningTask(fmt.Sprintf("app-%02d.%d", i, rng.IntN(3)), app, ns[rng.IntN(3)], 31000+rng.IntN(100)), rng.IntN(2) == 0)}
		default:
			c.Deleted = &api.Deleted{Tasks: []string{fmt.Sprintf("app-%02d.%d", i, rng.IntN(3))}}
		}
		m.Apply(c)
		p.Apply(m.State())
		rt := p.rt.Load()
		if len(rt.routes) != len(rt.table.Services) {
			t.Fatalf("step %d: %d routes for %d services", step, len(rt.routes), len(rt.table.Services))
		}
		for k, s := range rt.table.Services {
			r := rt.byPort[s.ServicePort]
			if r == nil || r != rt.routes[k] || r.svc != s {
				t.Fatalf("step %d: service port %d has no route of its own", step, s.ServicePort)
			}
			var primary, fallback, draining, cookies []string
			for _, be := range s.Backends {
				switch {
				case be.Draining:
					draining = append(draining, be.Addr)
					continue
				case be.Fallback:
					fallback = append(fallback, be.Addr)
				default:
					primary = append(primary, be.Addr)
				}
				cookies = append(cookies, be.ServerID)
			}
			var gotCookies []string
			for id := range r.byCookie {
				gotCookies = append(gotCookies, id)
			}
			slices.Sort(cookies)
			slices.Sort(gotCookies)
			if !slices.Equal(addrs(r.primary), primary) || !slices.Equal(addrs(r.fallback), fallback) ||
				!slices.Equal(addrs(rt.draining[r]), draining) || !slices.Equal(gotCookies, cookies) {
				t.Fatalf("step %d: route of %s holds %v %v %v %v, its service %v %v %v %v", step, s.Name,
					addrs(r.primary), addrs(r.fallback), addrs(rt.draining[r]), gotCookies, primary, fallback, draining, cookies)
			}
			for _, b := range append(append(r.primary, r.fallback...), rt.draining[r]...) {
				if p.backends[b.addr] != b {
					t.Fatalf("step %d: route of %s holds a backend the proxy dropped: %s", step, s.Name, b.addr)
				}
			}
			old := prevRT.byPort[s.ServicePort]
			switch {
			case old != nil && old.svc == s:
				kept++
				if r != old {
					t.Fatalf("step %d: the unchanged service %s got a new route", step, s.Name)
				}
			case r == old:
				t.Fatalf("step %d: the changed service %s kept its old route", step, s.Name)
			default:
				renewed++
			}
		}
	}
	if kept < 100*napps || renewed < 50 {
		t.Fatalf("%d routes kept, %d renewed: want most kept and some renewed", kept, renewed)
	}
}
