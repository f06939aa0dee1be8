package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Member is one node of the cluster as gossip knows it.
type Member struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`   // gossip (underlay) IP
	Status    string `json:"status"` // alive | leaving | left | failed
	Site      string `json:"site"`
	Role      string `json:"role"`
	OverlayIP string `json:"overlayIP,omitempty"` // empty when the member runs no overlay
	Block     string `json:"block,omitempty"`
	// Tags are all of the member's serf tags, the mesh's own included.
	Tags map[string]string `json:"tags"`
}

// Mesh is one node's membership and overlay.
type Mesh struct {
	cfg      Config
	log      *slog.Logger
	key      []byte // gossip key; nil = plaintext
	priv     wgtypes.Key
	pub      string // priv's public key: deriving it is a curve25519 multiplication
	overlay  netip.Prefix
	started  chan struct{} // closed once serf exists
	runOnce  sync.Once
	kick     chan struct{} // wake the reconcile loop
	userEvts chan serf.UserEvent

	pubMu   sync.Mutex  // serialises publishTags until our state has the tags
	joining atomic.Bool // a background join is under way
	// failedReapedAt (unix ns): when a failed member was last reaped.
	failedReapedAt atomic.Int64
	syncing        atomic.Bool  // a background state exchange is under way
	startedAt      atomic.Int64 // unix nanos: Run started (youngSyncFor)
	syncUntil      atomic.Int64 // unix nanos: exchange state every fastSync until then
	joined         atomic.Bool  // the cluster's claims have been seen
	newcomer       atomic.Bool  // the first join is under way with a provisional block
	mu             sync.Mutex
	serf           *serf.Serf
	extra          map[string]string
	subs           map[chan struct{}]struct{}
	claim          blockClaim
	clock          uint64 // Lamport clock of block claims
	localEPs       []netip.AddrPort
	localPfx       []netip.Prefix               // subnets of the underlay addresses, as of refreshLocalEndpoints
	reflexive      map[netip.AddrPort]time.Time // how peers observe us
	observedBy     map[string]observation       // the latest observation of each peer
	forgotten      map[netip.Addr]time.Time     // reflexive addresses left behind by a move, until (roam.go)
	movedAt        time.Time                    // the latest underlay change (roam.go)
	lostAt         time.Time                    // an underlay address went away and no new one came yet (roam.go)
	nat            bool
	hardNAT        bool // peers observe us at different ports (punch.go)
	wg             *engine
	lastJoinErr    error
	yield          []netip.Prefix // blocks seen held when a join was refused (merge.go)

	cachedPeers []string // underlay gossip addresses of known peers

	punchQs   chan *serf.Query // punch queries for this node (punch.go)
	punchAcks chan punchAck
	punchReqs chan punchReq              // punch asks over the overlay (punch.go)
	punchWait map[string]chan punchReply // asks over the overlay awaiting an answer, by peer
	punchConn *net.UDPConn
	// blockOf finds a member's address block by name (nil: from serf);
	// the side channel takes a message only from the node it names.
	blockOf func(name string) netip.Prefix

	// Owned by the Run goroutine.
	evCh        chan serf.Event
	needRestart bool // gossip must re-advertise (overlay address changed)
}

// New validates cfg and loads (or creates) the node's identity. It starts
// nothing; Run does.
func New(cfg Config) (*Mesh, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	key, _ := gossipKey(cfg.Token)
	m := &Mesh{
		cfg:        cfg,
		log:        cfg.Logger,
		key:        key,
		started:    make(chan struct{}),
		kick:       make(chan struct{}, 1),
		userEvts:   make(chan serf.UserEvent, 64),
		extra:      copyTags(cfg.Tags),
		subs:       map[chan struct{}]struct{}{},
		reflexive:  map[netip.AddrPort]time.Time{},
		observedBy: map[string]observation{},
		forgotten:  map[netip.Addr]time.Time{},
		punchQs:    make(chan *serf.Query, 16),
		punchAcks:  make(chan punchAck, 64),
		punchReqs:  make(chan punchReq, 16),
		punchWait:  map[string]chan punchReply{},
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("mesh: creating data dir: %w", err)
		}
	}
	if cfg.WireGuard {
		// Refuse before anything is written (the key) when the host
		// cannot run a data plane at all.
		if _, err := CheckDataPlane(cfg.Userspace); err != nil {
			return nil, err
		}
		m.overlay = netip.MustParsePrefix(cfg.OverlayCIDR).Masked()
		priv, err := loadOrCreateKey(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		m.priv, m.pub = priv, priv.PublicKey().String()
	}
	return m, nil
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// PublicKey is the node's WireGuard public key (empty without WireGuard).
func (m *Mesh) PublicKey() string {
	if !m.cfg.WireGuard {
		return ""
	}
	return m.pub
}

// Run joins the cluster, brings the overlay up and keeps it reconciled until
// ctx ends; then it leaves gracefully, removes the device and its routes and
// returns nil. Run may be called once.
func (m *Mesh) Run(ctx context.Context) error {
	err := errors.New("mesh: Run called twice")
	m.runOnce.Do(func() { err = m.run(ctx) })
	return err
}

func (m *Mesh) run(ctx context.Context) error {
	var eng *engine
	if m.cfg.WireGuard {
		// Check the system before anything goes on the wire.
		e, err := newEngine(m.cfg, m.priv, m.log)
		if err != nil {
			return err
		}
		eng = e
		defer eng.close()
		// Address the device before gossip starts: with the overlay on,
		// gossip runs over it, so nodes behind NAT take part too.
		claim, err := m.initialClaim()
		if err != nil {
			return err
		}
		m.mu.Lock()
		m.claim = claim
		m.wg = eng
		m.mu.Unlock()
		if err := eng.setAddress(claim.Block); err != nil {
			return err
		}
		m.refreshLocalEndpoints()
		m.loadPeerCache()
	}

	m.evCh = make(chan serf.Event, 256)
	gossipAt := time.Now() // memberlist's probe ticker starts within serf.Create
	s, err := m.createSerf(m.evCh)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.serf = s
	m.mu.Unlock()
	close(m.started)
	m.log.Info("gossip started", "node", m.cfg.NodeName, "addr", m.GossipAddr(), "encrypted", m.key != nil, "wireguard", m.cfg.WireGuard)

	go m.pumpEvents(ctx, m.evCh)
	if m.cfg.Registerer != nil {
		c := m.Collector()
		if err := m.cfg.Registerer.Register(c); err != nil {
			m.log.Warn("registering mesh metrics", "err", err)
		} else {
			defer m.cfg.Registerer.Unregister(c)
		}
	}

	startedAt := time.Now()
	lastJoin := startedAt
	if len(m.cfg.Join) > 0 {
		// Seeds often start at the same moment: retry quickly at first.
		m.newcomer.Store(eng != nil)
		for wait := 200 * time.Millisecond; ; wait = min(2*wait, m.cfg.RejoinInterval) {
			m.joinSeeds()
			if taken, ok := m.takeYield(); ok && eng != nil && !m.joined.Load() {
				m.reclaimBeforeJoin(eng, taken)
				if ctx.Err() == nil && time.Since(startedAt) < 10*time.Second {
					continue // join again at once, on the new block
				}
			}
			if m.joined.Load() || ctx.Err() != nil || time.Since(startedAt) > 10*time.Second {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		// No seed answered within 10 s: claim what we have rather than
		// stay without an overlay address (conflicts resolve later).
		m.newcomer.Store(false)
		m.joined.Store(true)
	} else {
		m.joined.Store(true)
		if len(m.joinAddrs()) > 0 {
			m.joinSeeds()
		}
	}
	if eng != nil {
		m.reconcile()
	}
	m.notify()

	reconcile := time.NewTicker(m.cfg.ReconcileInterval)
	defer reconcile.Stop()
	rejoin := time.NewTicker(m.cfg.RejoinInterval)
	defer rejoin.Stop()
	// A handshake sent just now completes within milliseconds: look
	// again soon after configuring peers.
	punch := time.NewTimer(time.Hour)
	defer punch.Stop()
	// When the answer to a fresh handshake asked of a peer is due.
	verify := time.NewTimer(time.Hour)
	defer verify.Stop()
	var probeC, syncC <-chan time.Time
	var syncT, probe *time.Ticker
	var addrC <-chan struct{}
	var alignC <-chan time.Time
	started, lastSync, slowed, stretched, sent, syncStopped := time.Now(), time.Time{}, false, false, false, false
	var watchC <-chan struct{}
	m.startedAt.Store(started.UnixNano())
	if eng != nil {
		m.syncFor(fastSyncAtStart)
		syncT = time.NewTicker(youngSync)
		defer syncT.Stop()
		syncC = syncT.C
		probe = time.NewTicker(m.cfg.ProbeInterval)
		defer probe.Stop()
		probeC = probe.C
		watchC = eng.watchC()
		alignC = time.After(untilProbePhase(gossipAt, time.Now(), m.cfg.ProbeInterval))
		addrC = watchAddrs(ctx, eng.linkIdx, m.log)
		m.listenPunch(ctx)
	}
	for {
		m.mu.Lock()
		s = m.serf
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			m.shutdownSerf()
			if eng != nil {
				eng.close()
			}
			m.log.Info("mesh stopped")
			return nil
		case <-s.ShutdownCh():
			m.log.Error("gossip shut down unexpectedly; restarting it")
			time.Sleep(time.Second)
			m.needRestart = true
		case ev := <-m.userEvts:
			m.handleUserEvent(ev)
		case q := <-m.punchQs:
			if eng != nil {
				m.answerPunch(eng, q)
			}
		case r := <-m.punchReqs:
			if eng != nil {
				m.answerPunchReq(eng, r)
			}
		case a := <-m.punchAcks:
			if eng != nil {
				m.takePunchAck(eng, a)
				m.reconcile()
			}
		case <-rejoin.C:
			// While settling (a restarted node must get its refutation of
			// its old "left" state across), while alone, and while some
			// member is failed, dial the seeds again.
			// For rejoinAfterReap after a failed member was reaped, as
			// often as while it was failed: that member may be the other
			// side of a partition that heals now, and the halves meet
			// again only through a seed.
			// And every 30 s anyway (after a long partition the other
			// half may have been reaped, and nothing else would dial it
			// again) the seeds that are not alive members. Joining one
			// that is brings nothing, and costs the seed a full state
			// exchange and every node the join's broadcast: with all 22
			// nodes of a mesh joining every 30 s, a broadcast went round
			// every 1.4 s.
			settling := time.Since(startedAt) < 30*time.Second
			periodic := time.Since(lastJoin) >= 30*time.Second
			reaped := time.Since(time.Unix(0, m.failedReapedAt.Load())) < rejoinAfterReap
			var seeds []string
			switch {
			case settling || reaped || !m.hasAlivePeers() || m.hasFailedPeers():
				seeds = m.joinAddrs()
			case periodic:
				seeds = absentSeeds(m.joinAddrs(), m.currentSerf().Members())
			}
			if len(seeds) > 0 && m.joining.CompareAndSwap(false, true) {
				lastJoin = time.Now()
				go func() { defer m.joining.Store(false); m.joinSeedsOf(seeds) }()
			}
		case now := <-syncC:
			young := now.Sub(started) < youngSyncFor
			if !young && !slowed {
				slowed = true
				// Past the young phase: no more wake-ups every
				// youngSync (an idle node's cost is its wake-ups).
				syncT.Reset(fastSync)
			}
			due := young || now.UnixNano() < m.syncUntil.Load() && now.Sub(lastSync) >= fastSync-youngSync/2
			if due && m.syncing.CompareAndSwap(false, true) {
				lastSync = now
				go func() { defer m.syncing.Store(false); m.syncState(young) }()
			}
			if !young && now.UnixNano() >= m.syncUntil.Load() {
				// Nothing to exchange until members change again
				// (syncFor): no wake-ups meanwhile.
				syncT.Stop()
				syncStopped = true
			}
		case <-m.kick:
			m.reconcile()
		case <-alignC:
			alignC = nil
			probe.Reset(m.cfg.ProbeInterval)
		case <-watchC:
			sent = true
		case <-probeC:
			m.reconcile()
			// Every period in phase (half a period away from
			// memberlist's), or every few while the data plane is calm.
			n := eng.nextProbe()
			stretched = n > 1
			probe.Reset(untilProbePhase(gossipAt, time.Now(), m.cfg.ProbeInterval) + time.Duration(n-1)*m.cfg.ProbeInterval)
		case <-punch.C:
			m.reconcile()
		case <-verify.C:
			m.reconcile()
		case <-addrC:
			m.refreshUnderlay(eng)
			m.reconcile()
		case <-reconcile.C:
			m.refreshUnderlay(eng)
			m.reconcile()
		}
		if m.needRestart {
			m.needRestart = false
			gossipAt = time.Now()
			m.restartSerf()
			if probe != nil {
				alignC = time.After(untilProbePhase(gossipAt, time.Now(), m.cfg.ProbeInterval))
			}
		}
		if stretched && (eng.calmLooks == 0 || sent) {
			// A look that was not calm, or data on its way: back to
			// the probe period.
			stretched = false
			eng.unstretch()
			probe.Reset(untilProbePhase(gossipAt, time.Now(), m.cfg.ProbeInterval))
		}
		sent = false
		if syncStopped && time.Now().UnixNano() < m.syncUntil.Load() {
			// Members changed (pumpEvents, which kicks the loop).
			syncStopped = false
			syncT.Reset(fastSync)
		}
		if eng != nil && eng.verified {
			eng.verified = false
			verify.Reset(verifyWait + 50*time.Millisecond)
		}
		if eng != nil && eng.recheck {
			// See the handshake complete (and switch paths) without
			// waiting for the probe.
			eng.recheck = false
			punch.Reset(150 * time.Millisecond)
		}
	}
}

// untilProbePhase is how long from now until the engine's probe should
// tick: half a period away from memberlist's probes, whose ticker started
// at gossipAt. A ping this node sends and its ack then fall in one look
// at the device. In phase with memberlist (both tickers start within
// milliseconds of each other), the ack came a look after its ping, looked
// like data owed an answer (peerRuntime.ack), and cost a poke at nearly
// every probe this node sent: two configurations of the peer and a
// keepalive that woke it.
func untilProbePhase(gossipAt, now time.Time, period time.Duration) time.Duration {
	off := now.Sub(gossipAt.Add(period/2)) % period
	if off < 0 {
		off += period
	}
	return period - off
}

// Fast state exchange: while the mesh forms, and for a while after a member
// joins or changes, every fastSync with one alive member at random.
//
// For the first youngSyncFor after start the exchange is every youngSync,
// and at once after the node's tags change, with a seed: nodes that join together (two laptops at once) each get the
// seed's member list before the seed knows the other, and gossip reaches
// a node only once its overlay link to the gossiper is up (gossip runs
// over the overlay), by which time the join broadcasts are mostly spent:
// without this a pair found each other only at the first fastSync, 5 s in.
const (
	fastSync            = 5 * time.Second
	fastSyncAtStart     = time.Minute
	fastSyncAfterChange = 30 * time.Second
	youngSync           = 500 * time.Millisecond
	youngSyncFor        = 10 * time.Second
)

// syncFor keeps the fast state exchange on for at least d from now.
func (m *Mesh) syncFor(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := m.syncUntil.Load()
		if cur >= until || m.syncUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// syncState exchanges the full gossip state with one alive member (a
// memberlist push/pull, as its own timer does), or a seed when young and
// there are seeds (reachable on the underlay, and first to know of every
// member that joins).
func (m *Mesh) syncState(young bool) {
	s := m.currentSerf()
	if s == nil {
		return
	}
	var addrs []string
	if young {
		addrs = m.seeds()
	}
	if len(addrs) == 0 {
		for _, mem := range s.Members() {
			if mem.Name != m.cfg.NodeName && mem.Status == serf.StatusAlive {
				addrs = append(addrs, net.JoinHostPort(mem.Addr.String(), strconv.Itoa(int(mem.Port))))
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := s.Memberlist().Join([]string{addrs[rand.IntN(len(addrs))]}); err != nil {
		m.log.Debug("state exchange", "err", err)
	}
}

// restartSerf leaves and re-creates gossip, so that a new overlay address
// is advertised (after losing a block conflict).
func (m *Mesh) restartSerf() {
	m.log.Info("restarting gossip on the new overlay address")
	m.stopSerf(true, false) // the old address must go at once
	s, err := m.createSerf(m.evCh)
	if err != nil {
		m.log.Error("restarting gossip", "err", err)
		return
	}
	m.mu.Lock()
	m.serf = s
	m.mu.Unlock()
	if len(m.cfg.Join) > 0 {
		m.joinSeeds()
	}
	m.notify()
}

// joinAddrs are the seeds, or else the underlay addresses of the peers
// this node knew before it restarted (gossip addresses are overlay
// addresses, unreachable until peers are configured again).
func (m *Mesh) joinAddrs() []string {
	if seeds := m.seeds(); len(seeds) > 0 {
		return seeds
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cachedPeers
}

func (m *Mesh) hasFailedPeers() bool {
	for _, mem := range m.currentSerf().Members() {
		if mem.Status == serf.StatusFailed {
			return true
		}
	}
	return false
}

// Memberlist's LAN timings, retuned for an idle mesh, whose cost is its
// wake-ups: each is a timer or a packet, and a gossip packet on the
// overlay passes through WireGuard on both ends (a TUN read or write, an
// encryption or decryption, a socket read, each a goroutine woken). Only
// with the overlay: gossip on the underlay (--no-mesh) keeps memberlist's
// LAN defaults (there bench/agentloss once saw a restarted agent stay
// out of the master's view for 90 s with these, cause not found).
//
// lanGossipInterval and lanGossipNodes: the gossip round wakes the process
// even with nothing to send (an idle mesh has nothing): every second to 6
// members instead of every 200 ms to 3 (LAN default). A broadcast reaches
// 7 nodes after one round and most of a 22-node mesh after two; while the mesh
// forms, the state exchange of the first minute (fastSync) carries most.
//
// lanProbeInterval and lanSuspicionMult: memberlist probes one member
// every 4 s instead of every second, with the suspicion multiplier at 1
// instead of 4, so the suspicion timeout (the multiplier times the probe
// interval, scaled by the cluster's size: 5.4 s in a 22-node mesh, 4 s
// under 10 nodes) is as short as memberlist's default at its shortest.
// With a multiplier under 3 memberlist expects no confirmations from
// other members (Lifeguard's k is the multiplier minus 2) and holds a
// suspicion for that shortest timeout, where the default starts at six
// times it and shortens it as others confirm: a dead member is declared
// dead as soon as before, or sooner; a live one has that long to refute.
// A probe is a ping and its ack through WireGuard on both ends, and a
// WireGuard keepalive 10 s later: about half of an idle node's wake-ups
// at a probe every 2 s. A member that died is first probed later: some
// member probes it about once every 4 s whatever the mesh's size (each
// probes the others in turn), 2 s after it died on average where the
// default took 0.5 s. Memberlist's pings used to be how the far end of a cut
// direct path found out (nothing else goes on an idle link); the near end
// now tells it (cutEvent).
//
// lanPushPullInterval: the periodic full state exchange with a random
// member, a TCP connection through the overlay, every 60 s instead of 30.
// It repairs broadcasts that were lost; the mesh runs its own every
// fastSync while members come and go.
//
// In bench/mesh (22 nodes, no traffic), with weft's own gossip transport,
// these took an idle node from 0.44 % of a core (mean; 0.53 % the worst)
// to 0.20-0.23 % (0.23-0.27 % the worst).
const (
	lanGossipInterval   = time.Second
	lanGossipNodes      = 6
	lanProbeInterval    = 4 * time.Second
	lanSuspicionMult    = 1
	lanPushPullInterval = time.Minute
)

// createSerf builds serf and memberlist from the config.
func (m *Mesh) createSerf(evCh chan serf.Event) (*serf.Serf, error) {
	host, port, err := splitHostPortDefault(m.cfg.GossipBind, DefaultGossipPort)
	if err != nil {
		return nil, fmt.Errorf("mesh: gossip address %q: %w", m.cfg.GossipBind, err)
	}
	var ml *memberlist.Config
	switch m.cfg.Gossip {
	case "local":
		ml = memberlist.DefaultLocalConfig()
	case "wan":
		ml = memberlist.DefaultWANConfig()
	default:
		ml = memberlist.DefaultLANConfig()
		if m.cfg.WireGuard {
			ml.GossipInterval, ml.GossipNodes = lanGossipInterval, lanGossipNodes
			ml.ProbeInterval, ml.SuspicionMult = lanProbeInterval, lanSuspicionMult
			ml.PushPullInterval = lanPushPullInterval
		}
	}
	ml.BindAddr = host
	ml.BindPort = port
	ml.AdvertisePort = port
	if m.cfg.GossipAdvertise != "" {
		ah, ap, err := splitHostPortDefault(m.cfg.GossipAdvertise, port)
		if err != nil {
			return nil, fmt.Errorf("mesh: gossip advertise address %q: %w", m.cfg.GossipAdvertise, err)
		}
		ml.AdvertiseAddr, ml.AdvertisePort = ah, ap
	}
	if m.cfg.WireGuard && m.cfg.GossipAdvertise == "" {
		m.mu.Lock()
		block := m.claim.Block
		m.mu.Unlock()
		if block.IsValid() {
			// Gossip over the overlay: reachable behind NAT too.
			ml.BindAddr = "0.0.0.0"
			ml.AdvertiseAddr = overlayIP(block).String()
		}
	}
	ml.DeadNodeReclaimTime = 30 * time.Second
	// No compression: memberlist's LZW writer allocates a 16 KiB table
	// per message, to shrink a ping of a hundred bytes. In a profile of
	// an idle node that, memberlist's transport's 64 KiB buffer per
	// packet read (gossipTransport) and the collections they caused were
	// about a tenth of its CPU. Receivers decode compressed messages
	// either way, so nodes of either kind gossip together.
	ml.EnableCompression = false
	// Gossip runs over the overlay, whose peers come from gossip:
	// broadcasts sent before a peer was configured are lost, and a
	// frequent full-state exchange repairs that quickly. The mesh runs
	// one every fastSync while members come and go (Run); memberlist's
	// own, every 30 s, is what an idle mesh pays.
	if m.key != nil {
		kr, err := memberlist.NewKeyring(nil, m.key)
		if err != nil {
			return nil, fmt.Errorf("mesh: gossip keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming = true
		ml.GossipVerifyOutgoing = true
	}
	logger := log.New(&serfLogWriter{log: m.log}, "", 0)
	ml.Logger = logger

	sc := serf.DefaultConfig()
	sc.NodeName = m.cfg.NodeName
	sc.MemberlistConfig = ml
	sc.Logger = logger
	sc.EventCh = evCh
	sc.Merge = mergeGuard{m}
	sc.Tags = m.tags()
	sc.ReconnectInterval = m.cfg.ReconnectInterval
	sc.ReconnectTimeout = m.cfg.ReapTimeout
	sc.TombstoneTimeout = m.cfg.TombstoneTimeout
	sc.ReapInterval = 5 * time.Second
	sc.CoalescePeriod = 0
	// A restarted node (new overlay address, or a reboot) meets its own
	// old incarnation; it must not shut itself down over it.
	sc.EnableNameConflictResolution = false
	// With the overlay, no serf snapshot: its writer wakes every 500 ms
	// for good (an idle node's cost is its wake-ups), and what it brings
	// back after a restart weft has otherwise. Its rejoin dials the old
	// members' gossip addresses, overlay addresses that no route reaches
	// before the peers are configured again (the peer cache, joinAddrs,
	// holds their underlay addresses); its event clock kept a restarted
	// node from replaying old user events (reports of where peers saw
	// it, perhaps on another network), which the first join of each serf
	// instance now ignores (joinSeedsOf). Gossip on the underlay
	// (--no-mesh) keeps it: there its rejoin is how a node with no seeds
	// finds the cluster again.
	if m.cfg.DataDir != "" && !m.cfg.WireGuard {
		sc.SnapshotPath = filepath.Join(m.cfg.DataDir, "serf.snapshot")
		sc.RejoinAfterLeave = true
	} else if m.cfg.DataDir != "" {
		_ = os.Remove(filepath.Join(m.cfg.DataDir, "serf.snapshot")) // left by an older weft
	}
	s, err := createSerfOn(sc, logger)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("mesh: gossip port %s is in use (another weft on this host? pass --gossip-addr HOST:PORT): %w", m.cfg.GossipBind, err)
		}
		return nil, fmt.Errorf("mesh: starting gossip on %s: %w", m.cfg.GossipBind, err)
	}
	return s, nil
}

// createSerfOn creates serf with memberlist on weft's gossip transport,
// listening at sc's bind address and port.
func createSerfOn(sc *serf.Config, logger *log.Logger) (*serf.Serf, error) {
	ml := sc.MemberlistConfig
	tr, err := newGossipTransport(ml.BindAddr, ml.BindPort, logger)
	if err != nil {
		return nil, err
	}
	ml.Transport = tr
	if ml.BindPort == 0 {
		ml.BindPort = tr.port()
	}
	s, err := serf.Create(sc)
	if err != nil {
		tr.Shutdown()
		return nil, err
	}
	return s, nil
}

func splitHostPortDefault(s string, def int) (string, int, error) {
	if s == "" {
		return "0.0.0.0", def, nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole thing is a host.
		return strings.Trim(s, "[]"), def, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// seeds returns the join addresses with the default port filled in.
// seedAddrs are the seeds given as IP addresses (names are not resolved
// here: they only break ties between relays, topoInput.Seeds).
func (m *Mesh) seedAddrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range m.seeds() {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap.Addr().Unmap())
		}
	}
	return out
}

func (m *Mesh) seeds() []string {
	var out []string
	for _, j := range m.cfg.Join {
		for _, s := range strings.Split(j, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(s); err != nil {
				s = net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(DefaultGossipPort))
			}
			out = append(out, s)
		}
	}
	return out
}

// absentSeeds are the seeds (host:port) that are not alive members:
// neither an alive member's gossip address nor the address of an endpoint
// one advertises (seeds are underlay addresses, and with the overlay on,
// gossip runs over overlay addresses). Seeds given by name count as
// absent.
func absentSeeds(seeds []string, members []serf.Member) []string {
	present := map[string]bool{}
	for _, mem := range members {
		if mem.Status != serf.StatusAlive {
			continue
		}
		present[net.JoinHostPort(mem.Addr.String(), strconv.Itoa(int(mem.Port)))] = true
		for _, ep := range decodeEndpoints(mem.Tags[tagEndpoints]) {
			present[ep.Addr().String()] = true
		}
	}
	var out []string
	for _, s := range seeds {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			host = s
		}
		if a, err := netip.ParseAddr(host); err == nil && (present[s] || present[a.Unmap().String()]) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func (m *Mesh) joinSeeds() { m.joinSeedsOf(m.joinAddrs()) }

func (m *Mesh) joinSeedsOf(seeds []string) {
	if len(seeds) == 0 {
		return
	}
	s := m.currentSerf()
	// Until this serf instance has met anyone, the events buffered in
	// the cluster are from before it started: not replayed.
	ignoreOld := s.NumNodes() <= 1
	n, err := s.Join(seeds, ignoreOld)
	m.mu.Lock()
	prev := m.lastJoinErr
	m.lastJoinErr = err
	m.mu.Unlock()
	if err != nil && m.hasYield() {
		m.log.Debug("join refused over a block collision", "err", err)
		return
	}
	if err != nil {
		msg := "joining the cluster failed; retrying"
		if isDialError(err) {
			if prev == nil || prev.Error() != err.Error() {
				m.log.Warn(msg+" (no seed answered)", "seeds", seeds, "err", err)
			}
			return
		}
		if m.key != nil {
			msg += " (a node with a different --token is refused: check the token)"
		} else {
			msg += " (this node has no --token; a cluster that has one refuses it)"
		}
		if prev == nil || prev.Error() != err.Error() {
			m.log.Error(msg, "seeds", seeds, "err", err)
		}
		return
	}
	m.newcomer.Store(false)
	m.joined.Store(true)
	m.log.Info("joined the cluster", "seeds", seeds, "contacted", n)
}

func (m *Mesh) hasAlivePeers() bool {
	for _, mem := range m.currentSerf().Members() {
		if mem.Name != m.cfg.NodeName && mem.Status == serf.StatusAlive {
			return true
		}
	}
	return false
}

func (m *Mesh) shutdownSerf() { m.stopSerf(!m.cfg.StayOnStop, false) }

// stopSerf stops gossip, announcing a leave first when leave is set; quiet
// skips the log line of a stop without leave.
func (m *Mesh) stopSerf(leave, quiet bool) {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil || s.State() == serf.SerfShutdown {
		return
	}
	if leave {
		// serf's Leave waits LeavePropagateDelay (1 s) for the news to
		// spread: a quiet stop (a newcomer whose join was refused, which
		// nobody knows) skips it, and so joins again on its new block a
		// second sooner.
		if err := s.Leave(); err != nil {
			m.log.Warn("leaving the cluster", "err", err)
		}
	} else if !quiet {
		m.log.Info("stopping without leaving the cluster: peers keep this node until it returns or is reaped")
	}
	if err := s.Shutdown(); err != nil {
		m.log.Warn("stopping gossip", "err", err)
	}
}

// rejoinAfterReap is how long after a failed member is reaped the seeds
// are still dialled every RejoinInterval.
const rejoinAfterReap = 2 * time.Minute

// pumpEvents turns serf events into notifications and reconcile kicks.
func (m *Mesh) pumpEvents(ctx context.Context, evCh chan serf.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-evCh:
			switch e := ev.(type) {
			case serf.MemberEvent:
				if e.Type == serf.EventMemberJoin || e.Type == serf.EventMemberUpdate {
					m.syncFor(fastSyncAfterChange)
				}
				for _, mem := range e.Members {
					m.log.Debug("member event", "event", e.EventType().String(), "member", mem.Name, "addr", mem.Addr.String(), "status", mem.Status.String())
					if e.Type == serf.EventMemberReap && mem.Status == serf.StatusFailed {
						m.failedReapedAt.Store(time.Now().UnixNano())
					}
				}
				m.notify()
				m.kickReconcile()
			case serf.UserEvent:
				select {
				case m.userEvts <- e:
				default:
				}
			case *serf.Query:
				if e.Name == punchQuery {
					select {
					case m.punchQs <- e:
					default:
					}
				}
			}
		}
	}
}

func (m *Mesh) kickReconcile() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// notify wakes every subscriber (coalesced: at most one pending each).
func (m *Mesh) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a (coalesced) value whenever
// membership or tags change, and a function that cancels the subscription.
func (m *Mesh) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		})
	}
}

// tags composes the node's full tag set. The caller must not hold m.mu.
func (m *Mesh) tags() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tagsLocked()
}

func (m *Mesh) tagsLocked() map[string]string {
	t := copyTags(m.extra)
	t[tagRole] = m.cfg.Role
	if m.cfg.Site != "" {
		t[tagSite] = m.cfg.Site
	}
	if m.cfg.WireGuard {
		t[tagPublicKey] = m.pub
		if m.claim.Block.IsValid() {
			t[tagBlock] = m.claim.Block.String()
			t[tagBlockTime] = strconv.FormatUint(m.claim.Time, 10)
		}
		if eps := m.advertisedLocked(); len(eps) > 0 {
			t[tagEndpoints] = encodeEndpoints(eps)
		}
		if m.nat {
			t[tagNAT] = strconv.Itoa(min(len(m.reflexive), maxEndpoints))
			if len(m.reflexive) == 0 {
				t[tagNAT] = natUnknown // moved: reflexive endpoints not known yet
			}
			if m.hardNAT {
				t[tagNATKind] = "h"
			}
		}
	}
	return t
}

// advertisedLocked orders the node's candidate endpoints: reflexive
// addresses peers observed (newest first), then --advertise, then local
// interface addresses.
func (m *Mesh) advertisedLocked() []netip.AddrPort {
	type seen struct {
		ep netip.AddrPort
		at time.Time
	}
	var refl []seen
	for ep, at := range m.reflexive {
		refl = append(refl, seen{ep, at})
	}
	slices.SortFunc(refl, func(a, b seen) int { return b.at.Compare(a.at) })
	var out []netip.AddrPort
	for _, r := range refl {
		out = append(out, r.ep)
	}
	return append(out, m.localEPs...)
}

// SetTags replaces the extra tags (those of other roles) at runtime.
func (m *Mesh) SetTags(extra map[string]string) error {
	for k := range extra {
		if reservedTags[k] {
			return fmt.Errorf("mesh: extra tag %q is reserved for the mesh", k)
		}
	}
	m.mu.Lock()
	old := m.extra
	m.extra = copyTags(extra)
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		m.notify()
		return nil
	}
	if err := m.publishTags(); err != nil {
		m.mu.Lock()
		m.extra = old
		m.mu.Unlock()
		return err
	}
	return nil
}

// publishAsync publishes the tags without blocking the caller (serf's
// SetTags waits for the broadcast to go out).
func (m *Mesh) publishAsync() {
	go func() {
		done := make(chan error, 1)
		go func() { done <- m.publishTags() }()
		// A young node's news (its reflexive address, its NAT) goes to
		// the seed at once, where the other young nodes fetch it: as
		// soon as our own state has it, not when SetTags returns (it
		// waits until gossip has sent the broadcast a few times, 0.5 s
		// and more; bench/mesh NAT pairs waited 1-1.7 s for each
		// other's tags).
		if st := m.startedAt.Load(); st != 0 && time.Since(time.Unix(0, st)) < youngSyncFor {
			m.awaitLocalTags(500 * time.Millisecond)
			if m.syncing.CompareAndSwap(false, true) {
				m.syncState(true)
				m.syncing.Store(false)
			}
		}
		if err := <-done; err != nil {
			m.log.Warn("publishing tags", "err", err)
		}
	}()
}

// awaitLocalTags waits (up to max) until serf's view of this node carries
// the current tags.
func (m *Mesh) awaitLocalTags(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		s, want := m.serf, m.tagsLocked()
		m.mu.Unlock()
		if s == nil || maps.Equal(s.LocalMember().Tags, want) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publishTags pushes the current tag set to serf.
//
// serf's SetTags puts the tags in our own state at once, then waits until
// gossip has sent their broadcast a few times (0.5 s and more). Publishes
// are serialised only until our state has the tags: a change that comes
// meanwhile (a new node confirms its block, then learns its reflexive
// address) is published at once, and its broadcast replaces the one still
// going out. Serialised for the whole wait, a newcomer's reflexive address
// reached its state, and so its NAT peers, 1.2 s late.
func (m *Mesh) publishTags() error {
	m.pubMu.Lock()
	m.mu.Lock()
	s := m.serf
	t := m.tagsLocked()
	m.mu.Unlock()
	if s == nil {
		m.pubMu.Unlock()
		return nil
	}
	errc := make(chan error, 1)
	go func() { errc <- s.SetTags(t) }()
	var err error
	done := false
	for deadline := time.Now().Add(time.Second); !done && time.Now().Before(deadline) && !maps.Equal(s.LocalMember().Tags, t); {
		select {
		case err = <-errc:
			done = true
		case <-time.After(5 * time.Millisecond):
		}
	}
	m.pubMu.Unlock()
	if !done {
		err = <-errc
	}
	if err != nil {
		return fmt.Errorf("mesh: publishing tags (%d bytes of tags allowed in all): %w", memberlist.MetaMaxSize, err)
	}
	m.notify()
	return nil
}

// Members returns every member gossip knows: alive, suspect or failed, and
// left until reaped. Before Run it returns only Self.
func (m *Mesh) Members() []Member {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return []Member{m.Self()}
	}
	sms := s.Members()
	out := make([]Member, 0, len(sms))
	for _, sm := range sms {
		out = append(out, toMember(sm))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Ping probes the member named name once through gossip (a memberlist
// UDP ping, the probe gossip's failure detection sends) and returns nil
// when it answered within the probe timeout.
func (m *Mesh) Ping(ctx context.Context, name string) error {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return errors.New("mesh: gossip is not running")
	}
	for _, sm := range s.Members() {
		if sm.Name != name {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := s.Memberlist().Ping(name, &net.UDPAddr{IP: sm.Addr, Port: int(sm.Port)})
		return err
	}
	return fmt.Errorf("mesh: no member %q", name)
}

func toMember(sm serf.Member) Member {
	mem := Member{
		Name:   sm.Name,
		Addr:   sm.Addr.String(),
		Status: sm.Status.String(),
		Site:   sm.Tags[tagSite],
		Role:   sm.Tags[tagRole],
		Tags:   copyTags(sm.Tags),
	}
	// A provisional claim (Lamport time 0) may still move: it is not
	// shown until the node has confirmed it.
	if b, err := netip.ParsePrefix(sm.Tags[tagBlock]); err == nil && sm.Tags[tagBlockTime] != "0" {
		mem.Block = b.String()
		mem.OverlayIP = overlayIP(b).String()
	}
	return mem
}

// Self returns this node as a Member.
func (m *Mesh) Self() Member {
	m.mu.Lock()
	s := m.serf
	t := m.tagsLocked()
	m.mu.Unlock()
	if s != nil {
		sm := s.LocalMember()
		sm.Tags = t
		return toMember(sm)
	}
	return toMember(serf.Member{Name: m.cfg.NodeName, Tags: t, Status: serf.StatusNone})
}

// GossipAddr is the host:port serf listens on (known once Run started).
func (m *Mesh) GossipAddr() string {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return ""
	}
	ml := s.Memberlist().LocalNode()
	return net.JoinHostPort(ml.Addr.String(), strconv.Itoa(int(ml.Port)))
}

// Started is closed once gossip runs (GossipAddr is then known).
func (m *Mesh) Started() <-chan struct{} { return m.started }

// serfLogWriter sends serf's and memberlist's log lines to slog, and turns
// decryption failures into a clear "wrong token" message.
type serfLogWriter struct{ log *slog.Logger }

var _ io.Writer = (*serfLogWriter)(nil)

func (w *serfLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	lower := strings.ToLower(line)
	switch {
	case strings.Contains(line, errBlockTakenText):
		// A refused newcomer on a taken block (merge.go) claims another.
		w.log.Debug(strings.TrimSpace(line))
	case strings.Contains(lower, "decrypt") || strings.Contains(lower, "not encrypted") || strings.Contains(lower, "encryption"):
		from := ""
		if i := strings.Index(line, "from="); i >= 0 {
			from = strings.Fields(line[i+5:])[0]
		}
		w.log.Warn("refused gossip: the sender's join token differs from ours (wrong or missing --token)", "from", from, "detail", line)
	case strings.HasPrefix(line, "[ERR]"):
		w.log.Error(strings.TrimSpace(strings.TrimPrefix(line, "[ERR]")))
	case strings.HasPrefix(line, "[WARN]"):
		w.log.Warn(strings.TrimSpace(strings.TrimPrefix(line, "[WARN]")))
	case strings.HasPrefix(line, "[INFO]"):
		w.log.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[INFO]")))
	default:
		w.log.Debug(strings.TrimSpace(strings.TrimPrefix(line, "[DEBUG]")))
	}
	return len(p), nil
}

// currentSerf returns the running serf (it changes when gossip restarts).
func (m *Mesh) currentSerf() *serf.Serf {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.serf
}

// isDialError: the seed did not answer at all (not a refused handshake).
func isDialError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "i/o timeout") ||
		strings.Contains(s, "no route to host") || strings.Contains(s, "network is unreachable")
}
