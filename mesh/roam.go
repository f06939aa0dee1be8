package mesh

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Roaming. A node that moves (Wi-Fi to LTE, a new DHCP lease) keeps its
// key, and with it its block and overlay address; what changes is where
// its packets come from. WireGuard peers follow an authenticated packet
// wherever it comes from, so a public peer learns the new endpoint from
// the keepalives the node sends every peer after the move (until it hears
// from each again). What the node knew about
// itself is stale: how peers observe it (reflexive endpoints, NAT kind) is
// forgotten and learnt again, and direct paths to peers behind NAT, which
// hung on mappings of the old NAT, are dropped at once for the relay (and
// their endpoints cleared, so that no packet from the new address meets
// the peer's NAT before a new punch). watchAddrs notices the move within
// milliseconds; the 10 s reconcile is the safety net.

// forgetFor is how long reports of the reflexive addresses a node had
// before it moved are ignored.
const forgetFor = time.Minute

// watchAddrs signals (coalesced, after a short settling delay) whenever an
// address of an interface other than ours (linkIdx) is added or removed.
func watchAddrs(ctx context.Context, linkIdx int, log *slog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	addrs := make(chan netlink.AddrUpdate, 16)
	done := make(chan struct{})
	if err := netlink.AddrSubscribe(addrs, done); err != nil {
		log.Debug("watching interface addresses; roaming is noticed by the 10 s reconcile only", "err", err)
		close(done)
		return out
	}
	// A link that comes up (or goes down) with its address already on it
	// changes the underlay addresses too (localAddrs lists up links
	// only): the testbed, like DHCP clients, gives a new link its address
	// before it sets it up. Left to the 10 s reconcile, the move was seen
	// seconds late.
	links := make(chan netlink.LinkUpdate, 16)
	if err := netlink.LinkSubscribe(links, done); err != nil {
		log.Debug("watching links; a link that comes up is noticed by the 10 s reconcile only", "err", err)
		links = nil
	}
	go func() {
		defer close(done)
		var settle <-chan time.Time
		signal := func() {
			select {
			case out <- struct{}{}:
			default:
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-links:
				if !ok {
					links = nil
					continue
				}
				if int(u.Index) == linkIdx || !underlayLinkChange(u) {
					continue
				}
			case u, ok := <-addrs:
				if !ok {
					return
				}
				if u.LinkIndex == linkIdx {
					continue
				}
			case <-settle:
				settle = nil
				signal()
				continue
			}
			// Look at once (a removed address must stop our
			// packets toward NATed peers before a new one carries
			// them), and again once the routes that come with an
			// address change are in place.
			signal()
			if settle == nil {
				settle = time.After(100 * time.Millisecond)
			}
		}
	}()
	return out
}

// underlayLinkChange: u is an underlay link (not a container's veth or
// bridge, which come and go with tasks) that came, went, or changed its up
// or carrier state.
func underlayLinkChange(u netlink.LinkUpdate) bool {
	if u.Link == nil || u.Attrs() == nil {
		return false
	}
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(u.Attrs().Name, p) {
			return false
		}
	}
	return u.Header.Type == unix.RTM_DELLINK || u.IfInfomsg.Change&(unix.IFF_UP|unix.IFF_LOWER_UP|unix.IFF_RUNNING) != 0
}

// publicAfterMove: a node that moved while behind NAT and has heard no
// report of a reflexive address for this long, while talking to public
// peers, is public now (peers see it where it says it is).
const publicAfterMove = 10 * time.Second

// settleNAT ends the "behind NAT, reflexive unknown" state after a move to
// a public address (Run goroutine, at reconcile).
func (m *Mesh) settleNAT(links map[string]linkState, others []peerInfo, now time.Time) {
	m.mu.Lock()
	stale := m.nat && len(m.reflexive) == 0 && !m.movedAt.IsZero() && now.Sub(m.movedAt) > publicAfterMove
	movedAt := m.movedAt
	m.mu.Unlock()
	if !stale {
		return
	}
	for _, p := range others {
		// A public peer heard from since the move (so it sends to
		// where we are now) has reported no reflexive address.
		if l := links[p.Name]; !p.NAT && l.Up && l.LastRx.After(movedAt.Add(time.Second)) {
			m.mu.Lock()
			m.nat = false
			m.mu.Unlock()
			m.log.Info("no peer reports a reflexive address since the move: this node is not behind NAT")
			m.publishAsync()
			return
		}
	}
}

