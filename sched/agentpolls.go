package sched

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/weftnet/weft/sched/api"
)

// Agent loss, fast. Gossip alone takes 5-8 s to call a node failed (a
// missed probe, then a suspicion that must time out). But an agent keeps
// a long poll of its assignments open on a master at all times, and when
// the agent process dies its kernel closes that connection at once. So
// the leader, seeing an agent hang up its poll without opening another
// within PollGrace, asks gossip directly: it pings the agent's memberlist
// (UDP, the probe gossip itself uses) several times, spaced out. Only if
// no ping is answered is the agent taken for dead, and shown as failed to
// everything that reads the membership (the allocator, the frameworks,
// agent-loss handling) until gossip catches up. Both signals are needed:
// on a lossy link (a few % of packets dropped) the poll's TCP connection
// stays open (TCP retransmits), and if one ever broke, one of the pings
// would still be answered. A dead mark is cleared as soon as the agent
// polls this master again or answers a ping.
//
// An agent that stops on purpose (Ctrl-C, an upgrade: it leaves its tasks
// running and comes back) says so first (PUT /v1/agents/{id}/stopping to
// the master it polls); that master then leaves it to gossip, so a restart
// of a few seconds replaces nothing.
//
// A follower that sees an agent hang up does the same check and, if the
// agent is silent, tells the leader (POST /v1/agents/{id}/lost, a node
// call), which pings the agent itself before it believes it: a follower
// with a bad link of its own cannot get a healthy agent replaced.

// Pinger is implemented by a membership that can probe one member
// through gossip (cmd/weft: a memberlist ping). Without it, agent loss
// waits for gossip to call the member failed.
type Pinger interface {
	Ping(ctx context.Context, name string) error
}

const (
	// pollGrace is how long an agent that hung up its poll has to open
	// another before the leader pings it.
	pollGrace = 250 * time.Millisecond
	// lossPings pings are sent pollPingGap apart; one answer clears the
	// agent.
	lossPings   = 4
	pollPingGap = 150 * time.Millisecond
	// deadMarkTTL bounds a dead mark: gossip has called the agent failed
	// well before that.
	deadMarkTTL = time.Minute
)

// agentPolls follows the agents' long polls on this master.
type agentPolls struct {
	mu      sync.Mutex
	open    map[string]int       // agent → polls open now
	hungUp  map[string]time.Time // agent → when it hung up its last poll, none open since
	dead    map[string]time.Time // agent → when it was found dead
	leaving map[string]time.Time // agent → when it said it is stopping on purpose
	dropped chan string          // agents that just hung up (the leader's watcher reads it)
}

func newAgentPolls() *agentPolls {
	return &agentPolls{
		open:    map[string]int{},
		hungUp:  map[string]time.Time{},
		dead:    map[string]time.Time{},
		leaving: map[string]time.Time{},
		dropped: make(chan string, 256),
	}
}

// begin records a poll opened by agent; it reports whether that cleared
// a dead mark.
func (p *agentPolls) begin(agent string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open[agent]++
	delete(p.hungUp, agent)
	delete(p.leaving, agent)
	if _, ok := p.dead[agent]; ok {
		delete(p.dead, agent)
		return true
	}
	return false
}

// end records a poll closed; hungUp is set when the agent closed it
// before it was answered.
func (p *agentPolls) end(agent string, hungUp bool, now time.Time) {
	p.mu.Lock()
	p.open[agent]--
	left := p.open[agent]
	if left <= 0 {
		delete(p.open, agent)
	}
	if left > 0 || !hungUp {
		p.mu.Unlock()
		return
	}
	p.hungUp[agent] = now
	p.mu.Unlock()
	select {
	case p.dropped <- agent:
	default: // the watcher is behind: gossip decides
	}
}

// silentSince reports whether agent hung up a poll at or before t and has
// opened none since, and has not said it is stopping on purpose.
func (p *agentPolls) silentSince(agent string, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.hungUp[agent]
	_, leaving := p.leaving[agent]
	return ok && p.open[agent] == 0 && !at.After(t) && !leaving
}

// stopping records that agent said it is stopping on purpose; its next
// poll clears that. Notices older than deadMarkTTL are dropped.
func (p *agentPolls) stopping(agent string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for a, at := range p.leaving {
		if now.Sub(at) > deadMarkTTL {
			delete(p.leaving, a)
		}
	}
	p.leaving[agent] = now
}

// handleAgentStopping serves PUT /v1/agents/{id}/stopping (nodes only,
// on the master the agent polls): the agent stops on purpose and means to
// come back, so the end of its poll is not taken for its death.
func (m *Master) handleAgentStopping(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	m.polls.stopping(agent, m.cfg.Now())
	m.log.Info("agent stops on purpose: its tasks are left to gossip's verdict", "agent", agent)
	w.WriteHeader(http.StatusNoContent)
}

func (p *agentPolls) markDead(agent string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead[agent] = now
}

// clearDead removes agent's dead mark; it reports whether there was one.
func (p *agentPolls) clearDead(agent string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.dead[agent]
	delete(p.dead, agent)
	return ok
}

// deadAgents returns the agents marked dead, dropping marks older than
// deadMarkTTL.
func (p *agentPolls) deadAgents(now time.Time) map[string]time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.dead) == 0 {
		return nil
	}
	out := make(map[string]time.Time, len(p.dead))
	for a, at := range p.dead {
		if now.Sub(at) > deadMarkTTL {
			delete(p.dead, a)
			continue
		}
		out[a] = at
	}
	return out
}

