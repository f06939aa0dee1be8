package sched

import (
	"context"
	"errors"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// lostAgents returns the ids of agents the membership declares gone:
// failed (serf gave up on them) or left. A suspect agent is not lost.
// When absentToo is set, agents that tasks name but the membership does
// not know at all (reaped long ago, or renamed) are lost as well.
func lostAgents(nodes []api.Node, tasks []Entry, absentToo bool) map[string]bool {
	out := map[string]bool{}
	for _, n := range nodes {
		if n.ID != "" && (n.Status == NodeFailed || n.Status == NodeLeft) {
			out[n.ID] = true
		}
	}
	if absentToo {
		known := make(map[string]bool, len(nodes))
		for _, n := range nodes {
			known[n.ID] = true
		}
		for _, e := range tasks {
			t := e.Value.(*TaskRecord).Task
			if t.SlaveID != "" && !known[t.SlaveID] && !api.Terminal(t.State) {
				out[t.SlaveID] = true
			}
		}
	}
	// A node id seen alive under another member entry (an agent that
	// rejoined under a new name) is not lost.
	for _, n := range nodes {
		if n.Status == NodeAlive || n.Status == NodeSuspect {
			delete(out, n.ID)
		}
	}
	return out
}

// planUnreachable marks every non-terminal task of a lost agent
// TASK_UNREACHABLE, with a CAS check per task and a status_update_event each.
func planUnreachable(lost map[string]bool, tasks []Entry, now time.Time) ([]Op, []api.Event) {
	var (
		ops []Op
		evs []api.Event
	)
	for _, e := range tasks {
		rec := e.Value.(*TaskRecord)
		t := rec.Task
		if !lost[t.SlaveID] || api.Terminal(t.State) || t.State == api.TaskUnreachable {
			continue
		}
		next := *rec
		next.Task.State = api.TaskUnreachable
		next.Task.Message = "agent " + t.SlaveID + " is unreachable (failed, left or unknown in membership)"
		next.UpdatedAt = now.UTC().Format(time.RFC3339Nano)
		ops = append(ops, Check(TableTasks, e.Key, e.ModifyIndex), Put(TableTasks, e.Key, &next))
		evs = append(evs, statusUpdateEvent(&next.Task, now))
	}
	return ops, evs
}

// watchAgentLoss runs while leading: at start and on every membership
// change it marks the tasks of failed agents unreachable, in one Apply.
// Once this master has led for AbsentAgentGrace, tasks of agents the
// membership does not know at all are marked too (checked on a timer).
func (m *Master) watchAgentLoss(ctx context.Context) {
	since := m.cfg.Now()
	tick := time.NewTicker(max(m.cfg.AbsentAgentGrace/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		_, ch := m.membersChanged()
		m.markUnreachable(ctx, m.cfg.Now().Sub(since) >= m.cfg.AbsentAgentGrace)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

func (m *Master) markUnreachable(ctx context.Context, absentToo bool) {
	for attempt := 0; attempt < 8; attempt++ {
		tasks := m.store.List(TableTasks)
		lost := lostAgents(m.cfg.Members.Nodes(), tasks, absentToo)
		if len(lost) == 0 {
			return
		}
		ops, evs := planUnreachable(lost, tasks, m.cfg.Now())
		if len(ops) == 0 {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.applyTimed(actx, "agentloss", ops, evs...)
		cancel()
		if err == nil {
			m.log.Warn("agents failed: their tasks are unreachable", "agents", len(lost), "tasks", len(evs))
			return
		}
		if !errors.Is(err, ErrConflict) {
			m.log.Error("marking tasks unreachable", "err", err)
			return
		}
	}
}
