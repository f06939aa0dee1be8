package marathon

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// An answer to offers is planned, then applied, like a reconcile pass:
// planOffers is pure; ResourceOffers reads its inputs, plans, and records
// what the plan says in the framework's memory.

// offerInput is everything planOffers decides from. It does not modify any
// of it.
type offerInput struct {
	v      *view
	offers []api.Offer
	facts  []facts          // per offer: what constraints see of its agent
	agents map[string]facts // every agent known, by id
	cands  map[string]bool  // the apps that may want launches; nil: all
	// backoff is a copy of the launch backoff per app.
	backoff map[string]backoffState
	now     time.Time
	cfg     Config
	newID   func() string // a task id's unique part
	// reservations are the resident apps' reservations, by app id.
	reservations map[string][]*api.Reservation
}

// appOfferStats is what one answer adds to an app's offer statistics.
type appOfferStats struct {
	processed, unused int
	reasons           map[string]int
	last              []api.UnusedOffer // the unused offers with their reasons (when unused > 0)
	launched          bool
}

// offerPlan is the answer to offers and what to remember of it.
type offerPlan struct {
	res         sched.OfferResult
	wants       bool                      // some app still misses instances
	stats       map[string]*appOfferStats // app id →
	order       []string                  // the app ids of stats, in the order looked at
	backoffDrop []string                  // apps whose backoff a new version reset
	delayed     bool                      // some app waits for its launch delay or its deployment's order
}

// offerLeft is an offer while it is being filled.
type offerLeft struct {
	o      *api.Offer
	left   api.Resources
	busy   map[int]bool
	taken  func(port int) bool
	f      facts
	used   bool
	reason map[string]bool // why the app being placed could not use it
	all    map[string]bool // why any app could not

	// For the app being placed: its instances on the agent's host and
	// site (shared by offers of one host or site), and the host ports
	// picked for its next task here, kept until this offer takes a task.
	onHost, onSite *int
	ports          []int
	portsOK        bool
	portsValid     bool
}

