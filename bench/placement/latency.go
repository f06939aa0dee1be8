package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/weftnet/weft/sched"
	"github.com/weftnet/weft/sched/api"
	"github.com/weftnet/weft/sched/marathon"
)

// runLatency measures the master's share of launch latency: from PUT
// /v2/apps/{id} to TASK_RUNNING on /v2/events, with a simulated agent that
// long-polls its assignments and reports RUNNING at once (no process is
// started, so this is the floor under the real agent's figure).
func runLatency(n int, timeout time.Duration) (p50, p99 time.Duration, err error) {
	node := agentNodes(1)[0]
	node.Resources.Cpus, node.Resources.Mem = 1000, 1<<20
	members := sched.NewStaticMembers(node)
	_, srv, stop, err := startMaster(members, marathon.New(marathon.DefaultConfig()))
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	client := api.NewClient(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	go simAgent(ctx, client, node.ID)

	evs, err := client.Events(ctx, api.EventStatusUpdate)
	if err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("/latency/app-%03d", i)
		body := map[string]any{"id": id, "cmd": "sleep 3600", "instances": 1, "cpus": 0.01, "mem": 1}
		start := time.Now()
		if _, err := client.PutApp(ctx, id, body, false); err != nil {
			return 0, 0, fmt.Errorf("PUT %s: %w", id, err)
		}
		for running := false; !running; {
			select {
			case ev, ok := <-evs:
				if !ok {
					return 0, 0, fmt.Errorf("event stream ended: %v", ctx.Err())
				}
				var d struct{ AppID, TaskStatus string }
				_ = json.Unmarshal(ev.Data, &d)
				running = d.AppID == id && d.TaskStatus == api.TaskRunning
			case <-ctx.Done():
				return 0, 0, fmt.Errorf("launch %d: %w", i, ctx.Err())
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}

// simAgent plays an agent: it long-polls its assignments, reports RUNNING
// for each new task to run and KILLED for each task to kill, at once.
func simAgent(ctx context.Context, client *api.Client, id string) {
	var after uint64
	reported := map[string]string{}
	for ctx.Err() == nil {
		as, err := client.Assignments(ctx, id, after, 30*time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		after = as.Index
		var ups []api.TaskStatus
		for _, a := range as.Tasks {
			want := api.TaskRunning
			if a.Goal == api.GoalKill {
				want = api.TaskKilled
			}
			if api.Terminal(a.Task.State) || reported[a.Task.ID] == want {
				continue
			}
			reported[a.Task.ID] = want
			ups = append(ups, api.TaskStatus{TaskID: a.Task.ID, State: want, Timestamp: time.Now()})
		}
		if len(ups) > 0 {
			_ = client.PostStatus(ctx, id, ups)
		}
	}
}

// runAgentLoss measures the master's share of recovering from a lost agent:
// from membership declaring the agent failed to all of its tasks running
// elsewhere, with marathon's default unreachableStrategy (inactiveAfter).
// Gossip's own failure detection comes on top in a real cluster.
func runAgentLoss(agents, instances int, timeout time.Duration) (time.Duration, int, error) {
	nodes := agentNodes(agents)
	members := sched.NewStaticMembers(nodes...)
	m, srv, stop, err := startMaster(members, marathon.New(marathon.DefaultConfig()))
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	client := api.NewClient(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	agentCtx := map[string]context.CancelFunc{}
	for _, n := range nodes {
		actx, acancel := context.WithCancel(ctx)
		agentCtx[n.ID] = acancel
		go simAgent(actx, client, n.ID)
	}
	const app = "/loss/web"
	body := map[string]any{"id": app, "cmd": "sleep 3600", "instances": instances, "cpus": 0.1, "mem": 16}
	if _, err := client.PutApp(ctx, app, body, false); err != nil {
		return 0, 0, err
	}
	running := func() (n int, on map[string]int) {
		on = map[string]int{}
		for _, e := range m.Store().List(sched.TableTasks) {
			t := e.Value.(*sched.TaskRecord).Task
			if t.AppID == app && t.State == api.TaskRunning {
				n++
				on[t.SlaveID]++
			}
		}
		return n, on
	}
	for {
		if n, _ := running(); n == instances {
			break
		}
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("the app never ran %d instances", instances)
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, on := running()
	victim, lost := "", 0
	for id, k := range on {
		if k > lost {
			victim, lost = id, k
		}
	}
	agentCtx[victim]() // kill -9: it reports nothing more
	start := time.Now()
	members.SetStatus(victim, sched.NodeFailed)
	for {
		n, on := running()
		if n == instances && on[victim] == 0 {
			return time.Since(start), lost, nil
		}
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("%d of %d running after losing %s", n, instances, victim)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