// refreshUnderlay looks at the underlay addresses (Run goroutine): a new
// one is a move; one that only went away is the first half of one, and
// the direct paths to peers behind NAT, which hung on the lost address's
// NAT mappings, are dropped at once. Left in place until the new address
// is noticed, they would send the pair's packets out of the new network
// toward the peer's public endpoint before any punch: its NAT, which has
// no mapping for them, keeps an entry for that pair of endpoints, maps
// the peer's own punch toward us to another port, and every punch fails
// until the entry expires (30 s after our last packet). Under load the
// new address can be noticed seconds late (a link that comes up after
// its address is given), so nothing may wait for it.
func (m *Mesh) refreshUnderlay(e *engine) {
	moved, lost := m.refreshLocalEndpoints()
	switch {
	case moved:
		m.underlayMoved(e)
	case lost && e != nil:
		m.mu.Lock()
		nat := m.nat
		m.mu.Unlock()
		if nat {
			// (A public node's paths do not hang on a NAT of its
			// own: peers follow its packets wherever they come from.)
			m.log.Info("an underlay address went away: direct paths to peers behind NAT wait for the next network")
			m.dropNATPaths(e)
		}
	}
}

// underlayLost: an underlay address went away lostFor ago at most, and no
// new one came yet. Past lostFor the node punches again with what it has:
// it may have lost a second interface only, and between networks nothing
// it sends gets out anyway.
func (m *Mesh) underlayLost() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.lostAt.IsZero() && time.Since(m.lostAt) < lostFor
}

const lostFor = 15 * time.Second

// dropNATPaths takes the direct paths to peers behind NAT down, with their
// endpoints, until a new punch (Run goroutine).
func (m *Mesh) dropNATPaths(e *engine) {
	now := time.Now()
	for _, p := range m.peerInfos() {
		if rt := e.peerByKey(p.PublicKey); rt != nil && p.NAT {
			rt.staleBefore = now
			rt.punch.clear = true
		}
	}
}

// underlayMoved forgets what peers observed of us and drops the direct
// paths to peers behind NAT (Run goroutine).
func (m *Mesh) underlayMoved(e *engine) {
	m.mu.Lock()
	now := time.Now()
	// What peers reported before the move began (the old address went
	// away, or now when the new one came first) is stale. What they
	// reported since is of the new network: the new address can come
	// seconds after the old one went (a link that comes up late), and
	// by then a public peer has already said where it sees us.
	cutoff := m.lostAt
	if cutoff.IsZero() {
		cutoff = now
	}
	m.lostAt = time.Time{}
	// Reports of the old addresses still travel the gossip for a while
	// (peers that have not heard from us since): ignore them.
	old := map[netip.Addr]bool{}
	for ep, at := range m.reflexive {
		if at.Before(cutoff) {
			old[ep.Addr()] = true
			m.forgotten[ep.Addr()] = now.Add(forgetFor)
		}
	}
	for ep := range m.reflexive {
		if old[ep.Addr()] {
			delete(m.reflexive, ep)
		}
	}
	for by, o := range m.observedBy {
		if o.at.Before(cutoff) || old[o.ep.Addr()] {
			delete(m.observedBy, by)
		}
	}
	kept := len(m.reflexive)
	// Still behind NAT until shown otherwise: a node that believed
	// itself public would send to NATed peers' public endpoints at once,
	// and spoil the next punch with them (punch.go).
	wasNAT := m.nat
	m.nat = wasNAT || kept > 0
	m.hardNAT = m.hardNATLocked(now)
	m.movedAt = now
	m.mu.Unlock()
	m.log.Info("the underlay address changed: learning again how peers see this node", "wasNAT", wasNAT, "keptReports", kept)
	m.publishAsync()
	if e == nil {
		return
	}
	for _, p := range m.peerInfos() {
		rt := e.peerByKey(p.PublicKey)
		if rt == nil {
			continue
		}
		rt.reportedEP = netip.AddrPort{}
		rt.punch = punchState{}
		// Idle links carry nothing: keepalives to every peer show them
		// where we are (WireGuard roams to the packet's source).
		rt.movedAt = time.Now()
	}
	m.dropNATPaths(e)
}
