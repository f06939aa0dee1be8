package mesh

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// linkState is what the data plane observed of one peer.
type linkState struct {
	// Up: the direct path works as far as traffic shows (engine.live):
	// a handshake completed, and nothing sent since went unanswered for
	// DeadAfter. An idle link stays up.
	Up bool
	// Ack: data came from the peer since the previous look and nothing
	// went back: answer with one keepalive, so that a one-way flow does
	// not look unanswered at the sending end.
	Ack bool
	// EverUp: the peer has answered at least once since it was added.
	EverUp bool
	// Since is when the peer was first configured on the device.
	Since time.Time
	// Endpoint is the peer's current endpoint on the device (WireGuard
	// roams it to wherever authenticated packets come from).
	Endpoint netip.AddrPort
	// Session: a handshake completed within sessionLife (WireGuard keys
	// live 180 s; the initiator rekeys every 120 s while in use).
	Session bool
	// LastHS is the latest completed handshake.
	LastHS time.Time
	// LastRx is when something last came from the peer.
	LastRx time.Time
	// AddedAt is when the peer was last (re-)added to the device.
	AddedAt time.Time
	// PunchTo is the peer's public endpoint while a coordinated hole
	// punch toward it is open (punch.go); invalid otherwise.
	PunchTo netip.AddrPort
	// PunchStart: the punch window opened just now; send a handshake.
	PunchStart bool
	// Verify: data sent on the direct path went unanswered for
	// DeadAfter; ask the peer for a fresh handshake before the path is
	// taken for down (engine.link). The path stays Up meanwhile.
	Verify bool
	// PunchClear: a punch window closed without a session; drop the
	// endpoint (and WireGuard's handshake retries toward it), so nothing
	// reaches the peer's NAT before it has mapped us again.
	PunchClear bool
}

// sessionLife is how long after its handshake a session counts as current.
const sessionLife = 150 * time.Second

// Handshake roles. Initiations that cross (both sides start one at once)
// stall the first handshake for 5 s, so each pair has one initiator; the
// responder sends nothing before a session exists (persistent keepalive
// off) and only starts initiating itself after responderFallback, for when
// the initiator cannot reach it at all. The initiator re-adds a silent peer
// every initiatorRetry: adding sends an initiation at once, where
// WireGuard would wait 5 s to retry one the other side dropped because it
// did not know us yet.
const (
	initiatorRetry    = 900 * time.Millisecond
	responderFallback = 3 * time.Second
	// downRetry: the initiator's handshake period toward a peer whose
	// session went silent.
	downRetry = 5 * time.Second
)

// initiates reports whether self initiates the handshake with p: the side
// behind NAT (the other cannot reach it first), then the side behind a
// hard NAT (only it knows where its packets come from), else the smaller
// name.
func initiates(self, p peerInfo) bool {
	if self.NAT != p.NAT {
		return self.NAT
	}
	if self.NAT && self.HardNAT != p.HardNAT {
		return self.HardNAT
	}
	return self.Name < p.Name
}

// punchPair reports whether self and p, both behind NAT, reach each other
// directly only by a hole punch: they are not on one LAN (p's LAN
// endpoints are not on a subnet of ours).
func punchPair(in topoInput, p peerInfo) bool {
	if !in.Self.NAT || !p.NAT {
		return false
	}
	_, lan := p.reflexive()
	for _, ep := range lan {
		for _, pfx := range in.LocalPrefixes {
			if pfx.Contains(ep.Addr()) {
				return false
			}
		}
	}
	return true
}

// topoInput is everything the topology depends on; computeTopology has no
// other input and no side effects.
type topoInput struct {
	Self          peerInfo
	Peers         []peerInfo           // every other member (any status)
	Links         map[string]linkState // by peer name
	LocalPrefixes []netip.Prefix       // subnets of this node's interfaces
	// RTT estimates the round trip between two members (serf coordinates).
	RTT func(a, b string) (time.Duration, bool)
	Now time.Time
	// Probe is the keepalive interval of a path that is not (yet) up.
	Probe time.Duration
	// NATKeepalive keeps this node's NAT mappings while it is behind NAT
	// (0 on an idle link otherwise).
	NATKeepalive time.Duration
	// Grace is how long a new peer may stay silent before it is relayed.
	Grace time.Duration
	// Rotate is how long each candidate endpoint is tried.
	Rotate time.Duration
	// DefaultPort is the WireGuard port assumed for a bare gossip address.
	DefaultPort int
	// Overlay is never an endpoint (WireGuard inside WireGuard loops).
	Overlay netip.Prefix
	// SelfSettled: this node has had sessions long enough to know whether
	// peers see it behind NAT. Until then it sends nothing to the
	// reflexive endpoint of a peer behind NAT (that could spoil a punch).
	SelfSettled bool
	// Seeds are the addresses of this node's join seeds. While RTTs are
	// unknown (or equal) a seed is the preferred relay: two nodes that
	// joined through it reach it first (it is the first to know them),
	// where the smallest name would have each end pick whichever relay
	// answered it first, often not the same.
	Seeds []netip.Addr
}

