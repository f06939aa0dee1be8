package marathon

import (
	"context"
	"testing"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

func siteOffer(id, site, role string) api.Offer {
	o := offer(id, id, 4, 4096)
	o.Site, o.Role = site, role
	return o
}

func sitesOf(e *testEnv, appID string, bySlave map[string]string) map[string]int {
	out := map[string]int{}
	for _, rec := range e.tasks(appID) {
		if rec.Goal == api.GoalRun && !api.Terminal(rec.Task.State) {
			out[bySlave[rec.Task.SlaveID]]++
		}
	}
	return out
}

// GROUP_BY counts only the values of agents the app can use and of its
// own tasks: masters at other sites, and a slave_public agent the app does
// not accept, make no group that pins the minimum at 0.
func TestGroupByIgnoresNodesTheAppCannotUse(t *testing.T) {
	e := newEnv(t)
	res := api.Resources{Cpus: 4, Mem: 4096, Disk: 1000, Ports: []api.PortRange{{Begin: 31000, End: 31100}}}
	e.m.nodes = []api.Node{
		{ID: "m-aws", Name: "m-aws", Role: api.RoleMaster, Site: "aws", Status: sched.NodeAlive},
		{ID: "m-gcp", Name: "m-gcp", Role: api.RoleMaster, Site: "gcp", Status: sched.NodeAlive},
		{ID: "m-lon", Name: "m-lon", Role: api.RoleMaster, Site: "london", Status: sched.NodeAlive},
		{ID: "lon", Name: "lon", Role: api.RoleAgent, Site: "london", Status: sched.NodeAlive, Resources: res},
		{ID: "lap", Name: "lap", Role: api.RoleAgent, Site: "laptop", Status: sched.NodeAlive, Resources: res},
		{ID: "pub", Name: "pub", Role: api.RoleAgent, Site: "aws", AgentRole: "slave_public", Status: sched.NodeAlive, Resources: res},
	}
	e.f.refreshAgents(e.m)
	if r := e.do("PUT", "/v2/apps/spread", `{"cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":4,
		"constraints":[["site","GROUP_BY"]]}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	site := map[string]string{"lon": "london", "lap": "laptop", "pub": "aws"}
	for round := 0; round < 6 && len(e.tasks("/spread")) < 4; round++ {
		e.reconcile()
		offers := []api.Offer{siteOffer("lon", "london", "*"), siteOffer("lap", "laptop", "*"), siteOffer("pub", "aws", "slave_public")}
		for _, rec := range e.commit(e.f.ResourceOffers(context.Background(), offers), offers) {
			e.setState(rec.Task.ID, api.TaskRunning)
		}
	}
	if got := sitesOf(e, "/spread", site); got["london"] != 2 || got["laptop"] != 2 || len(got) != 2 {
		t.Fatalf("4 instances over the two sites the app can use: want london 2, laptop 2, got %v", got)
	}
}

// A rolling restart spreads the new version by its own tasks: the old
// tasks it replaces do not count toward the groups.
func TestGroupByRollingRestartCountsOnlyNewTasks(t *testing.T) {
	e := newEnv(t)
	site := map[string]string{"a": "s1", "b": "s2", "c": "s3"}
	if r := e.do("PUT", "/v2/apps/web", `{"cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":3,
		"constraints":[["site","GROUP_BY"]],"upgradeStrategy":{"minimumHealthCapacity":0,"maximumOverCapacity":0}}`); r.Status != 201 {
		t.Fatalf("PUT: %d %s", r.Status, r.Body)
	}
	all := []api.Offer{siteOffer("a", "s1", "*"), siteOffer("b", "s2", "*"), siteOffer("c", "s3", "*")}
	e.reconcile()
	for _, rec := range e.commit(e.f.ResourceOffers(context.Background(), all), all) {
		e.setState(rec.Task.ID, api.TaskRunning)
	}
	if got := sitesOf(e, "/web", site); got["s1"] != 1 || got["s2"] != 1 || got["s3"] != 1 {
		t.Fatalf("first version: %v", got)
	}
	// Restart; the old task at s1 is gone already, those at s2 and s3 still run.
	e.m.advance(1000)
	if r := e.do("PUT", "/v2/apps/web?force=true", `{"cmd":"sleep 1001"}`); r.Status != 200 {
		t.Fatalf("restart: %d %s", r.Status, r.Body)
	}
	for _, rec := range e.tasks("/web") {
		if rec.Task.SlaveID == "a" {
			e.setState(rec.Task.ID, api.TaskKilled)
		}
	}
	e.reconcile()
	// Only s1's agent has room now: it gets one new task, not two.
	only := []api.Offer{all[0]}
	res := e.f.ResourceOffers(context.Background(), only)
	if len(res.Launches) != 1 {
		t.Fatalf("new version on s1 while s2 and s3 have none: want 1 launch, got %d", len(res.Launches))
	}
}
