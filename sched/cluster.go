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

// peerRaftAddr is the raft address of another master: on its overlay
// address when it has one (raft binds there only), else its host address.
func (m *Master) peerRaftAddr(n api.Node) string {
	if m.cfg.PeerRaftAddr != nil {
		return m.cfg.PeerRaftAddr(n)
	}
	if n.Raft != "" {
		return n.Raft // advertised by the master itself
	}
	host := n.OverlayIP
	if host == "" {
		host = n.Address
	}
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
		if addr := m.peerRaftAddr(n); addr != "" && addr != m.store.LocalRaftAddr() {
			// (a peer whose raft address is not gossiped yet would look
			// like this master: it counts once its tags have arrived)
			out[raftID(n)] = addr
		}
	}
	out[m.store.cfg.NodeID] = m.store.LocalRaftAddr()
	return out
}

// knownMasters counts the masters gossip knows that have not left, alive
// or failed, this one included.
func (m *Master) knownMasters() int {
	n := 0
	self := false
	for _, nd := range m.cfg.Members.Nodes() {
		if isMaster(nd) && nd.Status != NodeLeft && raftID(nd) != "" {
			n++
			self = self || raftID(nd) == m.store.cfg.NodeID
		}
	}
	if !self {
		n++
	}
	return n
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
	waiting := false
	for {
		if m.store.hasRaftState() {
			return // another master's bootstrap reached us first
		}
		peers := m.masterPeers()
		if known := m.knownMasters(); known > m.cfg.BootstrapExpect {
			// More masters than expected (alive or failed): the raft
			// cluster exists and this one is a newcomer (a replacement):
			// the leader adds it once it has proved the token.
			if !waiting {
				m.log.Info("more masters than --bootstrap-expect are known: not bootstrapping, waiting to be added as a raft voter", "known", known, "expect", m.cfg.BootstrapExpect)
				waiting = true
			}
		} else if len(peers) >= m.cfg.BootstrapExpect {
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
// raft configuration become voters, once they have proved they hold the
// join token (NodeTLS); masters that left are removed, and so are voters
// that gossip has seen failed (or no longer lists) for DeadServerAfter,
// once enough healthy voters remain (deadVoters).
func (m *Master) reconcileVoters(ctx context.Context) {
	if m.cfg.BootstrapExpect < 2 && !m.cfg.JoinMasters {
		return
	}
	downSince := map[string]time.Time{}
	for {
		_, ch := m.membersChanged()
		servers := m.store.RaftServers()
		if servers != nil {
			nodes := m.cfg.Members.Nodes()
			for _, n := range nodes {
				id := raftID(n)
				if !isMaster(n) || id == "" || id == m.store.cfg.NodeID {
					continue
				}
				_, in := servers[id]
				switch {
				case n.Status == NodeAlive && !in:
					m.addVoter(ctx, id, m.peerRaftAddr(n))
				case n.Status == NodeLeft && in:
					m.log.Info("removing a master that left from raft", "id", id)
					if err := m.store.Raft().RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
						m.log.Warn("removing raft server failed", "id", id, "err", err)
					}
				}
			}
			for _, id := range deadVoters(m.store.cfg.NodeID, servers, nodes, downSince, m.cfg.Now(), m.cfg.DeadServerAfter, m.cfg.BootstrapExpect) {
				m.log.Warn("removing a dead master from raft: a replacement has joined", "id", id, "down_since", downSince[id].Format(time.RFC3339))
				if err := m.store.Raft().RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
					m.log.Warn("removing dead raft server failed", "id", id, "err", err)
				}
			}
		}
		wait := 10 * time.Second
		if len(downSince) > 0 {
			wait = min(wait, max(m.cfg.DeadServerAfter/4, 100*time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-time.After(wait):
		}
	}
}

// addVoter makes a master a voter once it proved the token.
func (m *Master) addVoter(ctx context.Context, id, addr string) {
	if addr == "" {
		return
	}
	if m.cfg.NodeTLS != nil {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := ProveNode(pctx, m.cfg.NodeTLS, addr, id)
		cancel()
		if err != nil {
			m.log.Warn("not adding a master as raft voter: it did not prove the cluster token", "id", id, "addr", addr, "err", err)
			return
		}
	}
	m.log.Info("adding a master as raft voter", "id", id, "addr", addr)
	if err := m.store.Raft().AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		m.log.Warn("adding raft voter failed", "id", id, "err", err)
	}
}

// deadVoters picks the voters to remove as dead, in the spirit of Consul
// autopilot's CleanupDeadServers: a voter whose master gossip has called
// failed (or no longer lists) for at least after, removed only while the
// healthy voters left are at least the cluster's intended size (expect,
// at least 1: a replacement has joined) and a majority of the voters
// left (quorum safety: never remove what leaves too few to commit). downSince
// keeps when each voter was first seen down, across calls; self is never
// removed.
func deadVoters(self string, servers map[string]string, nodes []api.Node, downSince map[string]time.Time, now time.Time, after time.Duration, expect int) []string {
	if after <= 0 {
		return nil
	}
	status := map[string]string{}
	for _, n := range nodes {
		if isMaster(n) {
			status[raftID(n)] = n.Status
		}
	}
	healthy := 0
	var down []string
	for id := range servers {
		st, listed := status[id]
		switch {
		case id == self || st == NodeAlive:
			healthy++
			delete(downSince, id)
		case !listed || st == NodeFailed:
			if _, ok := downSince[id]; !ok {
				downSince[id] = now
			}
			if now.Sub(downSince[id]) >= after {
				down = append(down, id)
			}
		}
	}
	for id := range downSince {
		if _, ok := servers[id]; !ok {
			delete(downSince, id)
		}
	}
	sort.Strings(down)
	want := max(expect, 1)
	var out []string
	for _, id := range down {
		if left := len(servers) - len(out) - 1; healthy < want || 2*healthy <= left {
			break
		}
		out = append(out, id)
	}
	return out
}
