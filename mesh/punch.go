package mesh

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/serf/serf"
	"golang.org/x/sys/unix"
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
// the node at a different port each: endpoint-dependent mapping) the port
// the NAT opens toward a new peer is known only when the NAT hands ports
// out in sequence (peers saw the node at ports close together): then the
// node maps its flow toward the peer and asks the peer to prime toward the
// next ports after the highest seen (predictPorts), and its handshake
// passes the peer's NAT as an answer. Behind a NAT that picks ports at
// random, a node sends its handshake straight to an easy peer's endpoint
// (which passes a full-cone NAT only); two nodes behind hard NATs stay on
// the relay.
const (
	punchQuery      = "weft-punch"
	punchWindow     = 2500 * time.Millisecond
	punchPrimeFor   = 5 * time.Second
	punchAskTimeout = 1500 * time.Millisecond
	punchMaxBackoff = 10 * time.Second
	punchStaleWait  = 32 * time.Second
	// punchWatch: after a window opens or we prime for a peer, the
	// handshake comes within a few round trips if at all; until then
	// the node looks every 150 ms, not every probe (punchTick).
	punchWatch = 1500 * time.Millisecond
	// punchPredicted marks a punch query whose endpoints are predicted
	// ports of a NAT that allocates them in sequence.
	punchPredicted = "predicted"
	// seqWindow: observed ports of one public address at most this far
	// apart come from a NAT that allocates in sequence (a random one
	// spreads them over tens of thousands); seqAhead ports after the
	// highest are predicted (other flows may take some first).
	seqWindow = 64
	seqAhead  = 32
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
	// primePredicted: primeTo are predicted ports of a sequential NAT.
	primePredicted bool
	predicting     bool // our tries use predicted ports
	// watchUntil: a handshake may come any moment (a window opened, or
	// we primed for an asking peer); reconcile often until then.
	watchUntil time.Time
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
	via  string // overlay | gossip
}

