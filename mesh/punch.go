package mesh

import (
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Hole punching between two nodes behind NAT, coordinated through gossip
// (the technique of Tailscale's disco "call me maybe", over serf queries).
//
// A Linux NAT that receives a packet for its public port before the node
// behind it has sent anything to that peer keeps a conntrack entry for it,
// and then maps the node's own packets to that peer from another port: the
// punch fails until the entry expires (30 s after the last such packet).
// So nothing is sent to the peer's NAT until the peer has mapped us:
//
//  1. The initiator (initiates) primes its own NAT toward the peer's
//     reflexive endpoint with a packet whose TTL ends before the peer's NAT
//     (prime), and sends the peer a punch query carrying its own reflexive
//     endpoints.
//  2. The peer primes its NAT toward those endpoints (with a second packet
//     whose TTL passes a carrier-grade NAT behind its own too) and answers
//     with its own.
//  3. The answer opens a punch window on the initiator: it sends a
//     handshake to the peer's reflexive endpoint at once. The peer's NAT
//     has a mapping toward us by then, so it lets the handshake in, and
//     the answer passes ours the same way.
//  4. A window that closes without a session takes the endpoint away
//     again (re-adding the peer also ends WireGuard's handshake retries),
//     and the next try follows after 1 s, 2 s, 4 s, 8 s, then every 10 s.
//     Two windows in a row that fail although the peer had primed point to
//     such a stale entry in a NAT (a packet that slipped out before a
//     move, say), which every try would refresh: the tries pause for
//     punchStaleWait, so that it expires.
//
// Meanwhile the pair talks through a relay. Behind a hard NAT (peers see
// the node at a different port each: endpoint-dependent mapping) nobody
// can predict the port the NAT opens toward a new peer: a node behind one
// sends its handshake straight to an easy peer's endpoint (which passes a
// full-cone NAT), and two nodes behind hard NATs stay on the relay.
const (
	punchQuery      = "weft-punch"
	punchWindow     = 2500 * time.Millisecond
	punchPrimeFor   = 5 * time.Second
	punchAskTimeout = 1500 * time.Millisecond
	punchMaxBackoff = 10 * time.Second
	punchStaleWait  = 32 * time.Second
)

// NAT kinds as status reports them.
const (
	NATEasy = "easy" // one public port toward every peer
	NATHard = "hard" // a new public port toward each peer
)

// punchState is the hole-punch schedule toward one peer (Run goroutine).
type punchState struct {
	tries      int
	next       time.Time      // the next attempt, not before
	askedAt    time.Time      // a punch query is out since (zero: none)
	acked      bool           // the open window follows the peer's answer
	ackedFails int            // windows in a row that failed after an answer
	to         netip.AddrPort // where the open window sends
	until      time.Time      // the window is open until
	start      bool           // the window just opened: send a handshake now
	clear      bool           // the window closed without a session
	primeTo    []netip.AddrPort
	primeUntil time.Time // as responder: keep our NAT primed toward primeTo
}

// punchBackoff is the wait after the tries-th attempt (counting from 0).
func punchBackoff(tries int) time.Duration {
	return min(time.Second<<min(tries, 4), punchMaxBackoff)
}

// punchAck is the answer (or the silence) to a punch query.
type punchAck struct {
	peer string
	ok   bool
	eps  []netip.AddrPort
}

// punchTick runs the punch schedule of every peer behind NAT (Run
// goroutine, at each reconcile before the links are read).
func (m *Mesh) punchTick(e *engine, self peerInfo, others []peerInfo, localPfx []netip.Prefix, now time.Time) {
	in := topoInput{Self: self, LocalPrefixes: localPfx}
	for _, p := range others {
		rt := e.peerByKey(p.PublicKey)
		if rt == nil {
			continue
		}
		ps := &rt.punch
		if now.Before(ps.primeUntil) {
			for _, ep := range ps.primeTo {
				m.primeLog(e, p.Name, ep, true)
			}
		}
		live := e.live(rt, now, punchPair(in, p))
		if live {
			if ps.tries > 0 || !ps.until.IsZero() {
				m.log.Debug("hole punch: direct path up", "peer", p.Name, "tries", ps.tries)
			}
			ps.tries, ps.next, ps.until, ps.to, ps.ackedFails = 0, time.Time{}, time.Time{}, netip.AddrPort{}, 0
			continue
		}
		if !ps.until.IsZero() && !now.Before(ps.until) {
			ps.until, ps.to, ps.clear = time.Time{}, netip.AddrPort{}, true
			if ps.acked {
				ps.ackedFails++
			}
			if ps.ackedFails >= 2 {
				ps.ackedFails, ps.next = 0, now.Add(punchStaleWait)
				m.log.Debug("hole punch failed twice although the peer primed: a NAT holds a stale entry for the pair; pausing until it expires", "peer", p.Name, "for", punchStaleWait.String())
			} else {
				m.log.Debug("hole punch got no answer", "peer", p.Name, "try", ps.tries, "next", ps.next.Sub(now).Round(time.Millisecond).String())
			}
		}
		if p.Status != "alive" || !punchPair(in, p) || !initiates(self, p) || self.HardNAT && p.HardNAT {
			continue
		}
		if now.Before(ps.next) || now.Before(ps.until) || !ps.askedAt.IsZero() && now.Sub(ps.askedAt) < 2*punchAskTimeout {
			continue
		}
		refl, _ := p.reflexive()
		if len(refl) == 0 {
			continue
		}
		mine := m.reflexiveEPs()
		if len(mine) == 0 {
			continue
		}
		ps.next = now.Add(punchBackoff(ps.tries))
		ps.tries++
		if self.HardNAT {
			// Our port toward the peer is unknowable: send straight to
			// it (a full-cone NAT lets it in; anything else drops it).
			m.log.Debug("hole punch from behind a hard NAT", "peer", p.Name, "to", refl[0].String(), "try", ps.tries)
			ps.openWindow(refl[0], now, false)
			continue
		}
		for _, ep := range refl {
			m.primeLog(e, p.Name, ep, false)
		}
		ps.askedAt = now
		m.log.Debug("hole punch: asking the peer to prime its NAT", "peer", p.Name, "ours", encodeEndpoints(mine), "try", ps.tries)
		go m.askPunch(p.Name, mine)
	}
}

func (ps *punchState) openWindow(to netip.AddrPort, now time.Time, acked bool) {
	ps.to, ps.until, ps.start, ps.clear, ps.acked = to, now.Add(punchWindow), true, false, acked
}

// primeLog primes our NAT toward ep (answering: our second NAT too).
func (m *Mesh) primeLog(e *engine, peer string, ep netip.AddrPort, answering bool) {
	ttls := []byte{primeTTL}
	if answering {
		ttls = append(ttls, primeTTL+1)
	}
	for _, ttl := range ttls {
		if err := e.prime(ep, ttl); err != nil {
			m.log.Debug("priming the NAT", "peer", peer, "endpoint", ep.String(), "err", err)
		}
	}
}

// askPunch sends the punch query to peer and reports its answer.
func (m *Mesh) askPunch(peer string, mine []netip.AddrPort) {
	ack := punchAck{peer: peer}
	defer func() {
		select {
		case m.punchAcks <- ack:
		default:
		}
	}()
	s := m.currentSerf()
	if s == nil {
		return
	}
	payload := peer + " " + m.cfg.NodeName + " " + encodeEndpoints(mine)
	resp, err := s.Query(punchQuery, []byte(payload), &serf.QueryParam{
		FilterNodes: []string{peer}, Timeout: punchAskTimeout, RelayFactor: 2,
	})
	if err != nil {
		m.log.Debug("hole punch query", "peer", peer, "err", err)
		return
	}
	defer resp.Close()
	select {
	case r, ok := <-resp.ResponseCh():
		if ok {
			ack.ok, ack.eps = true, decodeEndpoints(string(r.Payload))
		}
	case <-time.After(punchAskTimeout):
	}
}

// takePunchAck opens the punch window toward a peer that has primed.
func (m *Mesh) takePunchAck(e *engine, a punchAck) {
	var p peerInfo
	for _, q := range m.peerInfos() {
		if q.Name == a.peer {
			p = q
		}
	}
	rt := e.peerByKey(p.PublicKey)
	if rt == nil {
		return
	}
	ps := &rt.punch
	ps.askedAt = time.Time{}
	if !a.ok {
		m.log.Debug("hole punch: no answer to the query", "peer", a.peer)
		return
	}
	to := netip.AddrPort{}
	if len(a.eps) > 0 {
		to = a.eps[0]
	} else if refl, _ := p.reflexive(); len(refl) > 0 {
		to = refl[0]
	}
	if !to.IsValid() {
		return
	}
	m.log.Debug("hole punch: the peer primed; sending a handshake", "peer", a.peer, "to", to.String())
	ps.openWindow(to, time.Now(), true)
}

// answerPunch primes our NAT toward the asking peer, then answers with our
// reflexive endpoints (Run goroutine).
func (m *Mesh) answerPunch(e *engine, q *serf.Query) {
	parts := strings.Fields(string(q.Payload))
	if len(parts) != 3 || parts[0] != m.cfg.NodeName {
		return
	}
	from, eps := parts[1], decodeEndpoints(parts[2])
	for _, ep := range eps {
		m.primeLog(e, from, ep, true)
	}
	for _, p := range m.peerInfos() {
		if p.Name != from {
			continue
		}
		if rt := e.peerByKey(p.PublicKey); rt != nil {
			rt.punch.primeTo = eps
			rt.punch.primeUntil = time.Now().Add(punchPrimeFor)
		}
	}
	if err := q.Respond([]byte(encodeEndpoints(m.reflexiveEPs()))); err != nil {
		m.log.Debug("answering a hole punch query", "peer", from, "err", err)
	}
}

// reflexiveEPs are the endpoints peers observe us at, newest first.
func (m *Mesh) reflexiveEPs() []netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.nat {
		return nil
	}
	eps := m.advertisedLocked()
	return eps[:min(len(m.reflexive), len(eps))]
}

// observation is where one peer observes this node.
type observation struct {
	ep netip.AddrPort
	at time.Time
}

// observationTTL is how long a peer's observation counts toward the NAT
// kind.
const observationTTL = 5 * time.Minute

// hardNATLocked: peers observe this node at one public address but at
// different ports, within observationTTL. m.mu must be held.
func (m *Mesh) hardNATLocked(now time.Time) bool {
	ports := map[netip.Addr]map[uint16]bool{}
	for by, o := range m.observedBy {
		if now.Sub(o.at) > observationTTL {
			delete(m.observedBy, by)
			continue
		}
		if ports[o.ep.Addr()] == nil {
			ports[o.ep.Addr()] = map[uint16]bool{}
		}
		ports[o.ep.Addr()][o.ep.Port()] = true
	}
	for _, ps := range ports {
		if len(ps) > 1 {
			return true
		}
	}
	return false
}

// peerByKey is the runtime of a peer by its base64 public key.
func (e *engine) peerByKey(pub string) *peerRuntime {
	k, err := wgtypes.ParseKey(pub)
	if err != nil {
		return nil
	}
	return e.peers[k]
}