// planOffers fits the apps that miss instances (and are not delayed) into
// the offers — role, capability, cpus, mem, disk, ports, constraints —
// spreading them over agents, and declines the rest with Marathon's
// reasons.
func planOffers(in offerInput) offerPlan {
	v, now := in.v, in.now
	p := offerPlan{stats: map[string]*appOfferStats{}}
	left := make([]*offerLeft, len(in.offers))
	for i := range in.offers {
		o := &in.offers[i]
		ol := &offerLeft{o: o, left: o.Resources, busy: map[int]bool{}, f: in.facts[i], reason: map[string]bool{}, all: map[string]bool{}}
		// Ports held by tasks the store knows on the offered agent (the
		// view's count), and those picked in this answer (ol.busy).
		held, picked := v.ports[o.AgentID], ol.busy
		ol.taken = func(p int) bool { return picked[p] || held[p] > 0 }
		left[i] = ol
	}
	cursor := 0
	var perApp [][]sched.Launch
	nLaunches := 0
	for _, appID := range v.appIDs {
		if in.cands != nil && !in.cands[appID] {
			continue
		}
		app := v.apps[appID]
		if v.held(appID) {
			p.delayed = true // held by its deployment's order: it may miss instances
			continue
		}
		at := classify(app, v.tasks[appID], func(r *sched.TaskRecord) bool { return inactive(app, r, now) })
		launch, _ := launchable(app, at)
		if launch <= 0 {
			continue
		}
		if b, ok := in.backoff[appID]; ok {
			if b.version != app.Version {
				p.backoffDrop = append(p.backoffDrop, appID) // a new version resets the backoff
			} else if b.notBefore.After(now) {
				p.delayed = true
				continue
			}
		}
		var placed, current, groups []facts
		for gi, group := range [][]taskEntry{at.newActive, at.oldActive, at.killing} {
			for _, te := range group {
				a, ok := in.agents[te.rec.Task.SlaveID]
				if !ok {
					a = facts{Host: te.rec.Task.Host, Site: te.rec.Task.Site}
				}
				placed = append(placed, a)
				if gi == 0 {
					current = append(current, a)
				}
			}
		}
		for _, c := range app.Constraints {
			if len(c) >= 2 && strings.EqualFold(c[1], "GROUP_BY") {
				groups = usableAgents(app, in.agents)
				break
			}
		}
		docker := app.Container != nil && strings.EqualFold(app.Container.Type, "DOCKER")
		acs := newAppConstraints(app.Constraints, placed, current, groups)
		reqPorts := hostPortRequests(app)
		failed := make([]bool, len(left))
		reasons := map[string]int{}
		tried := make([]bool, len(left))
		launched := 0
		onHost, onSite := map[string]*int{}, map[string]*int{}
		counter := func(m map[string]*int, k string) *int {
			n := m[k]
			if n == nil {
				n = new(int)
				m[k] = n
			}
			return n
		}
		for _, pl := range placed {
			*counter(onHost, pl.Host)++
			*counter(onSite, pl.Site)++
		}
		for _, ol := range left {
			ol.onHost, ol.onSite = counter(onHost, ol.f.Host), counter(onSite, ol.f.Site)
			ol.portsValid = false
		}
		var rp *residentPlan
		offered := func(agent string) bool {
			for _, ol := range left {
				if ol.o.AgentID == agent {
					return true
				}
			}
			return false
		}
		if isResident(app) {
			rp = newResidentPlan(in.reservations[appID], app, v.tasks[appID])
		}
		// This app's launches, sized once (a Launch is large: appending
		// thousands to one slice copied them over and over).
		launches := make([]sched.Launch, 0, min(launch, 16*len(left)))
		for launched < launch {
			best, bestPorts := -1, []int(nil)
			// A resident app relaunches on a free reservation's agent, or
			// reserves its volumes' disk on a new one while it has fewer
			// reservations than instances.
			var onRes *api.Reservation
			needDisk := app.Disk
			if rp != nil {
				if onRes = rp.next(offered); onRes != nil {
					rp.take(onRes)
				} else if rp.newLeft <= 0 {
					break
				} else {
					needDisk += rp.volDisk
				}
			}
			for k := 0; k < len(left); k++ {
				i := (cursor + k) % len(left)
				if failed[i] {
					continue
				}
				ol := left[i]
				if onRes != nil && ol.o.AgentID != onRes.AgentID {
					continue
				}
				tried[i] = true
				reason := ""
				var ports []int
				switch {
				case !roleAccepted(app.AcceptedResourceRoles, ol.o.Role):
					reason = "UnfulfilledRole"
				case docker && !ol.o.HasCapability("docker"):
					reason = "NoCapability"
				case ol.left.Cpus+1e-9 < app.Cpus:
					reason = "InsufficientCpus"
				case ol.left.Mem+1e-9 < app.Mem:
					reason = "InsufficientMemory"
				case ol.left.Disk+1e-9 < needDisk:
					reason = "InsufficientDisk"
				case ol.left.Gpus < app.Gpus:
					reason = "InsufficientGpus"
				}
				if reason == "" {
					if !ol.portsValid {
						ol.ports, ol.portsOK = pickPortsFunc(reqPorts, ol.left.Ports, ol.taken)
						ol.portsValid = true
					}
					if ports = ol.ports; !ol.portsOK {
						reason = "InsufficientPorts"
					}
				}
				if reason == "" && !acs.meet(ol.f) {
					reason = "UnfulfilledConstraint"
				}
				if reason != "" {
					reasons[reason]++
					ol.reason[reason] = true
					ol.all[reason] = true
					if reason != "UnfulfilledConstraint" {
						failed[i] = true
					}
					continue
				}
				if best < 0 || spreadsBetter(ol, left[best]) {
					best, bestPorts = i, ports
				}
			}
			if best < 0 {
				if onRes != nil {
					continue // this reservation's agent cannot take it now; try the next
				}
				break
			}
			ol, ports := left[best], bestPorts
			rec := newTaskRecord(app, taskIDPrefix(app.ID)+"."+in.newID(), ports, ol.o.Role, in.cfg)
			if rp != nil {
				r := onRes
				if r == nil {
					r = newReservation(app, ol.o, in.newID(), now)
					rp.newLeft--
				}
				p.res.Ops = append(p.res.Ops, onReservation(&rec, r))
			}
			launches = append(launches, sched.Launch{OfferID: ol.o.ID, Task: rec})
			ol.left.Cpus -= app.Cpus
			ol.left.Mem -= app.Mem
			ol.left.Disk -= needDisk
			ol.left.Gpus -= app.Gpus
			for _, port := range ports {
				ol.busy[port] = true
			}
			ol.used = true
			ol.portsValid = false
			acs.placed(ol.f)
			*ol.onHost++
			*ol.onSite++
			launched++
			cursor = best + 1
		}
		if launched < launch {
			p.wants = true
		}
		st := &appOfferStats{reasons: reasons, launched: launched > 0}
		for i, t := range tried {
			if t {
				st.processed++
				if !left[i].used {
					st.unused++
				}
			}
		}
		if st.unused > 0 {
			st.last = []api.UnusedOffer{}
			for i, t := range tried {
				ol := left[i]
				if !t || ol.used || len(ol.reason) == 0 || len(st.last) >= 10 {
					continue
				}
				st.last = append(st.last, api.UnusedOffer{Offer: *ol.o, Reason: sortedKeys(ol.reason), Timestamp: api.Timestamp(now)})
			}
		}
		p.stats[appID] = st
		if len(launches) > 0 {
			perApp = append(perApp, launches)
			nLaunches += len(launches)
		}
		p.order = append(p.order, appID)
		for _, ol := range left {
			clear(ol.reason)
		}
	}
	if nLaunches > 0 {
		p.res.Launches = make([]sched.Launch, 0, nLaunches)
		for _, ls := range perApp {
			p.res.Launches = append(p.res.Launches, ls...)
		}
	}
	for _, ol := range left {
		// An offer every app that looked could use, but none needed, is
		// not declined: a refusal would keep the agent from the next app
		// created, until a revive (at most one per MinReviveInterval)
		// lifts it. The framework wants no offers once its apps are
		// placed, so the allocator does not offer it again before an app
		// needs one, unless an app waits for its launch delay or its
		// deployment's order (it would ask for offers again and again).
		if !ol.used && (len(ol.all) > 0 || p.delayed) {
			p.res.Declines = append(p.res.Declines, sched.Decline{OfferID: ol.o.ID, RefuseFor: in.cfg.RefuseFor, Reasons: sortedKeys(ol.all)})
		}
	}
	return p
}

