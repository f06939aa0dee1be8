package sched

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// LBProblem is what a node's load balancer could not honour for an app
// (a bad HAPROXY_* label, a service port another app holds).
type LBProblem struct {
	AppID    string   `json:"appId"`
	Node     string   `json:"node"`
	Problems []string `json:"problems"`
	Since    string   `json:"since"`
}

// lbProblems keeps the latest report per app. Every node's lb computes the
// same table, so reports are deduplicated: an event goes out only when an
// app's problems change, whichever node reported them.
type lbProblems struct {
	mu   sync.Mutex
	apps map[string]LBProblem
}

// handleLBReport takes POST /v1/lb/problems {appId, node, problems}; an
// empty problems list clears the app.
func (m *Master) handleLBReport(w http.ResponseWriter, r *http.Request) {
	var p LBProblem
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&p); err != nil || p.AppID == "" {
		writeError(w, http.StatusBadRequest, "want a JSON body {\"appId\":\"/x\",\"node\":\"n\",\"problems\":[\"...\"]}")
		return
	}
	if msg := notSelf(r, p.Node); msg != "" {
		writeError(w, http.StatusForbidden, msg)
		return
	}
	m.lb.mu.Lock()
	if m.lb.apps == nil {
		m.lb.apps = map[string]LBProblem{}
	}
	old, had := m.lb.apps[p.AppID]
	changed := !slices.Equal(old.Problems, p.Problems) && (had || len(p.Problems) > 0)
	if len(p.Problems) == 0 {
		delete(m.lb.apps, p.AppID)
	} else if changed || !had {
		p.Since = api.Timestamp(time.Now())
		m.lb.apps[p.AppID] = p
	}
	m.lb.mu.Unlock()
	if changed {
		m.store.Publish(api.NewEvent(api.EventLBConfigProblem, p))
		if len(p.Problems) > 0 {
			m.log.Warn("the load balancer cannot serve part of an app", "app", p.AppID, "problems", p.Problems)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleLBProblems answers GET /v1/lb/problems: every app with problems.
func (m *Master) handleLBProblems(w http.ResponseWriter, r *http.Request) {
	m.lb.mu.Lock()
	out := make([]LBProblem, 0, len(m.lb.apps))
	for _, p := range m.lb.apps {
		out = append(out, p)
	}
	m.lb.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].AppID < out[j].AppID })
	writeJSON(w, http.StatusOK, map[string]any{"problems": out})
}
