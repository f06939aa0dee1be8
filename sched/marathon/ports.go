package marathon

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/weftnet/weft/sched/api"
)

// assignServicePorts fills service ports that are 0 (portDefinitions[].port,
// container.portMappings[].servicePort) from [min, max], keeping every
// service port unique across apps as Marathon does. used maps the service
// ports of other apps to their app id; prev are the app's own service ports
// before this change, reused first so an update keeps its ports. A
// requested port held by another app is a 422.
func assignServicePorts(app *api.App, used map[int]string, reserved map[int]string, prev []int, min, max int) []api.ErrorDetail {
	return assignServicePortsBy(app, func(p int) (string, bool) { o, ok := used[p]; return o, ok }, nil, reserved, prev, min, max)
}

// assignServicePortsBy is assignServicePorts with the other apps' service
// ports told by usedBy. skipHeld (nil: none) returns the first port from p
// on that no other app holds: the search for a free port jumps there, past
// a run of held ports, instead of asking usedBy about each.
func assignServicePortsBy(app *api.App, usedBy func(int) (string, bool), skipHeld func(int) int, reserved map[int]string, prev []int, min, max int) []api.ErrorDetail {
	var out []api.ErrorDetail
	taken := map[int]bool{}
	type slot struct {
		get  func() int
		set  func(int)
		path string
	}
	var slots []slot
	if app.Container != nil && len(app.Container.PortMappings) > 0 {
		for i := range app.Container.PortMappings {
			pm := &app.Container.PortMappings[i]
			slots = append(slots, slot{func() int { return pm.ServicePort }, func(v int) { pm.ServicePort = v },
				fmt.Sprintf("/container/portMappings(%d)/servicePort", i)})
		}
	} else {
		for i := range app.PortDefinitions {
			pd := &app.PortDefinitions[i]
			slots = append(slots, slot{func() int { return pd.Port }, func(v int) { pd.Port = v },
				fmt.Sprintf("/portDefinitions(%d)/port", i)})
		}
	}
	for _, s := range slots {
		p := s.get()
		if p == 0 {
			continue
		}
		if other, ok := usedBy(p); ok && other != app.ID {
			out = append(out, api.ErrorDetail{Path: s.path, Errors: []string{
				fmt.Sprintf("Requested service port %d conflicts with a service port in use by app %s", p, other)}})
		} else if what, ok := reserved[p]; ok {
			out = append(out, api.ErrorDetail{Path: s.path, Errors: []string{
				fmt.Sprintf("Requested service port %d is reserved: %s listens on it", p, what)}})
		}
		taken[p] = true
	}
	free := func(p int) bool {
		if taken[p] {
			return false
		}
		if _, ok := reserved[p]; ok {
			return false
		}
		if other, ok := usedBy(p); ok && other != app.ID {
			return false
		}
		return true
	}
	next := min
	for _, s := range slots {
		if s.get() != 0 {
			continue
		}
		assigned := 0
		for _, p := range prev {
			if p >= min && p <= max && free(p) {
				assigned = p
				break
			}
		}
		for assigned == 0 && next <= max {
			if skipHeld != nil {
				if next = skipHeld(next); next > max {
					break
				}
			}
			if free(next) {
				assigned = next
			}
			next++
		}
		if assigned == 0 {
			out = append(out, api.ErrorDetail{Path: s.path, Errors: []string{
				fmt.Sprintf("no free service port left in %d-%d", min, max)}})
			continue
		}
		taken[assigned] = true
		s.set(assigned)
	}
	if app.Container == nil || len(app.Container.PortMappings) == 0 {
		app.Ports = nil
		for _, pd := range app.PortDefinitions {
			app.Ports = append(app.Ports, pd.Port)
		}
	}
	return out
}

// hostPortRequest is one host port a task needs: 0 for any free port from
// the offer, or a fixed port.
func hostPortRequests(app *api.App) []int {
	var out []int
	if app.Container != nil && len(app.Container.PortMappings) > 0 {
		for _, pm := range app.Container.PortMappings {
			if pm.HostPort != nil {
				out = append(out, *pm.HostPort)
			}
		}
		return out
	}
	if networkMode(app) != "host" {
		return nil
	}
	for _, pd := range app.PortDefinitions {
		if app.RequirePorts {
			out = append(out, pd.Port)
		} else {
			out = append(out, 0)
		}
	}
	return out
}

// pickPorts chooses host ports for requests from the offer's ranges,
// skipping ports in busy. It returns nil, false when they do not fit.
// Dynamic ports are taken lowest first.
func pickPorts(requests []int, ranges []api.PortRange, busy map[int]bool) ([]int, bool) {
	return pickPortsFunc(requests, ranges, func(p int) bool { return busy[p] })
}