// punchTick runs the punch schedule of every peer behind NAT (Run
// goroutine, at each reconcile before the links are read). It reports
// whether a punch has just started (a window opened, or our NAT primed for
// an asking peer, within punchWatch) without a direct path yet: the caller
// looks again shortly, not at the next probe, so that both ends see the
// handshake complete within moments (the responder waited up to a probe).
func (m *Mesh) punchTick(e *engine, self peerInfo, others []peerInfo, localPfx []netip.Prefix, now time.Time) (watch bool) {
	in := topoInput{Self: self, LocalPrefixes: localPfx}
	publics := 0
	between := m.underlayLost()
	for _, p := range others {
		if !p.NAT && p.Status == "alive" {
			publics++
		}
	}
	for _, p := range others {
		rt := e.peerByKey(p.PublicKey)
		if rt == nil {
			continue
		}
		ps := &rt.punch
		if now.Before(ps.primeUntil) {
			for _, ep := range ps.primeTo {
				m.primeLog(e, p.Name, ep, !ps.primePredicted)
			}
		}
		live := e.live(rt, now)
		watch = watch || !live && now.Before(ps.watchUntil)
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
		if between {
			// Between networks: our reflexive endpoints are of the
			// old one, and a window that opened now would send from
			// the new one before the peer primed toward it.
			continue
		}
		if !m.natSettled(now, publics) {
			// Whether our NAT is easy or hard is not known yet: a
			// handshake from a NAT that turns out hard comes from a
			// port nobody primed, and leaves an entry in the peer's
			// NAT that spoils the next punches for 30 s.
			continue
		}
		var guess []netip.AddrPort
		if self.HardNAT {
			guess = m.predictedEPs(now)
			if len(guess) > 0 && !ps.predicting {
				// Tries made before we knew our NAT's ports were
				// doomed: predicting starts a schedule of its own.
				ps.predicting, ps.tries, ps.next, ps.ackedFails = true, 0, time.Time{}, 0
			}
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
			if len(guess) > 0 {
				// A NAT that hands out ports in sequence: map the flow
				// toward the peer now (its port is the next one), and
				// have the peer prime its NAT toward the ports that
				// come next (predictPorts).
				for _, ep := range refl {
					m.primeLog(e, p.Name, ep, false)
				}
				ps.askedAt = now
				m.log.Debug("hole punch from behind a hard NAT, predicting its ports", "peer", p.Name, "ports", encodeEndpoints(guess[:1])+"..+"+strconv.Itoa(len(guess)-1), "try", ps.tries)
				go m.askPunch(p.Name, punchAddr(p), guess, true)
				continue
			}
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
		go m.askPunch(p.Name, punchAddr(p), mine, false)
	}
	return watch
}

func (ps *punchState) openWindow(to netip.AddrPort, now time.Time, acked bool) {
	ps.to, ps.until, ps.start, ps.clear, ps.acked = to, now.Add(punchWindow), true, false, acked
	ps.watchUntil = now.Add(punchWatch)
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

// The punch ask goes to the peer two ways at once: straight over the
// overlay (through the relay that carries the pair meanwhile), a UDP
// datagram to punchPort at its overlay address, sent again every
// punchResend until answered; and as a serf query (peers that do not
// listen on punchPort answer that). A query reaches its one target only by
// gossip, which picks members at random: with members gone silent but not
// yet declared dead (38 s, memberlist's suspicion timeout with few
// confirmations) most of its sends went nowhere, and in bench/mesh a pair
// got no answer to six queries in a row, 30 s on the relay. The socket is
// bound to the WireGuard interface: what it reads came through WireGuard,
// from a member.
const (
	punchPort   = DefaultGossipPort + 1
	punchResend = 250 * time.Millisecond
)

// punchReq is a punch ask that came over the overlay.
type punchReq struct {
	from      string
	eps       []netip.AddrPort
	predicted bool
	src       netip.AddrPort
}

// punchAddr is where p listens for punch asks: its overlay address.
func punchAddr(p peerInfo) netip.AddrPort {
	if !p.Block.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(overlayIP(p.Block), punchPort)
}

// listenPunch opens the punch side channel on the WireGuard interface.
func (m *Mesh) listenPunch(ctx context.Context) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), m.cfg.Interface) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", ":"+strconv.Itoa(punchPort))
	if err != nil {
		m.log.Warn("hole punch: no side channel over the overlay; punch asks go by gossip only", "err", err)
		return
	}
	conn := pc.(*net.UDPConn)
	m.mu.Lock()
	m.punchConn = conn
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	go m.readPunch(conn)
}

