package sched

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// agentTracker follows the tasks table and remembers, per agent, the store
// index at which that agent's assignments last changed (a task added,
// changed or removed), so blocking assignment queries wake only for their
// own agent.
type agentTracker struct {
	mu        sync.Mutex
	ready     bool
	base      uint64 // index of the first scan: older queries answer at once
	processed uint64
	tasksGen  uint64                         // raised when any task was added, changed or removed
	last      map[string]uint64              // agent → index of its last change
	byAgent   map[string]map[string]struct{} // agent → task ids
	seen      map[string]seenTask            // task id → what the last scan saw
	changed   chan struct{}                  // closed and replaced after each scan
}

type seenTask struct {
	agent  string
	modify uint64
	gen    uint64
}

func newAgentTracker() *agentTracker {
	return &agentTracker{
		last:    map[string]uint64{},
		byAgent: map[string]map[string]struct{}{},
		seen:    map[string]seenTask{},
		changed: make(chan struct{}),
	}
}

func (t *agentTracker) run(ctx context.Context, s *Store) {
	var gen uint64
	for {
		gen++
		var idx uint64
		s.Read(func(index uint64, tables map[string]map[string]*Entry) {
			idx = index
			t.scan(index, gen, tables[TableTasks])
		})
		if _, err := s.Watch(ctx, idx); err != nil {
			return
		}
	}
}

// scan diffs the tasks table against the previous scan.
func (t *agentTracker) scan(index, gen uint64, tasks map[string]*Entry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	first := !t.ready
	dirty := first
	mark := func(agent string, at uint64) {
		dirty = true
		if !first && agent != "" && at > t.last[agent] {
			t.last[agent] = at
		}
	}
	for id, e := range tasks {
		agent := e.Value.(*TaskRecord).Task.SlaveID
		prev, ok := t.seen[id]
		if !ok || prev.modify != e.ModifyIndex {
			mark(agent, e.ModifyIndex)
			if ok && prev.agent != agent {
				mark(prev.agent, index)
				delete(t.byAgent[prev.agent], id)
			}
			if agent != "" {
				set := t.byAgent[agent]
				if set == nil {
					set = map[string]struct{}{}
					t.byAgent[agent] = set
				}
				set[id] = struct{}{}
			}
		}
		t.seen[id] = seenTask{agent: agent, modify: e.ModifyIndex, gen: gen}
	}
	if len(t.seen) != len(tasks) {
		for id, st := range t.seen {
			if st.gen == gen {
				continue
			}
			mark(st.agent, index)
			delete(t.byAgent[st.agent], id)
			delete(t.seen, id)
		}
	}
	if first {
		t.base = index
		t.ready = true
	}
	t.processed = index
	if dirty {
		t.tasksGen++
	}
	close(t.changed)
	t.changed = make(chan struct{})
}

// tasksChanged returns the tasks generation and a channel closed at the
// next scan.
func (t *agentTracker) tasksChanged() (uint64, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tasksGen, t.changed
}

// since reports whether agent's assignments changed after index, the ids
// of its tasks, the index the answer stands for, and a channel closed at
// the next scan.
func (t *agentTracker) since(agent string, after uint64) (changed bool, ids []string, at uint64, wake <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		return after == 0, nil, 0, t.changed
	}
	last := max(t.last[agent], t.base)
	// An index above ours comes from another store (a master that lost its
	// data): answer at once so the agent resyncs.
	changed = after == 0 || last > after || after > t.processed
	if changed {
		ids = make([]string, 0, len(t.byAgent[agent]))
		for id := range t.byAgent[agent] {
			ids = append(ids, id)
		}
	}
	return changed, ids, t.processed, t.changed
}

// queryWait parses ?wait= (Go duration or seconds), default 30 s, capped.
func queryWait(r *http.Request, def, limit time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		var secs float64
		if _, serr := fmt.Sscanf(v, "%g", &secs); serr != nil {
			return 0, fmt.Errorf("wait=%q: want a duration such as 30s", v)
		}
		if secs != secs || secs > limit.Seconds() { // NaN or beyond the cap
			secs = limit.Seconds()
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return 0, fmt.Errorf("wait=%q: must not be negative", v)
	}
	return min(d, limit), nil
}

func queryIndex(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("index")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("index=%q: want a store index (a non-negative integer)", v)
	}
	return n, nil
}

const maxWait = 5 * time.Minute

// handleAssignments serves GET /v1/agents/{id}/assignments?index=N&wait=30s.
func (m *Master) handleAssignments(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	after, err := queryIndex(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait, err := queryWait(r, 30*time.Second, maxWait)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	extendWriteDeadline(w, wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed, ids, at, wake := m.tracker.since(agent, after)
		if changed {
			writeJSON(w, http.StatusOK, m.assignments(ids, at))
			return
		}
		select {
		case <-wake:
		case <-timer.C:
			_, ids, at, _ := m.tracker.since(agent, 0)
			writeJSON(w, http.StatusOK, m.assignments(ids, max(at, after)))
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (m *Master) assignments(ids []string, at uint64) api.Assignments {
	out := api.Assignments{Index: at, Tasks: make([]api.Assignment, 0, len(ids))}
	sort.Strings(ids)
	for _, id := range ids {
		e, ok := m.store.Get(TableTasks, id)
		if !ok {
			continue
		}
		rec := e.Value.(*TaskRecord)
		out.Tasks = append(out.Tasks, api.Assignment{Task: rec.Task, Spec: rec.Spec, Goal: rec.Goal})
	}
	return out
}

// statusAnswer is the body of a status POST's answer.
type statusAnswer struct {
	// Unknown lists tasks the master does not know; the agent kills them.
	Unknown []string `json:"unknown"`
}

// handleStatus serves POST /v1/agents/{id}/status with []api.TaskStatus.
func (m *Master) handleStatus(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	var updates []api.TaskStatus
	if !decodeBody(w, r, m.cfg.MaxStatusBody, &updates) {
		return
	}
	get := func(id string) (*TaskRecord, uint64, bool) {
		e, ok := m.store.Get(TableTasks, id)
		if !ok {
			return nil, 0, false
		}
		return e.Value.(*TaskRecord), e.ModifyIndex, true
	}
	for attempt := 0; ; attempt++ {
		p := planStatus(agent, updates, get, m.cfg.Now())
		if len(p.Foreign) > 0 {
			writeError(w, http.StatusConflict, fmt.Sprintf("tasks %s are assigned to another agent, not %s; nothing was applied", strings.Join(p.Foreign, ", "), agent))
			return
		}
		ans := statusAnswer{Unknown: p.Unknown}
		if ans.Unknown == nil {
			ans.Unknown = []string{}
		}
		if len(p.Ops) == 0 {
			writeJSON(w, http.StatusOK, ans)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		_, err := m.applyTimed(ctx, "status", p.Ops, p.Events...)
		cancel()
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, ans)
			return
		case errors.Is(err, ErrConflict) && attempt < 8:
			continue
		case errors.Is(err, ErrNotLeader):
			writeError(w, http.StatusServiceUnavailable, "leadership changed while applying the update; retry")
			return
		default:
			writeError(w, http.StatusServiceUnavailable, "applying status updates: "+err.Error())
			return
		}
	}
}

// decodeBody decodes a JSON body into v, answering 400 on bad JSON.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", limit))
			return false
		}
		writeError(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return false
	}
	return true
}