// isSeed reports whether p is one of in.Seeds (by any of its endpoints).
func (in topoInput) isSeed(p peerInfo) bool {
	for _, ep := range p.Endpoints {
		if slices.Contains(in.Seeds, ep.Addr()) {
			return true
		}
	}
	return false
}

// peerPlan is the desired WireGuard configuration of one peer.
type peerPlan struct {
	Name       string
	PublicKey  string
	Endpoint   netip.AddrPort // invalid = leave unset
	AllowedIPs []netip.Prefix // sorted
	Keepalive  time.Duration
	Path       string // direct | relay | down
	Via        string // relay node when Path == "relay"
	// Readd: remove and add the peer again, which sends a handshake
	// initiation at once.
	Readd bool
	// Poke: send one keepalive now: to answer data that got no reply
	// (linkState.Ack), and every probe while a session's path is down
	// (WireGuard's persistent keepalive is reset by received packets
	// too, so the side that keeps receiving may fall silent).
	Poke bool
}

// topology is the desired WireGuard state of this node.
type topology struct {
	Peers  []peerPlan     // sorted by name
	Routes []netip.Prefix // peer blocks routed into the interface, sorted
}

// rttBucket quantises RTTs so that both ends of a pair, whose coordinate
// caches differ slightly, pick the same relay.
const rttBucket = 25 * time.Millisecond