// pickPortsFunc is pickPorts with busy as a function.
func pickPortsFunc(requests []int, ranges []api.PortRange, busy func(port int) bool) ([]int, bool) {
	if len(requests) == 0 {
		return []int{}, true
	}
	in := func(p int) bool {
		for _, r := range ranges {
			if p >= r.Begin && p <= r.End {
				return true
			}
		}
		return false
	}
	chosen := map[int]bool{}
	out := make([]int, len(requests))
	for i, p := range requests {
		if p == 0 {
			continue
		}
		if !in(p) || busy(p) || chosen[p] {
			return nil, false
		}
		chosen[p] = true
		out[i] = p
	}
	rs := append([]api.PortRange(nil), ranges...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Begin < rs[j].Begin })
	ri, cur := 0, 0
	if len(rs) > 0 {
		cur = rs[0].Begin
	}
	for i, p := range requests {
		if p != 0 {
			continue
		}
		found := false
		for ri < len(rs) && !found {
			if cur < rs[ri].Begin {
				cur = rs[ri].Begin
			}
			for ; cur <= rs[ri].End; cur++ {
				if cur > 0 && !busy(cur) && !chosen[cur] {
					out[i] = cur
					chosen[cur] = true
					found = true
					cur++
					break
				}
			}
			if !found {
				ri++
			}
		}
		if !found {
			return nil, false
		}
	}
	return out, true
}

// portOwners maps each service port to the apps holding it, in id order
// (usually one), for one version of the apps. It is made on first use:
// from the owners of the version before (from, when those were made) with
// the apps written since (changed) looked at again, else from every app.
// A new app's PUT then does not look at every other app's service ports.
type portOwners struct {
	once sync.Once
	done atomic.Bool
	m    map[int][]string
	held []int // the ports of m, ascending

	from     map[int][]string
	fromHeld []int
	fromApps map[string]*api.App
	changed  []string
}

func (o *portOwners) get(v *view) map[int][]string {
	o.once.Do(func() {
		if o.from != nil {
			o.m = maps.Clone(o.from)
			var touched []int
			for _, id := range o.changed {
				if a := o.fromApps[id]; a != nil {
					for _, p := range servicePorts(a) {
						touched = append(touched, p)
						if i := slices.Index(o.m[p], id); i >= 0 {
							o.m[p] = slices.Delete(slices.Clone(o.m[p]), i, i+1)
							if len(o.m[p]) == 0 {
								delete(o.m, p)
							}
						}
					}
				}
			}
			for _, id := range o.changed {
				if a := v.apps[id]; a != nil {
					for _, p := range servicePorts(a) {
						if p == 0 {
							continue
						}
						touched = append(touched, p)
						l := o.m[p]
						if i, found := slices.BinarySearch(l, id); !found {
							o.m[p] = slices.Insert(slices.Clone(l), i, id)
						}
					}
				}
			}
			o.held = slices.Clone(o.fromHeld)
			for _, p := range touched {
				i, found := slices.BinarySearch(o.held, p)
				switch _, now := o.m[p]; {
				case now && !found:
					o.held = slices.Insert(o.held, i, p)
				case !now && found:
					o.held = slices.Delete(o.held, i, i+1)
				}
			}
		} else {
			o.m = map[int][]string{}
			for _, id := range v.appIDs {
				for _, p := range servicePorts(v.apps[id]) {
					if l := o.m[p]; p != 0 && (len(l) == 0 || l[len(l)-1] != id) {
						o.m[p] = append(l, id)
					}
				}
			}
			o.held = slices.Sorted(maps.Keys(o.m))
		}
		o.from, o.fromHeld, o.fromApps, o.changed = nil, nil, nil, nil
		o.done.Store(true)
	})
	return o.m
}

// skipHeld returns the first port from p on that no app other than id
// holds.
func (v *view) skipHeld(p int, id string) int {
	o := v.owners
	if o == nil {
		o = &portOwners{}
	}
	m := o.get(v)
	i, found := slices.BinarySearch(o.held, p)
	for found {
		if l := m[p]; len(l) == 1 && l[0] == id {
			return p // its own
		}
		p, i = p+1, i+1
		found = i < len(o.held) && o.held[i] == p
	}
	return p
}

// serviceOwner is the app other than id holding service port p (the last
// by id when several do), as prepare's view of the other apps' ports.
func (v *view) serviceOwner(p int, id string) (string, bool) {
	var m map[int][]string
	if v.owners != nil {
		m = v.owners.get(v)
	} else {
		m = (&portOwners{}).get(v)
	}
	l := m[p]
	for i := len(l) - 1; i >= 0; i-- {
		if l[i] != id {
			return l[i], true
		}
	}
	return "", false
}
