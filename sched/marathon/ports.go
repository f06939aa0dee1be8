package marathon

import (
	"fmt"
	"sort"

	"github.com/weftnet/weft/sched/api"
)

// assignServicePorts fills service ports that are 0 (portDefinitions[].port,
// container.portMappings[].servicePort) from [min, max], keeping every
// service port unique across apps as Marathon does. used maps the service
// ports of other apps to their app id; prev are the app's own service ports
// before this change, reused first so an update keeps its ports. A
// requested port held by another app is a 422.
func assignServicePorts(app *api.App, used map[int]string, reserved map[int]string, prev []int, min, max int) []api.ErrorDetail {
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
		if other, ok := used[p]; ok && other != app.ID {
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
		if other, ok := used[p]; ok && other != app.ID {
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
