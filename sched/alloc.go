package sched

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// This file is the allocator's pure core: free resources per agent, offers,
// Dominant Resource Fairness order, refusals and launch validation. The
// loop in allocloop.go feeds it the store and membership and commits what
// it decides.

const eps = 1e-9

// agentUsage is what an agent's non-terminal tasks consume.
type agentUsage struct {
	res   api.Resources // scalars only
	ports map[int]struct{}
}

// usageOf sums the resources of the non-terminal tasks in tasks, per agent
// and per framework (scalars only).
func usageOf(tasks []*TaskRecord) (byAgent map[string]*agentUsage, byFramework map[string]api.Resources) {
	byAgent = map[string]*agentUsage{}
	byFramework = map[string]api.Resources{}
	for _, t := range tasks {
		if t == nil || api.Terminal(t.Task.State) || t.Task.SlaveID == "" {
			continue
		}
		u := byAgent[t.Task.SlaveID]
		if u == nil {
			u = &agentUsage{}
			byAgent[t.Task.SlaveID] = u
		}
		u.res = addScalars(u.res, t.Spec.Resources)
		for _, p := range t.Spec.Ports {
			if u.ports == nil {
				u.ports = map[int]struct{}{}
			}
			u.ports[p] = struct{}{}
		}
		byFramework[t.Task.Framework] = addScalars(byFramework[t.Task.Framework], t.Spec.Resources)
	}
	return byAgent, byFramework
}

func addScalars(a, b api.Resources) api.Resources {
	return api.Resources{Cpus: a.Cpus + b.Cpus, Mem: a.Mem + b.Mem, Disk: a.Disk + b.Disk, Gpus: a.Gpus + b.Gpus}
}

// usedResources is a node's Used: the scalars and the host ports (as
// single-port ranges merged into runs) of its non-terminal tasks.
func usedResources(u *agentUsage) api.Resources {
	if u == nil {
		return api.Resources{}
	}
	r := u.res
	r.Ports = portsToRanges(u.ports)
	return r
}

func portsToRanges(ports map[int]struct{}) []api.PortRange {
	if len(ports) == 0 {
		return nil
	}
	ps := make([]int, 0, len(ports))
	for p := range ports {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	var out []api.PortRange
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].End == p-1 {
			out[n-1].End = p
			continue
		}
		out = append(out, api.PortRange{Begin: p, End: p})
	}
	return out
}

// freeResources is total minus used; ports are the total ranges with the
// used ports cut out. Negative scalars (an agent that shrank) clamp to 0.
func freeResources(total api.Resources, u *agentUsage) api.Resources {
	f := total
	f.Ports = slices.Clone(total.Ports)
	if u == nil {
		return f
	}
	f.Cpus = clamp(total.Cpus - u.res.Cpus)
	f.Mem = clamp(total.Mem - u.res.Mem)
	f.Disk = clamp(total.Disk - u.res.Disk)
	f.Gpus = max(total.Gpus-u.res.Gpus, 0)
	f.Ports = cutPorts(total.Ports, u.ports)
	return f
}

func clamp(v float64) float64 {
	if v < eps {
		return 0
	}
	return v
}

// cutPorts removes used ports from ranges.
func cutPorts(ranges []api.PortRange, used map[int]struct{}) []api.PortRange {
	if len(used) == 0 {
		return slices.Clone(ranges)
	}
	ps := make([]int, 0, len(used))
	for p := range used {
		ps = append(ps, p)
	}
	sort.Ints(ps)
	var out []api.PortRange
	for _, r := range ranges {
		lo := r.Begin
		for _, p := range ps {
			if p < lo || p > r.End {
				continue
			}
			if p > lo {
				out = append(out, api.PortRange{Begin: lo, End: p - 1})
			}
			lo = p + 1
		}
		if lo <= r.End {
			out = append(out, api.PortRange{Begin: lo, End: r.End})
		}
	}
	return out
}

// hasFree reports whether r is worth offering.
func hasFree(r api.Resources) bool {
	return r.Cpus > eps || r.Mem > eps || r.Disk > eps || r.Gpus > 0
}

// schedulable reports whether a node takes tasks: an alive agent with an id.
func schedulable(n api.Node) bool {
	return n.ID != "" && n.Status == NodeAlive && n.Role != api.RoleMaster
}

// nodeHost is the address a task on n is reached at.
func nodeHost(n api.Node) string {
	if n.OverlayIP != "" {
		return n.OverlayIP
	}
	return n.Address
}

// nodeHostname is the offer's hostname: what hostname constraints compare.
func nodeHostname(n api.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.Address
}

// agentFingerprint identifies an agent's free resources and attributes; a
// refusal lapses when it changes.
func agentFingerprint(n api.Node, free api.Resources) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%g/%g/%g/%d/%v/%s/%s/%s", free.Cpus, free.Mem, free.Disk, free.Gpus, free.Ports,
		api.EncodeAttrs(n.Attributes), n.AgentRole, strings.Join(n.Capabilities, ","))
	return b.String()
}

// dominantShare is a framework's largest share of the cluster's cpus, mem
// or disk.
func dominantShare(alloc, total api.Resources) float64 {
	share := 0.0
	for _, p := range [][2]float64{{alloc.Cpus, total.Cpus}, {alloc.Mem, total.Mem}, {alloc.Disk, total.Disk}} {
		if p[1] > eps {
			share = math.Max(share, p[0]/p[1])
		}
	}
	return share
}

// drfOrder sorts framework names by dominant share, lowest first; ties go
// by name so the order is stable.
func drfOrder(names []string, alloc map[string]api.Resources, total api.Resources) []string {
	out := slices.Clone(names)
	shares := make(map[string]float64, len(out))
	for _, n := range out {
		shares[n] = dominantShare(alloc[n], total)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if shares[out[i]] != shares[out[j]] {
			return shares[out[i]] < shares[out[j]]
		}
		return out[i] < out[j]
	})
	return out
}

