package sched

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// stateRank orders the non-terminal task states an agent moves a task
// through; an update that would move a task back is stale (a retried post
// overtaken by a newer one) and is ignored. Terminal states rank highest.
func stateRank(s string) int {
	switch s {
	case api.TaskStaging:
		return 0
	case api.TaskStarting:
		return 1
	case api.TaskRunning:
		return 2
	case api.TaskKilling:
		return 3
	}
	if api.Terminal(s) {
		return 4
	}
	return -1
}

func knownState(s string) bool {
	return stateRank(s) >= 0 || s == api.TaskUnreachable
}

// applyStatus applies one agent status update to a task record. It returns
// the new record, the events the change produces, and whether anything
// changed. A task in a terminal state never changes again; an update that
// would move a task back to an earlier state is ignored; a task marked
// TASK_UNREACHABLE takes whatever its agent reports once it is back.
func applyStatus(old *TaskRecord, st api.TaskStatus, now time.Time) (TaskRecord, []api.Event, bool) {
	rec := *old
	if api.Terminal(old.Task.State) {
		return rec, nil, false
	}
	state := old.Task.State
	if st.State != "" && knownState(st.State) && st.State != api.TaskUnreachable {
		if old.Task.State == api.TaskUnreachable || stateRank(st.State) >= stateRank(old.Task.State) {
			state = st.State
		} else {
			return rec, nil, false // stale
		}
	}
	ts := st.Timestamp
	if ts.IsZero() {
		ts = now
	}
	t := &rec.Task
	t.State = state
	if state == api.TaskRunning && old.Task.State != api.TaskRunning && t.StartedAt == "" {
		t.StartedAt = api.Timestamp(ts)
	}
	if st.Message != "" || state != old.Task.State {
		t.Message = st.Message // the message describes the latest status
	}
	if st.ExitStatus != nil {
		v := *st.ExitStatus
		t.ExitStatus = &v
	}
	if st.IPAddresses != nil {
		t.IPAddresses = slices.Clone(st.IPAddresses)
	}
	if st.HealthCheckResults != nil {
		hs := slices.Clone(st.HealthCheckResults)
		for i := range hs {
			// Marathon 1.4+ names the instance, not the task (and the
			// stored JSON has no taskId: a kept one would differ from
			// the store on every report).
			hs[i].TaskID = ""
			if hs[i].InstanceID == "" {
				hs[i].InstanceID = instanceID(t.ID)
			}
		}
		t.HealthCheckResults = hs
	}
	if st.Ready != nil {
		v := *st.Ready
		t.Ready = &v
	}
	stateChanged := state != old.Task.State
	if stateChanged {
		rec.UpdatedAt = now.UTC().Format(time.RFC3339Nano)
	}
	if !stateChanged && reflect.DeepEqual(rec.Task, old.Task) {
		return *old, nil, false
	}
	var evs []api.Event
	if stateChanged {
		evs = append(evs, statusUpdateEvent(t, now))
	}
	oldH, oldOK := old.Task.Healthy()
	newH, newOK := t.Healthy()
	if newOK && (!oldOK || oldH != newH) {
		evs = append(evs, healthChangedEvent(t, newH, now))
	}
	return rec, evs, true
}

// instanceID derives Marathon's instance id from a task id
// ("app.instance-<uuid>._app.1" → "app.instance-<uuid>"); other ids are
// their own instance.
func instanceID(taskID string) string {
	if i := strings.LastIndex(taskID, "._app."); i > 0 {
		return taskID[:i]
	}
	return taskID
}

func nonNilIPs(ips []api.IPAddress) []api.IPAddress {
	if ips == nil {
		return []api.IPAddress{}
	}
	return ips
}

func nonNilInts(v []int) []int {
	if v == nil {
		return []int{}
	}
	return v
}

// statusUpdateEvent is Marathon's status_update_event for t's current state.
func statusUpdateEvent(t *api.Task, now time.Time) api.Event {
	b, _ := json.Marshal(struct {
		EventType   string          `json:"eventType"`
		Timestamp   string          `json:"timestamp"`
		SlaveID     string          `json:"slaveId"`
		TaskID      string          `json:"taskId"`
		TaskStatus  string          `json:"taskStatus"`
		Message     string          `json:"message"`
		AppID       string          `json:"appId"`
		Host        string          `json:"host"`
		IPAddresses []api.IPAddress `json:"ipAddresses"`
		Ports       []int           `json:"ports"`
		Version     string          `json:"version"`
	}{api.EventStatusUpdate, api.Timestamp(now), t.SlaveID, t.ID, t.State, t.Message, t.AppID, t.Host,
		nonNilIPs(t.IPAddresses), nonNilInts(t.Ports), t.Version})
	return api.Event{Type: api.EventStatusUpdate, Data: b}
}

// healthChangedEvent is Marathon's health_status_changed_event, with the
// keys Marathon 1.4+ sends (HealthStatusChanged: appId, instanceId,
// version, alive; no taskId).
func healthChangedEvent(t *api.Task, alive bool, now time.Time) api.Event {
	b, _ := json.Marshal(struct {
		EventType  string `json:"eventType"`
		Timestamp  string `json:"timestamp"`
		AppID      string `json:"appId"`
		InstanceID string `json:"instanceId"`
		Version    string `json:"version"`
		Alive      bool   `json:"alive"`
	}{api.EventHealthStatusChanged, api.Timestamp(now), t.AppID, instanceID(t.ID), t.Version, alive})
	return api.Event{Type: api.EventHealthStatusChanged, Data: b}
}

// statusPlan is what a batch of status updates from one agent does.
type statusPlan struct {
	Ops     []Op
	Events  []api.Event
	Unknown []string // tasks the master does not know: the agent kills them
	Foreign []string // tasks assigned to another agent: the batch is refused
}

// planStatus turns a batch of updates from agent into store ops (with a
// CAS check on each task touched) and events. get looks a task up.
func planStatus(agent string, updates []api.TaskStatus, get func(id string) (*TaskRecord, uint64, bool), now time.Time) statusPlan {
	var p statusPlan
	type cur struct {
		rec   TaskRecord
		index uint64
		dirty bool
	}
	recs := map[string]*cur{}
	var order []string
	unknown := map[string]bool{}
	for _, u := range updates {
		if u.TaskID == "" {
			continue
		}
		c, ok := recs[u.TaskID]
		if !ok {
			r, idx, found := get(u.TaskID)
			if !found {
				if !unknown[u.TaskID] {
					unknown[u.TaskID] = true
					p.Unknown = append(p.Unknown, u.TaskID)
				}
				continue
			}
			if r.Task.SlaveID != agent {
				p.Foreign = append(p.Foreign, u.TaskID)
				continue
			}
			c = &cur{rec: *r, index: idx}
			recs[u.TaskID] = c
			order = append(order, u.TaskID)
		}
		next, evs, changed := applyStatus(&c.rec, u, now)
		if !changed {
			continue
		}
		c.rec, c.dirty = next, true
		p.Events = append(p.Events, evs...)
	}
	for _, id := range order {
		c := recs[id]
		if !c.dirty {
			continue
		}
		rec := c.rec
		p.Ops = append(p.Ops, Check(TableTasks, id, c.index), Put(TableTasks, id, &rec))
	}
	return p
}
