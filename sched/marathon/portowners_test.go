package marathon

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// usedServicePorts is how prepare gathered the other apps' service ports
// before the view kept them by port: from every app, for each request.
func usedServicePorts(v *view, id string, prev []int, claimed map[int]string) map[int]string {
	used := map[int]string{}
	for _, oid := range v.appIDs {
		if oid == id {
			continue
		}
		for _, p := range servicePorts(v.apps[oid]) {
			if p != 0 {
				used[p] = oid
			}
		}
	}
	for p, oid := range claimed {
		if p != 0 && oid != id {
			used[p] = oid
		}
	}
	for _, p := range prev {
		if _, inRequest := claimed[p]; !inRequest {
			delete(used, p)
		}
	}
	return used
}

// TestServicePortOwnersFollowTheApps writes random apps (ports shared by
// several apps as an older weft could leave them, ports 0, container port
// mappings, deletions), reading a view after each write as the framework
// does, and checks that otherServicePorts answers for every port what the
// map gathered from every app says, for random requests; that skipHeld
// jumps exactly over the ports some app holds; and that a search for free
// ports that skips them picks what one that asks about every port picks.
func TestServicePortOwnersFollowTheApps(t *testing.T) {
	e := newEnv(t)
	st := e.m.st
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 9))
	port := func() int {
		if rng.IntN(5) == 0 {
			return 0
		}
		return 10000 + rng.IntN(40)
	}
	for step := 0; step < 400; step++ {
		id := fmt.Sprintf("/g%d/app-%02d", rng.IntN(3), rng.IntN(30))
		var ops []sched.Op
		switch r := rng.IntN(10); {
		case r < 2:
			ops = append(ops, sched.Delete(sched.TableApps, id))
		case r < 4:
			app := &api.App{ID: id, Container: &api.Container{Type: "DOCKER"}}
			for i := 0; i < 1+rng.IntN(2); i++ {
				app.Container.PortMappings = append(app.Container.PortMappings, api.PortMapping{ContainerPort: 80 + i, ServicePort: port()})
			}
			ops = append(ops, sched.Put(sched.TableApps, id, app))
		case r < 9:
			app := &api.App{ID: id}
			for i := 0; i < rng.IntN(3); i++ {
				app.PortDefinitions = append(app.PortDefinitions, api.PortDefinition{Port: port()})
			}
			ops = append(ops, sched.Put(sched.TableApps, id, app))
		default: // a task only: the apps stay as they are
			ops = append(ops, sched.Put(sched.TableMeta, fmt.Sprint("x", step), map[string]int{"n": step}))
		}
		if _, err := st.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(4) == 0 {
			continue // views not read at every index
		}
		v := readView(st)
		held := v.owners.get(v)
		if want := slices.Sorted(maps.Keys(held)); !slices.Equal(v.owners.held, want) {
			t.Fatalf("step %d: held ports %v, want %v", step, v.owners.held, want)
		}
		sid := fmt.Sprintf("/g%d/app-%02d", rng.IntN(3), rng.IntN(30))
		for p := 9995; p < 10050; p++ {
			q := p
			for l := held[q]; len(l) > 0 && !(len(l) == 1 && l[0] == sid); l = held[q] {
				q++
			}
			if got := v.skipHeld(p, sid); got != q {
				t.Fatalf("step %d: skipHeld(%d, %s) = %d, want %d (held %v)", step, p, sid, got, q, v.owners.held)
			}
		}
		for q := 0; q < 5; q++ {
			rid := fmt.Sprintf("/g%d/app-%02d", rng.IntN(3), rng.IntN(30))
			var prev []int
			if a := v.apps[rid]; a != nil && rng.IntN(2) == 0 {
				prev = servicePorts(a)
			}
			var claimed map[int]string
			if rng.IntN(2) == 0 {
				claimed = map[int]string{}
				for i := 0; i < rng.IntN(4); i++ {
					claimed[port()] = []string{rid, "/other", "/g0/app-01"}[rng.IntN(3)]
				}
			}
			want := usedServicePorts(v, rid, prev, claimed)
			got := otherServicePorts(v, rid, prev, claimed)
			a1 := &api.App{ID: rid}
			for i := 0; i < 1+rng.IntN(3); i++ {
				a1.PortDefinitions = append(a1.PortDefinitions, api.PortDefinition{Port: port()})
			}
			a2 := &api.App{ID: rid, PortDefinitions: slices.Clone(a1.PortDefinitions)}
			reserved := map[int]string{10000 + rng.IntN(45): "x"}
			e1 := assignServicePortsBy(a1, got, func(p int) int { return v.skipHeld(p, rid) }, reserved, prev, 10000, 10045)
			e2 := assignServicePortsBy(a2, got, nil, reserved, prev, 10000, 10045)
			if !reflect.DeepEqual(a1.PortDefinitions, a2.PortDefinitions) || !reflect.DeepEqual(e1, e2) {
				t.Fatalf("step %d, app %s, prev %v: skipping held ports gave %v %v, asking about each %v %v", step, rid, prev, a1.PortDefinitions, e1, a2.PortDefinitions, e2)
			}
			for p := 0; p < 10050; p += map[bool]int{true: 1, false: 10000}[p >= 10000] {
				o, ok := got(p)
				if wo, wok := want[p]; o != wo || ok != wok {
					t.Fatalf("step %d, app %s, prev %v, claimed %v: port %d held by %q %v, want %q %v", step, rid, prev, claimed, p, o, ok, wo, wok)
				}
			}
		}
	}
}

// An app cannot take the id of a group that holds apps, nor live in an
// app; the first app inside is named (pathClash looks it up in the sorted
// ids).
func TestAppIDClashesWithGroup(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"/a/x", "/a/b/c", "/ab", "/a-b"} {
		if r := e.do("PUT", "/v2/apps"+id, `{"cmd":"sleep 1","cpus":0.01,"mem":8}`); r.Status >= 300 {
			t.Fatalf("PUT %s: %d %s", id, r.Status, r.Body)
		}
	}
	r := e.do("PUT", "/v2/apps/a", `{"cmd":"sleep 1","cpus":0.01,"mem":8}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), "/a is a group (it holds /a/b/c)") {
		t.Fatalf("PUT /a: %d %s", r.Status, r.Body)
	}
	r = e.do("PUT", "/v2/apps/ab/c", `{"cmd":"sleep 1","cpus":0.01,"mem":8}`)
	if r.Status != 422 || !strings.Contains(string(r.Body), "/ab is an app") {
		t.Fatalf("PUT /ab/c: %d %s", r.Status, r.Body)
	}
	if r := e.do("PUT", "/v2/apps/a-b/d", `{"cmd":"sleep 1","cpus":0.01,"mem":8}`); r.Status != 422 {
		t.Fatalf("PUT /a-b/d: %d %s", r.Status, r.Body)
	}
	if r := e.do("PUT", "/v2/apps/b", `{"cmd":"sleep 1","cpus":0.01,"mem":8}`); r.Status >= 300 {
		t.Fatalf("PUT /b: %d %s", r.Status, r.Body)
	}
}
