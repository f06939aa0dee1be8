package sched

import (
	"context"
	"errors"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// lostAgents returns the ids of agents the membership declares gone:
// failed (serf gave up on them) or left. A suspect agent is not lost.
func lostAgents(nodes []api.Node) map[string]bool {
	out := map[string]bool{}
	for _, n := range nodes {
		if n.ID != "" && (n.Status == NodeFailed || n.Status == NodeLeft) {
			out[n.ID] = true
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
		next.Task.Message = "agent " + t.SlaveID + " is unreachable (failed in membership)"
		next.UpdatedAt = now.UTC().Format(time.RFC3339Nano)
		ops = append(ops, Check(TableTasks, e.Key, e.ModifyIndex), Put(TableTasks, e.Key, &next))
		evs = append(evs, statusUpdateEvent(&next.Task, now))
	}
	return ops, evs
}

// watchAgentLoss runs while leading: at start and on every membership
// change it marks the tasks of failed agents unreachable, in one Apply.
func (m *Master) watchAgentLoss(ctx context.Context) {
	for {
		_, ch := m.membersChanged()
		m.markUnreachable(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

func (m *Master) markUnreachable(ctx context.Context) {
	for attempt := 0; attempt < 8; attempt++ {
		lost := lostAgents(m.cfg.Members.Nodes())
		if len(lost) == 0 {
			return
		}
		ops, evs := planUnreachable(lost, m.store.List(TableTasks), m.cfg.Now())
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
