package marathon

import (
	"fmt"
	"testing"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
)

// TestConstrainedPlacementAtScale places UNIQUE hostname and GROUP_BY site
// apps over 1,000 agents on the real master and allocator: every instance
// is placed, quickly, and the constraints hold. (Placement once stopped at
// 0 of 400 tasks at 1,000 agents while it worked at 100.)
func TestConstrainedPlacementAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 agents: not in -short")
	}
	sites := []string{"ams", "fra", "lon", "nyc", "sfo"}
	nodes := make([]api.Node, 1000)
	for i := range nodes {
		id := fmt.Sprintf("agent-%04d", i)
		nodes[i] = api.Node{ID: id, Name: id, Role: api.RoleAgent, Status: sched.NodeAlive, Site: sites[i%len(sites)],
			Address:   fmt.Sprintf("10.0.%d.%d", i/256, i%256+1),
			Resources: api.Resources{Cpus: 8, Mem: 32768, Disk: 100000, Ports: []api.PortRange{{Begin: 31000, End: 32000}}}}
	}
	cfg := sched.DefaultMasterConfig()
	cfg.Store.Dir = ""
	cfg.Members = sched.NewStaticMembers(nodes...)
	fw := New(DefaultConfig())
	cfg.Frameworks = []sched.Framework{fw}
	ctx, url := serveMaster(t, cfg)
	c := api.NewClient(url)
	apps := []struct {
		id, field, op string
	}{
		{"/u1", "hostname", "UNIQUE"}, {"/g1", "site", "GROUP_BY"}, {"/u2", "hostname", "UNIQUE"}, {"/g2", "site", "GROUP_BY"},
	}
	const instances = 100
	start := time.Now()
	for _, a := range apps {
		body := fmt.Sprintf(`{"cmd":"sleep 3600","cpus":0.1,"mem":64,"instances":%d,"portDefinitions":[{"port":0}],"constraints":[[%q,%q]]}`, instances, a.field, a.op)
		if _, err := c.PutApp(ctx, a.id, []byte(body), false); err != nil {
			t.Fatal(err)
		}
	}
	byAgent := map[string]api.Node{}
	for _, n := range nodes {
		byAgent[n.ID] = n
	}
	var tasks map[string][]api.Task
	eventually(t, 20*time.Second, "every instance placed", func() bool {
		tasks = map[string][]api.Task{}
		ts, err := c.Tasks(ctx)
		if err != nil {
			return false
		}
		n := 0
		for _, tk := range ts {
			if tk.SlaveID != "" {
				tasks[tk.AppID] = append(tasks[tk.AppID], tk)
				n++
			}
		}
		return n == len(apps)*instances
	})
	t.Logf("%d tasks placed in %v", len(apps)*instances, time.Since(start))
	for _, a := range apps {
		per := map[string]int{}
		for _, tk := range tasks[a.id] {
			if a.op == "UNIQUE" {
				per[tk.SlaveID]++
			} else {
				per[byAgent[tk.SlaveID].Site]++
			}
		}
		for k, n := range per {
			if a.op == "UNIQUE" && n > 1 {
				t.Errorf("%s: %d tasks on %s", a.id, n, k)
			}
			if a.op == "GROUP_BY" && n != instances/len(sites) {
				t.Errorf("%s: %d tasks at %s, want %d at each site: %v", a.id, n, k, instances/len(sites), per)
			}
		}
	}
}