// lossView is the membership the master schedules on: Members, with the
// agents this master found dead shown as failed.
type lossView struct {
	Members
	polls *agentPolls
	now   func() time.Time
}

// Nodes implements Members.
func (v lossView) Nodes() []api.Node {
	nodes := v.Members.Nodes()
	dead := v.polls.deadAgents(v.now())
	if len(dead) == 0 {
		return nodes
	}
	nodes = slices.Clone(nodes)
	for i := range nodes {
		if _, ok := dead[nodes[i].ID]; ok && nodes[i].Role != api.RoleMaster && (nodes[i].Status == NodeAlive || nodes[i].Status == NodeSuspect) {
			nodes[i].Status = NodeFailed
		}
	}
	return nodes
}

// watchHangUps runs on every master: it checks every agent that hung up
// its poll here.
func (m *Master) watchHangUps(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case agent := <-m.polls.dropped:
			if m.pinger != nil {
				go m.checkHungUp(ctx, agent, m.cfg.Now())
			}
		}
	}
}

// watchDeadMarks runs while leading: it pings the agents marked dead so
// that one that answers again is cleared.
func (m *Master) watchDeadMarks(ctx context.Context) {
	if m.pinger == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for agent := range m.polls.deadAgents(m.cfg.Now()) {
				go func() {
					if name, ok := m.agentName(agent); ok && m.pingAgent(ctx, name, 1) {
						if m.polls.clearDead(agent) {
							m.log.Info("agent answers gossip again; no longer taken for dead", "agent", agent)
							m.membersMoved()
						}
					}
				}()
			}
		}
	}
}

// checkHungUp decides whether an agent that hung up its poll at t is dead.
func (m *Master) checkHungUp(ctx context.Context, agent string, t time.Time) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(pollGrace):
	}
	if !m.polls.silentSince(agent, t) {
		return
	}
	name, ok := m.agentName(agent)
	if !ok {
		return // gossip already calls it failed or left, or never knew it
	}
	if m.pingAgent(ctx, name, lossPings) || !m.polls.silentSince(agent, t) || ctx.Err() != nil {
		return
	}
	if !m.store.IsLeader() {
		m.reportLost(ctx, agent)
		return
	}
	m.polls.markDead(agent, m.cfg.Now())
	m.log.Warn("agent hung up its poll and answers no gossip ping: taken for dead", "agent", agent, "pings", lossPings,
		"after", m.cfg.Now().Sub(t).Round(time.Millisecond))
	m.membersMoved()
}

// reportLost tells the leader that agent hung up its poll on this
// follower and answers no ping.
func (m *Master) reportLost(ctx context.Context, agent string) {
	leader := m.leaderAPI()
	if leader == "" || leader == m.cfg.APIAdvertise {
		return
	}
	scheme, rt := m.nodeTransport()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+leader+"/v1/agents/"+url.PathEscape(agent)+"/lost", nil)
	if err != nil {
		return
	}
	if m.cfg.NodeSecret != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.NodeSecret)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		m.log.Info("could not tell the leader of a silent agent; gossip will", "agent", agent, "err", err)
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	m.log.Info("told the leader of an agent that hung up its poll here and answers no ping", "agent", agent, "status", resp.StatusCode)
}

// handleAgentLost serves POST /v1/agents/{id}/lost (nodes only, leader):
// a follower saw the agent hang up its poll and answer no gossip ping.
// The leader pings the agent itself and answers {"lost": true} when it
// takes it for dead.
func (m *Master) handleAgentLost(w http.ResponseWriter, r *http.Request) {
	agent := r.PathValue("id")
	lost := false
	if name, ok := m.agentName(agent); ok && m.pinger != nil && !m.pingAgent(r.Context(), name, lossPings) && r.Context().Err() == nil {
		lost = true
		m.polls.markDead(agent, m.cfg.Now())
		m.log.Warn("agent hung up its poll on a follower and answers no gossip ping: taken for dead", "agent", agent, "pings", lossPings)
		m.membersMoved()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]bool{"lost": lost})
}

// agentName returns the gossip name of the agent with id agent, if gossip
// knows it alive (or suspect).
func (m *Master) agentName(agent string) (string, bool) {
	for _, n := range m.pollMembers.Nodes() {
		if n.ID == agent && n.Role != api.RoleMaster && (n.Status == NodeAlive || n.Status == NodeSuspect) {
			return n.Name, true
		}
	}
	return "", false
}

// pingAgent sends n gossip pings pollPingGap apart and reports whether
// any was answered.
func (m *Master) pingAgent(ctx context.Context, name string, n int) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ok := make(chan bool, n)
	for i := 0; i < n; i++ {
		go func(delay time.Duration) {
			select {
			case <-ctx.Done():
				ok <- false
				return
			case <-time.After(delay):
			}
			ok <- m.pinger.Ping(ctx, name) == nil
		}(time.Duration(i) * pollPingGap)
	}
	for i := 0; i < n; i++ {
		if <-ok {
			return true
		}
	}
	return false
}

// membersMoved tells the membership's readers that it changed.
func (m *Master) membersMoved() {
	m.bumpMembers()
	m.alloc.trigger()
}