// readPunch takes asks ("ask <to> <from> <endpoints> [predicted]", the
// query's payload), answers ("ack <to> <from> <endpoints>"), reports of
// where a peer sees us ("ep <to> <ip:port> <from>", reflexiveEvent's
// payload) and of direct paths cut ("cutfwd <relay> <from> <to>" to the
// relay, passed on as "cut <to> <relay> <from>": tellCuts) from the side
// channel.
func (m *Mesh) readPunch(conn *net.UDPConn) {
	buf := make([]byte, 4096)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if !m.overlay.Contains(src.Addr().Unmap()) {
			continue
		}
		kind, rest, _ := strings.Cut(string(buf[:n]), " ")
		parts := strings.Fields(rest)
		if len(parts) < 2 || parts[0] != m.cfg.NodeName {
			continue
		}
		// The sender must be the node the message names (the asker, the
		// answerer, the reporter), at its own overlay address: WireGuard
		// checks a packet's source against the peer it came from, so
		// that address is the node; a task in the node's block, or
		// another member, cannot speak for it.
		sender := parts[1]
		if kind == "ep" {
			sender = ""
			if len(parts) > 2 {
				sender = parts[2]
			}
		}
		if !m.sideSenderIs(sender, src.Addr().Unmap()) {
			m.log.Debug("punch side channel: dropped a message not sent by the node it names", "from", src.String(), "names", sender)
			continue
		}
		switch kind {
		case "ep":
			// A peer's report of where it sees us, sent to us
			// straight as well as by gossip (engine.go).
			select {
			case m.userEvts <- serf.UserEvent{Name: reflexiveEvent, Payload: []byte(rest)}:
			default:
			}
		case "ask":
			if len(parts) < 3 || len(parts) > 4 {
				continue
			}
			r := punchReq{from: parts[1], src: src, predicted: len(parts) == 4 && parts[3] == punchPredicted}
			if r.predicted {
				r.eps = decodePorts(parts[2])
			} else {
				r.eps = decodeEndpoints(parts[2])
			}
			select {
			case m.punchReqs <- r:
			default:
			}
		case "cutfwd":
			// "cutfwd <relay> <from> <to>": from lost its direct path
			// to to and relays through us; tell to, which takes
			// nothing from from through a relay (tellCuts).
			if len(parts) != 3 || parts[2] == m.cfg.NodeName {
				continue
			}
			if b := m.memberBlock(parts[2]); b.IsValid() {
				m.sendSide(netip.AddrPortFrom(overlayIP(b), punchPort), "cut "+parts[2]+" "+m.cfg.NodeName+" "+parts[1])
			}
		case "cut":
			// "cut <to> <relay> <from>": from lost its direct path to
			// us (the relay passes it on).
			if len(parts) != 3 {
				continue
			}
			select {
			case m.userEvts <- serf.UserEvent{Name: cutRelayedEvent, Payload: []byte(m.cfg.NodeName + " " + parts[2])}:
			default:
			}
		case "ack":
			var eps []netip.AddrPort
			if len(parts) > 2 {
				eps = decodeEndpoints(parts[2])
			}
			m.mu.Lock()
			ch := m.punchWait[parts[1]]
			m.mu.Unlock()
			if ch != nil {
				select {
				case ch <- punchReply{eps: eps}:
				default:
				}
			}
		}
	}
}

// sideSenderIs is whether addr is the overlay address of the member name.
func (m *Mesh) sideSenderIs(name string, addr netip.Addr) bool {
	if name == "" || name == m.cfg.NodeName {
		return false
	}
	block := m.memberBlock(name)
	return block.IsValid() && overlayIP(block) == addr
}

// memberBlock is the address block of the member name (invalid when there
// is no such member, or it has none).
func (m *Mesh) memberBlock(name string) netip.Prefix {
	if m.blockOf != nil {
		return m.blockOf(name)
	}
	s := m.currentSerf()
	if s == nil {
		return netip.Prefix{}
	}
	for _, sm := range s.Members() {
		if sm.Name == name {
			a, _ := netip.AddrFromSlice(sm.Addr)
			return decodePeer(sm.Name, sm.Status.String(), a.Unmap(), sm.Tags).Block
		}
	}
	return netip.Prefix{}
}

// sendSide sends msg over the side channel to to (best effort).
func (m *Mesh) sendSide(to netip.AddrPort, msg string) {
	m.mu.Lock()
	conn := m.punchConn
	m.mu.Unlock()
	if conn == nil || !to.IsValid() {
		return
	}
	if _, err := conn.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		m.log.Debug("sending over the punch side channel", "to", to.String(), "err", err)
	}
}

// punchReply is an answer that came over the side channel.
type punchReply struct{ eps []netip.AddrPort }

