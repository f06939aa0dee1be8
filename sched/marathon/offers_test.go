package marathon

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/sched/api"
)

func TestPlanOffers(t *testing.T) {
	docker := func(a *api.App) { a.Container = &api.Container{Type: "DOCKER"} }
	unique := func(a *api.App) { a.Constraints = [][]string{{"hostname", "UNIQUE"}} }
	type want struct {
		launches []string // offer id → task id
		declines []string // offer id: reasons
		wants    bool
		stats    []string // app: processed/unused reasons
	}
	cases := []struct {
		name   string
		v      *view
		offers []api.Offer
		cands  []string
		bo     map[string]backoffState
		want   want
	}{
		{
			name:   "instances spread over agents",
			v:      planView([]*api.App{planApp("/a", 2)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000), offer("a2", "h2", 4, 1000)},
			want: want{launches: []string{"o-a1 a.1", "o-a2 a.2"},
				stats: []string{"/a: 2/0 map[] launched"}},
		},
		{
			name:   "the instance already running on h1 sends the next to h2; h1, fit but not needed, is not declined",
			v:      planView([]*api.App{planApp("/a", 2)}, planTask("/a", "a.0", api.TaskRunning)),
			offers: []api.Offer{offer("a1", "h1", 4, 1000), offer("a2", "h2", 4, 1000)},
			want: want{launches: []string{"o-a2 a.1"},
				stats: []string{"/a: 2/1 map[] launched"}},
		},
		{
			name:   "too little memory: declined with the reason, and the app still wants offers",
			v:      planView([]*api.App{planApp("/a", 1, func(a *api.App) { a.Mem = 2000 })}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			want: want{declines: []string{"o-a1: InsufficientMemory"}, wants: true,
				stats: []string{"/a: 1/1 map[InsufficientMemory:1] last=[o-a1 InsufficientMemory]"}},
		},
		{
			name:   "a docker app needs the docker capability",
			v:      planView([]*api.App{planApp("/a", 1, docker)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			want: want{declines: []string{"o-a1: NoCapability"}, wants: true,
				stats: []string{"/a: 1/1 map[NoCapability:1] last=[o-a1 NoCapability]"}},
		},
		{
			name:   "UNIQUE hostname: one instance per host, the rest waits",
			v:      planView([]*api.App{planApp("/a", 2, unique)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			want: want{launches: []string{"o-a1 a.1"}, wants: true,
				stats: []string{"/a: 1/0 map[UnfulfilledConstraint:1] launched"}},
		},
		{
			name:   "an app in its launch delay is not placed",
			v:      planView([]*api.App{planApp("/a", 1)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			bo:     map[string]backoffState{"/a": {delay: time.Minute, notBefore: planNow.Add(time.Minute), version: "v1"}},
			want:   want{declines: []string{"o-a1:"}},
		},
		{
			name:   "a backoff of an older version does not hold the app",
			v:      planView([]*api.App{planApp("/a", 1)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			bo:     map[string]backoffState{"/a": {delay: time.Minute, notBefore: planNow.Add(time.Minute), version: "v0"}},
			want:   want{launches: []string{"o-a1 a.1"}, stats: []string{"/a: 1/0 map[] launched"}},
		},
		{
			name:   "only the candidate apps are looked at",
			v:      planView([]*api.App{planApp("/a", 1), planApp("/b", 1)}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			cands:  []string{"/b"},
			want:   want{launches: []string{"o-a1 b.1"}, stats: []string{"/b: 1/0 map[] launched"}},
		},
		{
			name:   "two apps share one offer until it is full",
			v:      planView([]*api.App{planApp("/a", 1, func(a *api.App) { a.Cpus = 3 }), planApp("/b", 1, func(a *api.App) { a.Cpus = 3 })}),
			offers: []api.Offer{offer("a1", "h1", 4, 1000)},
			want: want{launches: []string{"o-a1 a.1"}, wants: true,
				stats: []string{"/a: 1/0 map[] launched", "/b: 1/0 map[InsufficientCpus:1]"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := map[string]int{}
			in := offerInput{v: c.v, offers: c.offers, agents: map[string]facts{}, backoff: c.bo, now: planNow, cfg: DefaultConfig()}
			for _, o := range c.offers {
				fa := facts{Host: o.Hostname, Site: o.Site, Agent: true, Role: "*", Total: o.Resources}
				in.facts = append(in.facts, fa)
				in.agents[o.AgentID] = fa
			}
			if c.cands != nil {
				in.cands = map[string]bool{}
				for _, id := range c.cands {
					in.cands[id] = true
				}
			}
			in.newID = func() string { return "" }
			before := fmt.Sprint(c.offers)
			p := planOffers(in)
			var got want
			for _, l := range p.res.Launches {
				app := l.Task.Task.AppID
				n[app]++
				if !strings.HasPrefix(l.Task.Task.ID, taskIDPrefix(app)+".") || l.Task.Goal != api.GoalRun {
					t.Errorf("launch %+v", l.Task)
				}
				got.launches = append(got.launches, fmt.Sprintf("%s %s.%d", l.OfferID, strings.TrimPrefix(app, "/"), n[app]))
			}
			for _, d := range p.res.Declines {
				if d.RefuseFor != in.cfg.RefuseFor {
					t.Errorf("decline %s refuses for %v", d.OfferID, d.RefuseFor)
				}
				got.declines = append(got.declines, strings.TrimSpace(d.OfferID+": "+strings.Join(d.Reasons, ",")))
			}
			got.wants = p.wants
			for _, id := range p.order {
				s := p.stats[id]
				line := fmt.Sprintf("%s: %d/%d %v", id, s.processed, s.unused, s.reasons)
				if s.launched {
					line += " launched"
				}
				if len(s.last) > 0 {
					var ls []string
					for _, u := range s.last {
						ls = append(ls, u.Offer.ID+" "+strings.Join(u.Reason, ","))
					}
					line += fmt.Sprintf(" last=%v", ls)
				}
				got.stats = append(got.stats, line)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("plan:\n got %+v\nwant %+v", got, c.want)
			}
			if fmt.Sprint(c.offers) != before {
				t.Error("planOffers modified its offers")
			}
		})
	}
}

func TestPlanOffersTaskRecord(t *testing.T) {
	v := planView([]*api.App{planApp("/grp/a", 1)})
	o := offer("a1", "h1", 4, 1000)
	p := planOffers(offerInput{v: v, offers: []api.Offer{o}, facts: []facts{{Host: "h1", Agent: true, Role: "*", Total: o.Resources}},
		agents: map[string]facts{}, now: planNow, cfg: DefaultConfig(), newID: func() string { return "u1" }})
	if len(p.res.Launches) != 1 {
		t.Fatalf("launches %+v", p.res.Launches)
	}
	rec := p.res.Launches[0].Task
	if rec.Task.ID != "grp_a.u1" || rec.Task.AppID != "/grp/a" || rec.Task.Version != "v1" || rec.Task.Framework != Name ||
		rec.Task.Role != "*" || rec.Goal != api.GoalRun || rec.Task.ServicePorts == nil || rec.Task.IPAddresses == nil {
		t.Fatalf("task record %+v", rec.Task)
	}
}
