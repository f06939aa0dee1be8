package sched

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// stateCache keeps the last encoded /v1/state answer: many dns and lb
// instances ask for the same index.
type stateCache struct {
	mu     sync.Mutex
	index  uint64
	gen    uint64
	leader string
	body   []byte
	gz     []byte // body gzipped, once a client asked for it
}

// gzippedState returns body compressed, cached while body is the cached
// answer.
func (m *Master) gzippedState(body []byte) []byte {
	c := &m.stateC
	c.mu.Lock()
	defer c.mu.Unlock()
	same := len(c.body) == len(body) && len(body) > 0 && &c.body[0] == &body[0]
	if same && c.gz != nil {
		return c.gz
	}
	gz := gzipBytes(body)
	if same {
		c.gz = gz
	}
	return gz
}

// State builds the whole cluster view at the store's current index.
func (m *Master) State() api.State {
	st := api.State{Domain: m.cfg.Domain, Leader: m.leaderAPI()}
	m.store.Read(func(index uint64, t map[string]map[string]*Entry) {
		st.Index = index
		st.Apps = make([]*api.App, 0, len(t[TableApps]))
		for _, e := range t[TableApps] {
			a := *e.Value.(*api.App)
			st.Apps = append(st.Apps, &a)
		}
		st.Tasks = make([]*api.Task, 0, len(t[TableTasks]))
		for _, e := range t[TableTasks] {
			tk := e.Value.(*TaskRecord).Task
			st.Tasks = append(st.Tasks, &tk)
		}
		st.Deployments = make([]api.Deployment, 0, len(t[TableDeployments]))
		for _, e := range t[TableDeployments] {
			st.Deployments = append(st.Deployments, *e.Value.(*api.Deployment))
		}
		st.Jobs = make([]api.Job, 0, len(t[TableJobs]))
		for _, e := range t[TableJobs] {
			st.Jobs = append(st.Jobs, *e.Value.(*api.Job))
		}
	})
	sort.Slice(st.Apps, func(i, j int) bool { return st.Apps[i].ID < st.Apps[j].ID })
	sort.Slice(st.Tasks, func(i, j int) bool { return st.Tasks[i].ID < st.Tasks[j].ID })
	sort.Slice(st.Deployments, func(i, j int) bool { return st.Deployments[i].ID < st.Deployments[j].ID })
	sort.Slice(st.Jobs, func(i, j int) bool { return st.Jobs[i].Name < st.Jobs[j].Name })
	st.Nodes = m.Nodes()
	if st.Nodes == nil {
		st.Nodes = []api.Node{}
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	return st
}

// encodedState returns the JSON of State, cached per (index, membership).
func (m *Master) encodedState() ([]byte, error) {
	gen, _ := m.membersChanged()
	idx := m.store.Index()
	leader := m.leaderAPI()
	c := &m.stateC
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body != nil && c.index == idx && c.gen == gen && c.leader == leader {
		return c.body, nil
	}
	st := m.State()
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	// The state may be newer than idx; cache it under what it holds.
	c.index, c.gen, c.leader, c.body, c.gz = st.Index, gen, leader, b, nil
	return b, nil
}

// handleState serves GET /v1/state?index=N&wait=30s: a blocking query that
// returns once the store index is above N or the membership changed, or
// after wait (capped at 5 min). N = 0, or N above the current index, answers
// at once.
func (m *Master) handleState(w http.ResponseWriter, r *http.Request) {
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
	// An index above ours comes from another store (a master that lost its
	// data): answer at once so the client resyncs.
	if cur := m.store.Index(); after > 0 && cur == after {
		_, memCh := m.membersChanged()
		if !m.waitPast(r, after, wait, memCh) {
			return
		}
	}
	b, err := m.encodedState()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the state: "+err.Error())
		return
	}
	writeJSONBody(w, r, b, func() []byte { return m.gzippedState(b) })
}

// handleNodes serves GET /v1/nodes.
func (m *Master) handleNodes(w http.ResponseWriter, r *http.Request) {
	nodes := m.Nodes()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}

// waitPast holds a long poll at index after until the store moves past it,
// memCh (taken from membersChanged before the caller looked at the
// membership) fires, or wait passes. It reports false when the client went
// away, so there is nobody to answer.
func (m *Master) waitPast(r *http.Request, after uint64, wait time.Duration, memCh <-chan struct{}) bool {
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	go func() {
		select {
		case <-memCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	_, _ = m.store.Watch(ctx, after)
	return r.Context().Err() == nil
}