// askPunch asks peer (listening at to) to prime its NAT toward mine, and
// reports its answer.
func (m *Mesh) askPunch(peer string, to netip.AddrPort, mine []netip.AddrPort, predicted bool) {
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
	if predicted {
		payload = peer + " " + m.cfg.NodeName + " " + encodePorts(mine) + " " + punchPredicted
	}
	reply := make(chan punchReply, 1)
	m.mu.Lock()
	m.punchWait[peer] = reply
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.punchWait[peer] == reply {
			delete(m.punchWait, peer)
		}
		m.mu.Unlock()
	}()
	ask := "ask " + payload
	send := func() { m.sendSide(to, ask) }
	send()
	var answers <-chan serf.NodeResponse
	resp, err := s.Query(punchQuery, []byte(payload), &serf.QueryParam{
		FilterNodes: []string{peer}, Timeout: punchAskTimeout, RelayFactor: 2,
	})
	if err != nil {
		m.log.Debug("hole punch query", "peer", peer, "err", err)
	} else {
		defer resp.Close()
		answers = resp.ResponseCh()
	}
	resend := time.NewTicker(punchResend)
	defer resend.Stop()
	timeout := time.NewTimer(punchAskTimeout)
	defer timeout.Stop()
	for {
		select {
		case r, ok := <-answers:
			if !ok {
				answers = nil
				continue
			}
			ack.ok, ack.eps, ack.via = true, decodeEndpoints(string(r.Payload)), "gossip"
			return
		case r := <-reply:
			ack.ok, ack.eps, ack.via = true, r.eps, "overlay"
			return
		case <-resend.C:
			send()
		case <-timeout.C:
			return
		}
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
	m.log.Debug("hole punch: the peer primed; sending a handshake", "peer", a.peer, "to", to.String(), "answer", a.via)
	ps.openWindow(to, time.Now(), true)
}

// answerPunch primes our NAT toward the asking peer, then answers with our
// reflexive endpoints (Run goroutine).
func (m *Mesh) answerPunch(e *engine, q *serf.Query) {
	parts := strings.Fields(string(q.Payload))
	if len(parts) < 3 || len(parts) > 4 || parts[0] != m.cfg.NodeName {
		return
	}
	from, eps := parts[1], decodeEndpoints(parts[2])
	predicted := len(parts) == 4 && parts[3] == punchPredicted
	if predicted {
		eps = decodePorts(parts[2])
	}
	mine := m.primeFor(e, from, eps, predicted, "gossip")
	if err := q.Respond([]byte(encodeEndpoints(mine))); err != nil {
		m.log.Debug("answering a hole punch query", "peer", from, "err", err)
	}
}

// answerPunchReq answers an ask that came over the side channel (Run
// goroutine).
func (m *Mesh) answerPunchReq(e *engine, r punchReq) {
	mine := m.primeFor(e, r.from, r.eps, r.predicted, "overlay")
	m.sendSide(r.src, "ack "+r.from+" "+m.cfg.NodeName+" "+encodeEndpoints(mine))
}

// primeFor primes our NAT toward the endpoints of a peer that asked for a
// punch, keeps it primed for punchPrimeFor, and returns our reflexive
// endpoints for the answer.
func (m *Mesh) primeFor(e *engine, from string, eps []netip.AddrPort, predicted bool, via string) []netip.AddrPort {
	// Predicted ports are primed only up to our own NAT: one reaching
	// the peer's NAT at a port it has not handed out yet would leave an
	// entry there that spoils the mapping once it does.
	for _, ep := range eps {
		m.primeLog(e, from, ep, !predicted)
	}
	for _, p := range m.peerInfos() {
		if p.Name != from {
			continue
		}
		if rt := e.peerByKey(p.PublicKey); rt != nil {
			if !time.Now().Before(rt.punch.primeUntil) {
				m.log.Debug("hole punch: priming our NAT for the asking peer", "peer", from, "ask", via)
			}
			rt.punch.primeTo = eps
			rt.punch.primeUntil = time.Now().Add(punchPrimeFor)
			rt.punch.primePredicted = predicted
			rt.punch.watchUntil = time.Now().Add(punchWatch)
			e.recheck = true // see the handshake that follows (punchTick)
		}
	}
	return m.reflexiveEPs()
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

// predictedEPs are the ports our NAT will likely hand out next, when it
// allocates them in sequence (predictPorts); nil otherwise.
func (m *Mesh) predictedEPs(now time.Time) []netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	var obs []netip.AddrPort
	for _, o := range m.observedBy {
		if now.Sub(o.at) <= observationTTL {
			obs = append(obs, o.ep)
		}
	}
	return predictPorts(obs)
}

