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

	// The simulated agent.
	go func() {
		var after uint64
		reported := map[string]bool{}
		for ctx.Err() == nil {
			as, err := client.Assignments(ctx, node.ID, after, 30*time.Second)
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			after = as.Index
			var ups []api.TaskStatus
			for _, a := range as.Tasks {
				if a.Goal == api.GoalRun && !reported[a.Task.ID] {
					reported[a.Task.ID] = true
					ups = append(ups, api.TaskStatus{TaskID: a.Task.ID, State: api.TaskRunning, Timestamp: time.Now()})
				}
			}
			if len(ups) > 0 {
				_ = client.PostStatus(ctx, node.ID, ups)
			}
		}
	}()

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