// computeTopology turns the member list into the desired WireGuard peers,
// allowed IPs, endpoints, keepalives, relay choices and routes.
func computeTopology(in topoInput) topology {
	// Eligible peers: have a key and a block, have not left.
	var peers []peerInfo
	for _, p := range in.Peers {
		if p.Name == in.Self.Name || p.PublicKey == "" || p.PublicKey == in.Self.PublicKey || !p.Block.IsValid() || p.Status == "left" || p.Status == "none" {
			continue
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b peerInfo) int { return strings.Compare(a.Name, b.Name) })

	// Block conflicts: the earliest claim wins; losers get no traffic
	// until they claim again.
	winner := map[netip.Prefix]peerInfo{}
	if in.Self.Block.IsValid() {
		winner[in.Self.Block] = in.Self
	}
	for _, p := range peers {
		w, ok := winner[p.Block]
		if !ok || claimLess(p.BlockTime, p.Name, w.BlockTime, w.Name) {
			winner[p.Block] = p
		}
	}
	owns := func(p peerInfo) bool { return winner[p.Block].Name == p.Name }

	plans := make(map[string]*peerPlan, len(peers))
	needRelay := map[string]bool{}
	var routes []netip.Prefix
	for _, p := range peers {
		l := in.Links[p.Name]
		pl := &peerPlan{Name: p.Name, PublicKey: p.PublicKey, Path: "down"}
		planHandshake(in, p, l, pl)
		if owns(p) {
			pl.AllowedIPs = []netip.Prefix{p.Block}
			routes = append(routes, p.Block)
		}
		// Two nodes behind NAT relay at once: their direct path
		// comes only from a hole punch, which switches them over.
		if l.Up && (!punchPair(in, p) || advertisesAddr(p, l.Endpoint.Addr())) {
			pl.Path = "direct"
		} else if owns(p) && p.Status == "alive" && !l.Since.IsZero() && (l.EverUp || in.Now.Sub(l.Since) >= in.Grace || punchPair(in, p)) {
			needRelay[p.Name] = true
		}
		plans[p.Name] = pl
	}

	// Relays: a public, directly reachable member, preferably at a third
	// site (a cut between two sites usually takes their other nodes with
	// it, and both ends must pick the same relay), then the lowest RTT
	// (self→relay→peer, in coarse buckets), then a seed, then the
	// smallest name.
	for _, p := range peers {
		if !needRelay[p.Name] {
			continue
		}
		best, bestScore, bestThird, bestSeed := "", time.Duration(0), false, false
		for _, r := range peers {
			if r.Name == p.Name || r.NAT || r.Status != "alive" || !owns(r) || needRelay[r.Name] || !in.Links[r.Name].Up {
				continue
			}
			third := r.Site != in.Self.Site && r.Site != p.Site
			score := rttVia(in, in.Self.Name, r.Name, p.Name)
			seed := in.isSeed(r)
			better := best == "" ||
				(third && !bestThird) ||
				(third == bestThird && (score < bestScore ||
					score == bestScore && (seed && !bestSeed || seed == bestSeed && r.Name < best)))
			if better {
				best, bestScore, bestThird, bestSeed = r.Name, score, third, seed
			}
		}
		if best == "" {
			continue // nothing to relay through; keep probing direct
		}
		pl := plans[p.Name]
		pl.AllowedIPs = nil
		pl.Path, pl.Via = "relay", best
		plans[best].AllowedIPs = append(plans[best].AllowedIPs, p.Block)
	}

	out := topology{Routes: routes}
	for _, p := range peers {
		pl := plans[p.Name]
		slices.SortFunc(pl.AllowedIPs, comparePrefix)
		out.Peers = append(out.Peers, *pl)
	}
	slices.SortFunc(out.Routes, comparePrefix)
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func rttVia(in topoInput, a, r, b string) time.Duration {
	const unknown = time.Second
	get := func(x, y string) time.Duration {
		if in.RTT == nil {
			return unknown
		}
		d, ok := in.RTT(x, y)
		if !ok {
			return unknown
		}
		return d
	}
	return (get(a, r) + get(r, b)) / rttBucket * rttBucket
}

// planHandshake decides the endpoint, keepalive and re-adds toward p.
func planHandshake(in topoInput, p peerInfo, l linkState, pl *peerPlan) {
	init := initiates(in.Self, p)
	_, lan := p.reflexive()
	punch := punchPair(in, p)
	// A direct path between two NATs hangs on their mappings: it counts
	// while packets flow (Up), not for as long as its keys live, and
	// only while the peer still advertises the address (a peer that
	// moved has dropped it from its tags: relay at once).
	established := (l.Up || !punch && l.Session && in.Now.Sub(l.LastHS) < 10*time.Second) && l.Endpoint.IsValid() && !(in.Overlay.IsValid() && in.Overlay.Contains(l.Endpoint.Addr())) &&
		(!punch || advertisesAddr(p, l.Endpoint.Addr()))
	switch {
	case established:
		pl.Endpoint = l.Endpoint // where the peer answers from
	case punch:
		// Nothing goes toward the peer's NAT outside a punch window
		// (punch.go): a packet there before the peer has mapped us
		// makes that NAT remap the peer's own packets to us.
		if l.PunchTo.IsValid() {
			pl.Endpoint = l.PunchTo
			pl.Readd = l.PunchStart
		} else {
			pl.Readd = l.PunchClear
		}
	case p.NAT && !in.Self.NAT:
		// A peer behind NAT reaches us first (it initiates); nothing of
		// ours goes to its public endpoint before (we may be behind a
		// NAT we do not know of yet, and spoil its punches). Its LAN
		// address reaches it only on its LAN. Where its packets came
		// from lately is kept: a newcomer that learns it is behind NAT
		// turns into such a peer with sessions up, and putting its LAN
		// address back sent every answer nowhere (bench/mesh: a laptop's
		// data unanswered by 9 peers at once, 3 s).
		if heardFrom(in, l) {
			pl.Endpoint = l.Endpoint
		} else {
			pl.Endpoint = firstOr(lan, l.Endpoint)
		}
	default:
		pl.Endpoint = chooseEndpoint(in, p, l)
		if !init && heardSinceAdded(in, l) {
			// The peer initiates, and WireGuard set the endpoint to
			// where its packets come from: keep it. A reconcile that
			// read the device just before the handshake completed put
			// the peer's advertised address back (a newcomer behind NAT
			// advertises its LAN address until it learns better): the
			// link came up there, our answers went nowhere, and the
			// report of the newcomer's reflexive address, which its
			// punches wait for, never went out (bench/mesh: m1 did not
			// report, a laptop learnt its address from d1 3 s later).
			pl.Endpoint = l.Endpoint
		}
	}
	waited := in.Now.Sub(l.AddedAt)
	fallback := !init && !punch && !p.NAT && !l.AddedAt.IsZero() && waited >= responderFallback
	switch {
	case l.Up:
		// Nothing on an idle link (liveness comes from the traffic:
		// engine.live), but what keeps this node's NAT mapping (and,
		// between two NATs, both).
		if in.Self.NAT {
			pl.Keepalive = in.NATKeepalive
		}
		pl.Poke = l.Ack
		if l.Verify {
			// Re-adding with a keepalive sends a handshake initiation
			// at once (WireGuard would not start one within 5 s of
			// the last).
			pl.Keepalive = in.Probe
			pl.Readd = true
			pl.Poke = false
		}
	case l.Session && !punch:
		// A path silent after a send: keepalives every probe (the
		// peer's, if it waits too, bring a path back); toward a silent
		// peer this node also handshakes again now and then, which the
		// peer answers even when it takes the link for idle.
		pl.Keepalive = in.Probe
		pl.Poke = true
		// The responder too: the initiator may take the path for up
		// (a keepalive asks nothing of it) and go on sending where this
		// node no longer takes its packets.
		pl.Readd = (init || !p.NAT) && !l.AddedAt.IsZero() && waited >= downRetry
	case punch:
		// Handshakes only in the windows punch.go opens; adding a
		// peer with a keepalive sends the first at once.
		if l.PunchTo.IsValid() {
			pl.Keepalive = in.Probe
		}
	case init:
		// Quick retries while the peer is new; a peer silent for long
		// (dead, or cut off) gets one every 5 s.
		retry := initiatorRetry
		if in.Now.Sub(l.Since) > 15*time.Second {
			retry = 5 * time.Second
		}
		pl.Keepalive = in.Probe
		pl.Readd = !l.AddedAt.IsZero() && waited >= retry && !handshaking(in, l)
	case fallback:
		pl.Keepalive = in.Probe
		pl.Readd = waited >= responderFallback && !handshaking(in, l)
	}
}

// heardSinceAdded reports whether something came from the peer since it
// was (re-)added, to the endpoint the device has for it (an underlay
// one): WireGuard moves an endpoint only to where an authenticated packet
// came from.
func heardSinceAdded(in topoInput, l linkState) bool {
	return l.Endpoint.IsValid() && !(in.Overlay.IsValid() && in.Overlay.Contains(l.Endpoint.Addr())) &&
		rxSinceAdded(l)
}

// heardFrom is heardSinceAdded, lately (within 10 s).
func heardFrom(in topoInput, l linkState) bool {
	return heardSinceAdded(in, l) && in.Now.Sub(l.LastRx) < 10*time.Second
}

func rxSinceAdded(l linkState) bool { return !l.LastRx.IsZero() && !l.LastRx.Before(l.AddedAt) }

// handshakeHold is how long after something came from a peer that has no
// session yet it is not re-added: long enough for the peer's first packet
// on an answered handshake (a round trip), short enough that initiations
// that crossed (each side answered the other's, and neither answer was
// taken) are retried about as soon as before.
const handshakeHold = time.Second

// handshaking reports whether the peer was heard from since it was added,
// lately, with no session yet: its handshake initiation came and was
// answered, and the session completes when its first packet arrives. A
// re-add now drops the answered handshake, and the peer, which completed
// it on our answer, sends into a session we no longer have. Both ends
// initiate while a newcomer behind NAT does not yet know it is (it
// advertises itself as public), and the public end's quick retries did
// this to nearly every first handshake with it (bench/mesh: 3-5 s, until
// its data went unanswered).
func handshaking(in topoInput, l linkState) bool {
	return rxSinceAdded(l) && in.Now.Sub(l.LastRx) < handshakeHold
}

func advertisesAddr(p peerInfo, a netip.Addr) bool {
	for _, ep := range p.Endpoints {
		if ep.Addr() == a {
			return true
		}
	}
	return false
}

func firstOr(eps []netip.AddrPort, def netip.AddrPort) netip.AddrPort {
	if len(eps) > 0 {
		return eps[0]
	}
	return def
}

// chooseEndpoint keeps a working endpoint, else rotates through the peer's
// candidates: same-subnet addresses first, then its advertised order
// (reflexive first). Rotation slots come from the wall clock, so both ends
// of a NAT pair try each other's candidates at the same time.
func chooseEndpoint(in topoInput, p peerInfo, l linkState) netip.AddrPort {
	if l.Up && l.Endpoint.IsValid() && !(in.Overlay.IsValid() && in.Overlay.Contains(l.Endpoint.Addr())) {
		return l.Endpoint
	}
	var local, rest []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	add := func(ep netip.AddrPort) {
		if !ep.IsValid() || seen[ep] || (in.Overlay.IsValid() && in.Overlay.Contains(ep.Addr())) {
			return
		}
		seen[ep] = true
		for _, pfx := range in.LocalPrefixes {
			if pfx.Contains(ep.Addr()) {
				local = append(local, ep)
				return
			}
		}
		rest = append(rest, ep)
	}
	for _, ep := range p.Endpoints {
		add(ep)
	}
	if p.Addr.IsValid() {
		port := uint16(in.DefaultPort)
		if len(p.Endpoints) > 0 {
			port = p.Endpoints[len(p.Endpoints)-1].Port()
		}
		add(netip.AddrPortFrom(p.Addr.Unmap(), port))
	}
	cands := append(local, rest...)
	if len(cands) == 0 {
		return l.Endpoint
	}
	if len(cands) == 1 || in.Rotate <= 0 {
		return cands[0]
	}
	slot := in.Now.UnixNano() / int64(in.Rotate)
	return cands[int(slot%int64(len(cands)))]
}