// predictPorts: peers observed us at one public address, at two or more
// ports at most seqWindow apart: a NAT that gives each new flow the next
// port. Our flow toward a peer has one of the ports from the lowest seen
// (it may be older than some observations) to seqAhead after the highest
// (it may be new, after flows toward others); the observed ones are taken.
// Tailscale and others call this port prediction.
func predictPorts(obs []netip.AddrPort) []netip.AddrPort {
	if len(obs) < 2 {
		return nil
	}
	addr, lo, hi := obs[0].Addr(), obs[0].Port(), obs[0].Port()
	for _, ep := range obs[1:] {
		if ep.Addr() != addr {
			return nil
		}
		lo, hi = min(lo, ep.Port()), max(hi, ep.Port())
	}
	if hi == lo || hi-lo > seqWindow {
		return nil
	}
	taken := map[uint16]bool{}
	for _, ep := range obs {
		taken[ep.Port()] = true
	}
	var out []netip.AddrPort
	for port := int(lo); port <= int(hi)+seqAhead && port <= 65535; port++ {
		if !taken[uint16(port)] {
			out = append(out, netip.AddrPortFrom(addr, uint16(port)))
		}
	}
	return out
}

// encodePorts writes endpoints of one address (predicted ports) as
// "ip:port,port,...", which fits many more in a query than
// encodeEndpoints (which keeps maxEndpoints).
func encodePorts(eps []netip.AddrPort) string {
	if len(eps) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(eps[0].Addr().String())
	for i, ep := range eps {
		if ep.Addr() != eps[0].Addr() {
			continue
		}
		if i == 0 {
			b.WriteByte(':')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ep.Port())))
	}
	return b.String()
}

// decodePorts parses encodePorts' output, skipping bad entries.
func decodePorts(s string) []netip.AddrPort {
	host, ports, ok := strings.Cut(s, ":")
	addr, err := netip.ParseAddr(host)
	if !ok || err != nil {
		return nil
	}
	var out []netip.AddrPort
	for _, p := range strings.Split(ports, ",") {
		if n, err := strconv.ParseUint(p, 10, 16); err == nil && n > 0 {
			out = append(out, netip.AddrPortFrom(addr, uint16(n)))
		}
	}
	return out
}

// natSettle is how long after the first report of a reflexive address a
// node with one observer takes its NAT kind as known; natSettleTwo is that
// wait when two or more public peers are alive, whose reports tell the
// kind for sure (and now come straight to the node, engine.go).
const (
	natSettle    = 3 * time.Second
	natSettleTwo = 6 * time.Second
)

// natSettled: two peers have reported where they see us (enough to tell
// an easy NAT from a hard one), or one did natSettle ago (natSettleTwo
// with publics alive public peers, which will report), or one sees us
// at our own WireGuard port: a NAT that keeps the node's port (Linux
// MASQUERADE, most home routers) keeps it toward every peer, so it is
// easy, and the first punch need not wait for a second observer (which,
// behind NAT, reports only after its own overlay link is up: a second or
// more).
//
// Taking a hard NAT for easy costs more than waiting: the peer primes
// toward the one port observed, our handshake comes from another, and the
// entry it leaves in the peer's NAT spoils the punches that follow, once
// we know to predict our ports, for 30 s (TestE2ENATTypes' q1-r1 stayed on
// the relay when the second report took over 3 s to arrive by gossip).
func (m *Mesh) natSettled(now time.Time, publics int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.observedBy) >= 2 {
		return true
	}
	wait := natSettle
	if publics >= 2 {
		wait = natSettleTwo
	}
	for _, o := range m.observedBy {
		return now.Sub(o.at) >= wait || m.cfg.ListenPort > 0 && int(o.ep.Port()) == m.cfg.ListenPort
	}
	return false
}
