package sched

import (
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftnet/weft/sched/api"
)

// handleRaftConfiguration serves GET /v1/operator/raft/configuration.
func (m *Master) handleRaftConfiguration(w http.ResponseWriter, r *http.Request) {
	f := m.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading the raft configuration: "+err.Error())
		return
	}
	status := map[string]string{}
	for _, n := range m.cfg.Members.Nodes() {
		if isMaster(n) {
			status[raftID(n)] = n.Status
		}
	}
	_, leaderID := m.store.Raft().LeaderWithID()
	out := api.RaftConfiguration{Servers: []api.RaftPeer{}, Index: f.Index()}
	for _, s := range f.Configuration().Servers {
		st := status[string(s.ID)]
		if st == "" {
			st = "unknown"
		}
		if string(s.ID) == m.store.cfg.NodeID {
			st = NodeAlive
		}
		out.Servers = append(out.Servers, api.RaftPeer{
			ID: string(s.ID), Address: string(s.Address), Leader: s.ID == leaderID,
			Voter: s.Suffrage == raft.Voter, Status: st,
		})
	}
	sort.Slice(out.Servers, func(i, j int) bool { return out.Servers[i].ID < out.Servers[j].ID })
	writeJSON(w, http.StatusOK, out)
}

// handleRemoveRaftPeer serves DELETE /v1/operator/raft/peer?id=ID.
func (m *Master) handleRemoveRaftPeer(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		writeError(w, http.StatusBadRequest, "query parameter id is required: the raft server id to remove (see `weft operator raft list-peers`)")
		return
	}
	servers := m.store.RaftServers()
	if _, ok := servers[id]; !ok {
		writeError(w, http.StatusNotFound, "no raft server with id "+id+" (see `weft operator raft list-peers`)")
		return
	}
	if id == m.store.cfg.NodeID && len(servers) == 1 {
		writeError(w, http.StatusConflict, "refusing to remove "+id+": it is the only raft server")
		return
	}
	if err := m.store.Raft().RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "removing raft server "+id+": "+err.Error())
		return
	}
	m.log.Warn("raft server removed by an operator", "id", id)
	w.WriteHeader(http.StatusOK)
}