// refusals remembers declined offers: framework+agent → until when, and
// the agent's fingerprint at the time.
type refusals map[refusalKey]refusal

type refusalKey struct{ framework, agent string }

type refusal struct {
	until       time.Time
	fingerprint string
}

// refused reports whether the framework refused the agent and the refusal
// still holds (not expired, agent unchanged).
func (r refusals) refused(fw, agent, fp string, now time.Time) bool {
	x, ok := r[refusalKey{fw, agent}]
	if !ok {
		return false
	}
	if !now.Before(x.until) || x.fingerprint != fp {
		delete(r, refusalKey{fw, agent})
		return false
	}
	return true
}

func (r refusals) refuse(fw, agent, fp string, until time.Time) {
	r[refusalKey{fw, agent}] = refusal{until: until, fingerprint: fp}
}

// gc drops expired refusals.
func (r refusals) gc(now time.Time) {
	for k, x := range r {
		if !now.Before(x.until) {
			delete(r, k)
		}
	}
}

// offerState is one offer as made, with what is left of it while launches
// are validated against it.
type offerState struct {
	offer api.Offer
	node  api.Node
	left  api.Resources
	ports map[int]struct{} // ports taken by launches so far
}

// takeLaunch checks that spec fits what is left of the offer and takes it.
// It returns why not when it does not fit.
func (o *offerState) take(spec api.TaskSpec) error {
	r := spec.Resources
	switch {
	case r.Cpus < 0 || r.Mem < 0 || r.Disk < 0 || r.Gpus < 0:
		return fmt.Errorf("negative resources")
	case r.Cpus > o.left.Cpus+eps:
		return fmt.Errorf("cpus %g > %g left", r.Cpus, o.left.Cpus)
	case r.Mem > o.left.Mem+eps:
		return fmt.Errorf("mem %g > %g left", r.Mem, o.left.Mem)
	case r.Disk > o.left.Disk+eps:
		return fmt.Errorf("disk %g > %g left", r.Disk, o.left.Disk)
	case r.Gpus > o.left.Gpus:
		return fmt.Errorf("gpus %d > %d left", r.Gpus, o.left.Gpus)
	}
	seen := map[int]struct{}{}
	for _, p := range spec.Ports {
		if _, dup := seen[p]; dup {
			return fmt.Errorf("port %d asked twice", p)
		}
		seen[p] = struct{}{}
		if _, taken := o.ports[p]; taken {
			return fmt.Errorf("port %d already taken in this offer", p)
		}
		if !inRanges(o.offer.Resources.Ports, p) {
			return fmt.Errorf("port %d not offered", p)
		}
	}
	o.left.Cpus = clamp(o.left.Cpus - r.Cpus)
	o.left.Mem = clamp(o.left.Mem - r.Mem)
	o.left.Disk = clamp(o.left.Disk - r.Disk)
	o.left.Gpus -= r.Gpus
	if len(spec.Ports) > 0 && o.ports == nil {
		o.ports = map[int]struct{}{}
	}
	for _, p := range spec.Ports {
		o.ports[p] = struct{}{}
	}
	return nil
}

func inRanges(rs []api.PortRange, p int) bool {
	for _, r := range rs {
		if p >= r.Begin && p <= r.End {
			return true
		}
	}
	return false
}

// rejectedLaunch is a launch the allocator dropped, and why.
type rejectedLaunch struct {
	TaskID string
	Reason string
}

// acceptLaunches validates a framework's launches against its offers and
// fills what the allocator owns in each accepted task. exists reports task
// ids already in the store.
func acceptLaunches(fw string, offers map[string]*offerState, launches []Launch, exists func(id string) bool, now time.Time) ([]TaskRecord, []rejectedLaunch) {
	var (
		out  = make([]TaskRecord, 0, len(launches))
		rej  []rejectedLaunch
		seen = map[string]struct{}{}
	)
	ts := api.Timestamp(now)
	for _, l := range launches {
		id := l.Task.Task.ID
		o, ok := offers[l.OfferID]
		switch {
		case id == "":
			rej = append(rej, rejectedLaunch{id, "task has no id"})
			continue
		case !ok:
			rej = append(rej, rejectedLaunch{id, fmt.Sprintf("offer %q was not made to %s in this round", l.OfferID, fw)})
			continue
		}
		if _, dup := seen[id]; dup || exists(id) {
			rej = append(rej, rejectedLaunch{id, "task id already exists"})
			continue
		}
		if err := o.take(l.Task.Spec); err != nil {
			rej = append(rej, rejectedLaunch{id, "does not fit offer " + l.OfferID + ": " + err.Error()})
			continue
		}
		seen[id] = struct{}{}
		rec := l.Task
		rec.Task.SlaveID = o.node.ID
		rec.Task.Host = nodeHost(o.node)
		rec.Task.Site = o.node.Site
		rec.Task.Region = o.node.Site
		rec.Task.StagedAt = ts
		rec.Task.StartedAt = ""
		rec.Task.State = api.TaskStaging
		rec.Task.Framework = fw
		if len(rec.Task.Ports) == 0 && len(rec.Spec.Ports) > 0 {
			rec.Task.Ports = slices.Clone(rec.Spec.Ports)
		}
		if rec.Task.Ports == nil {
			rec.Task.Ports = []int{}
		}
		rec.Goal = api.GoalRun
		rec.UpdatedAt = now.UTC().Format(time.RFC3339Nano)
		out = append(out, rec)
	}
	return out, rej
}
