package mesh

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/hashicorp/serf/serf"
)

// A node claims its block before it joins (gossip runs on the block's
// address), so a new node's provisional claim collides with an existing
// one in a sizeable cluster (22 nodes in 256 blocks: more often than not).
// Moving a registered member to a new address is slow: memberlist keeps
// the old address until the member is dead or its leave has spread, which
// took 30-50 s while the overlay formed. So the collision is caught at the
// join itself, before anyone registers the newcomer:
//   - the newcomer, seeing its provisional block held in the seed's state,
//     refuses the merge, claims a free block and joins again on it;
//   - a member refuses (join or alive message) an unknown member whose
//     provisional claim collides with a block it knows to be held.
// A collision that still slips through (two newcomers at the same instant)
// is resolved as before by reconcile.

// mergeGuard is serf's merge delegate.
type mergeGuard struct{ m *Mesh }

var _ serf.MergeDelegate = mergeGuard{}

// errBlockTaken refuses a merge over a block collision.
type errBlockTaken struct {
	name  string
	block netip.Prefix
	by    string
}

const errBlockTakenText = "is held by another member"

func (e errBlockTaken) Error() string {
	return fmt.Sprintf("provisional block %s of %s %s (%s)", e.block, e.name, errBlockTakenText, e.by)
}

func (g mergeGuard) NotifyMerge(members []*serf.Member) error {
	m := g.m
	if !m.cfg.WireGuard {
		return nil
	}
	m.mu.Lock()
	claim := m.claim
	s := m.serf
	m.mu.Unlock()
	if !claim.Block.IsValid() {
		return nil
	}
	blockOf := func(mem *serf.Member) (netip.Prefix, uint64, bool) {
		b, err := netip.ParsePrefix(mem.Tags[tagBlock])
		if err != nil || mem.Status == serf.StatusLeft {
			return netip.Prefix{}, 0, false
		}
		t, _ := strconv.ParseUint(mem.Tags[tagBlockTime], 10, 64)
		return b, t, true
	}
	if m.newcomer.Load() && !claim.Static && claim.Time == 0 {
		// We are the newcomer: yield a provisional block someone holds.
		var taken []netip.Prefix
		holder := ""
		for _, mem := range members {
			if mem.Name == m.cfg.NodeName {
				continue
			}
			if b, _, ok := blockOf(mem); ok {
				taken = append(taken, b)
				if b == claim.Block && holder == "" {
					holder = mem.Name
				}
			}
		}
		if holder == "" {
			return nil
		}
		m.mu.Lock()
		m.yield = append(m.yield[:0], taken...)
		m.mu.Unlock()
		return errBlockTaken{name: m.cfg.NodeName, block: claim.Block, by: holder}
	}
	if s == nil {
		return nil
	}
	// A member: refuse an unknown newcomer on a block already held.
	held := map[netip.Prefix]string{claim.Block: m.cfg.NodeName}
	known := map[string]bool{m.cfg.NodeName: true}
	for _, mem := range s.Members() {
		if mem.Status == serf.StatusLeft {
			continue
		}
		known[mem.Name] = true
		if b, _, ok := blockOf(&mem); ok && mem.Name != m.cfg.NodeName {
			held[b] = mem.Name
		}
	}
	for _, mem := range members {
		if known[mem.Name] {
			continue
		}
		b, t, ok := blockOf(mem)
		if !ok || t != 0 {
			continue
		}
		if by, taken := held[b]; taken && by != mem.Name {
			return errBlockTaken{name: mem.Name, block: b, by: by}
		}
	}
	return nil
}

func (m *Mesh) hasYield() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.yield != nil
}

// takeYield returns (and clears) the blocks seen held when this node
// yielded its provisional block during a join.
func (m *Mesh) takeYield() ([]netip.Prefix, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.yield == nil {
		return nil, false
	}
	y := m.yield
	m.yield = nil
	return y, true
}

// reclaimBeforeJoin moves a newcomer that yielded its provisional block to
// a free one and restarts gossip on the new address. Nobody registered the
// node, so nothing has to leave.
func (m *Mesh) reclaimBeforeJoin(e *engine, taken []netip.Prefix) {
	m.mu.Lock()
	mine := m.claim
	m.mu.Unlock()
	var others []peerInfo
	for _, b := range taken {
		others = append(others, peerInfo{Name: "\x00taken", Block: b, BlockTime: 1})
	}
	c, changed := resolveBlock(m.overlay, m.cfg.BlockBits, m.PublicKey(), m.cfg.NodeName, mine, others, 0)
	if !changed {
		return
	}
	m.log.Info("the seed's cluster holds our provisional block; claiming another before joining", "lost", mine.Block.String(), "new", c.Block.String())
	m.stopSerf(false, true)
	m.mu.Lock()
	m.claim = c
	m.mu.Unlock()
	if err := e.setAddress(c.Block); err != nil {
		m.log.Error("claiming a new block", "err", err)
	}
	s, err := m.createSerf(m.evCh)
	if err != nil {
		m.log.Error("restarting gossip", "err", err)
		return
	}
	m.mu.Lock()
	m.serf = s
	m.mu.Unlock()
}
