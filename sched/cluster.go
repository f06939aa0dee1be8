package sched

import (
	"context"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weftnet/weft/sched/api"
)

// Multi-master: masters find each other through Members (nodes whose role
// is master or master+agent). With BootstrapExpect ≥ 2 a new master waits
// until it sees that many masters alive, then every one of them bootstraps
// raft with the same set of voters. Afterwards the leader adds masters that
// join later as voters and removes masters that leave gracefully.

// raftID is a master's raft server id: its member name (serf's unique
// name), else its id. Store.NodeID must follow the same rule.
func raftID(n api.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return n.ID
}

func isMaster(n api.Node) bool {
	return n.Role == api.RoleMaster || n.Role == api.RoleBoth
}

// peerRaftAddr is the raft address of another master.
func (m *Master) peerRaftAddr(n api.Node) string {
	if m.cfg.PeerRaftAddr != nil {
		return m.cfg.PeerRaftAddr(n)
	}
	host := n.Address
	if host == "" {
		return ""
	}
	return net.JoinHostPort(host, strconv.Itoa(m.cfg.RaftPort))
}

// masterPeers returns the alive masters as raft voters (id → address); this
// master is always included with its own address.
func (m *Master) masterPeers() map[string]string {
	out := map[string]string{}
	for _, n := range m.cfg.Members.Nodes() {
		if !isMaster(n) || n.Status != NodeAlive || raftID(n) == "" {
			continue
		}
		if addr := m.peerRaftAddr(n); addr != "" {
			out[raftID(n)] = addr
		}
	}
	out[m.store.cfg.NodeID] = m.store.LocalRaftAddr()
	return out
}

// bootstrapExpect waits until BootstrapExpect masters are alive, then
// bootstraps raft with them. It returns at once when this server already
// has raft state.
func (m *Master) bootstrapExpect(ctx context.Context) {
	if m.cfg.BootstrapExpect < 2 || m.store.hasRaftState() {
		return
	}
	sub, cancel := m.cfg.Members.Subscribe()
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if m.store.hasRaftState() {
			return // another master's bootstrap reached us first
		}
		peers := m.masterPeers()
		if len(peers) >= m.cfg.BootstrapExpect {
			ids := make([]string, 0, len(peers))
			for id := range peers {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			m.log.Info("bootstrapping the raft cluster", "voters", ids)
			if err := m.store.bootstrapWith(peers); err != nil && err != raft.ErrCantBootstrap {
				m.log.Error("raft bootstrap failed", "err", err)
			}
			return
		}
		m.log.Debug("waiting for masters before bootstrapping raft", "have", len(peers), "expect", m.cfg.BootstrapExpect)
		select {
		case <-ctx.Done():
			return
		case <-sub:
		case <-tick.C:
		}
	}
}

// reconcileVoters runs on the leader: masters that are alive but not in the
// raft configuration become voters; masters that left are removed.
func (m *Master) reconcileVoters(ctx context.Context) {
	if m.cfg.BootstrapExpect < 2 && !m.cfg.JoinMasters {
		return
	}
	for {
		_, ch := m.membersChanged()
		servers := m.store.RaftServers()
		if servers != nil {
			for _, n := range m.cfg.Members.Nodes() {
				id := raftID(n)
				if !isMaster(n) || id == "" || id == m.store.cfg.NodeID {
					continue
				}
				_, in := servers[id]
				switch {
				case n.Status == NodeAlive && !in:
					addr := m.peerRaftAddr(n)
					if addr == "" {
						continue
					}
					m.log.Info("adding a master as raft voter", "id", id, "addr", addr)
					if err := m.store.Raft().AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
						m.log.Warn("adding raft voter failed", "id", id, "err", err)
					}
				case n.Status == NodeLeft && in:
					m.log.Info("removing a master that left from raft", "id", id)
					if err := m.store.Raft().RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
						m.log.Warn("removing raft server failed", "id", id, "err", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(10 * time.Second):
		}
	}
}