// newTaskRecord is the record of a task of app launched with the host
// ports picked, in role.
func newTaskRecord(app *api.App, taskID string, ports []int, role string, cfg Config) sched.TaskRecord {
	rec := sched.TaskRecord{
		Task: api.Task{
			ID: taskID, AppID: app.ID, Version: app.Version, Ports: ports,
			ServicePorts: servicePorts(app), IPAddresses: []api.IPAddress{},
			HealthCheckResults: []api.HealthCheckResult{}, Framework: Name, Role: role,
		},
		Spec: taskSpec(app, taskID, ports, cfg.DefaultKillGrace),
		Goal: api.GoalRun,
	}
	if rec.Task.ServicePorts == nil {
		rec.Task.ServicePorts = []int{}
	}
	return rec
}

// ResourceOffers implements sched.Framework: it learns the offered agents'
// facts, plans the answer (planOffers) and records the offer statistics
// /v2/queue shows.
func (f *Framework) ResourceOffers(ctx context.Context, offers []api.Offer) sched.OfferResult {
	m := f.master()
	if m == nil || len(offers) == 0 {
		var res sched.OfferResult
		for _, o := range offers {
			res.Declines = append(res.Declines, sched.Decline{OfferID: o.ID, RefuseFor: f.cfg.RefuseFor})
		}
		return res
	}
	now := f.now()
	v := readView(m.Store())
	in := offerInput{v: v, offers: offers, facts: make([]facts, len(offers)), now: now, cfg: f.cfg, newID: uuid.NewString}

	f.mu.Lock()
	for i := range offers {
		o := &offers[i]
		role := o.Role
		if role == "" {
			role = "*"
		}
		fa := facts{Host: o.Hostname, Site: o.Site, Attrs: o.Attributes, Agent: true, Role: role,
			Docker: o.HasCapability("docker"), Total: o.Resources}
		if known, ok := f.agents[o.AgentID]; ok && known.Total.Cpus >= fa.Total.Cpus && known.Total.Mem >= fa.Total.Mem {
			fa.Total = known.Total
		}
		f.agents[o.AgentID] = fa
		in.facts[i] = fa
	}
	in.agents = make(map[string]facts, len(f.agents))
	for k, a := range f.agents {
		in.agents[k] = a
	}
	in.backoff = make(map[string]backoffState, len(f.backoff))
	for id, b := range f.backoff {
		in.backoff[id] = *b
	}
	r, aw := f.recon, f.appWants
	f.mu.Unlock()

	// Only the apps that wanted launches at the last pass, or changed
	// since, can want them now (nil: look at every app).
	if aw != nil {
		if changed, ok := changedAfter(m.Store(), v, r); ok {
			for id := range aw {
				changed[id] = true
			}
			in.cands = changed
		}
	}

	in.reservations = reservationsByApp(m.Store())
	p := planOffers(in)

	f.mu.Lock()
	for _, id := range p.backoffDrop {
		if b := f.backoff[id]; b != nil && b.version == in.backoff[id].version {
			delete(f.backoff, id)
		}
	}
	for _, id := range p.order {
		d := p.stats[id]
		s := f.stats[id]
		if s == nil {
			s = &offerStats{reasons: map[string]int{}}
			f.stats[id] = s
		}
		s.processed += d.processed
		s.unused += d.unused
		for r, n := range d.reasons {
			s.reasons[r] += n
		}
		if d.unused > 0 {
			s.lastUnused = now
			s.last = append(s.last[:0], d.last...)
		}
		if d.launched {
			s.lastOK = now
		}
		if _, ok := f.since[id]; !ok {
			f.since[id] = now
		}
	}
	f.mu.Unlock()
	f.wants.Store(p.wants)
	return p.res
}
