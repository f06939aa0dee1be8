package marathon

import (
	"context"
	"fmt"
	"testing"

	"github.com/weftnet/weft/sched/api"
)

// Instances spread over agents, then sites, unless resources or
// constraints say otherwise; apps launched one round at a time spread too.
func TestSpreadByDefault(t *testing.T) {
	t.Run("one app over agents", func(t *testing.T) {
		e := newEnv(t)
		if r := e.do("PUT", "/v2/apps/web", `{"cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":6}`); r.Status != 201 {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		e.reconcile()
		offers := []api.Offer{offer("a1", "h1", 4, 4096), offer("a2", "h2", 4, 4096), offer("a3", "h3", 4, 4096)}
		res := e.f.ResourceOffers(context.Background(), offers)
		got := map[string]int{}
		for _, l := range res.Launches {
			got[l.OfferID]++
		}
		if len(res.Launches) != 6 || got["o-a1"] != 2 || got["o-a2"] != 2 || got["o-a3"] != 2 {
			t.Fatalf("want 2 instances on each of 3 agents, got %v", got)
		}
	})
	t.Run("over sites before a second agent of a site", func(t *testing.T) {
		e := newEnv(t)
		if r := e.do("PUT", "/v2/apps/web", `{"cmd":"sleep 1000","cpus":0.1,"mem":16,"instances":2}`); r.Status != 201 {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		e.reconcile()
		a1, a2, b1 := offer("a1", "h1", 4, 4096), offer("a2", "h2", 4, 4096), offer("b1", "h3", 4, 4096)
		a1.Site, a2.Site, b1.Site = "east", "east", "west"
		res := e.f.ResourceOffers(context.Background(), []api.Offer{a1, a2, b1})
		sites := map[string]bool{}
		for _, l := range res.Launches {
			for _, o := range []api.Offer{a1, a2, b1} {
				if o.ID == l.OfferID {
					sites[o.Site] = true
				}
			}
		}
		if len(res.Launches) != 2 || !sites["east"] || !sites["west"] {
			t.Fatalf("want one instance per site, got %d launches on %v", len(res.Launches), sites)
		}
	})
	t.Run("single-instance apps, one round each", func(t *testing.T) {
		e := newEnv(t)
		got := map[string]int{}
		for i := 0; i < 10; i++ {
			if r := e.do("PUT", fmt.Sprintf("/v2/apps/app%d", i), `{"cmd":"sleep 1000","cpus":0.5,"mem":64,"instances":1}`); r.Status != 201 {
				t.Fatalf("PUT: %d %s", r.Status, r.Body)
			}
			e.reconcile()
			// The offers carry what is free after the earlier launches.
			offers := []api.Offer{offer("a1", "h1", 8-0.5*float64(got["o-a1"]), 8192), offer("a2", "h2", 8-0.5*float64(got["o-a2"]), 8192)}
			res := e.f.ResourceOffers(context.Background(), offers)
			if len(res.Launches) != 1 {
				t.Fatalf("app%d: %d launches", i, len(res.Launches))
			}
			got[res.Launches[0].OfferID]++
			e.commit(res, offers)
		}
		if got["o-a1"] != 5 || got["o-a2"] != 5 {
			t.Fatalf("want 5 apps on each agent, got %v", got)
		}
	})
	t.Run("resources decide first", func(t *testing.T) {
		e := newEnv(t)
		if r := e.do("PUT", "/v2/apps/big", `{"cmd":"sleep 1000","cpus":1,"mem":16,"instances":3}`); r.Status != 201 {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
		e.reconcile()
		res := e.f.ResourceOffers(context.Background(), []api.Offer{offer("a1", "h1", 0.5, 4096), offer("a2", "h2", 4, 4096)})
		for _, l := range res.Launches {
			if l.OfferID != "o-a2" {
				t.Fatalf("a launch on the agent without the CPUs: %+v", l.OfferID)
			}
		}
		if len(res.Launches) != 3 {
			t.Fatalf("want all 3 on the agent that fits, got %d", len(res.Launches))
		}
	})
}
