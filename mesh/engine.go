package mesh

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// routeProto marks the routes weft installs, so only they are touched.
const routeProto netlink.RouteProtocol = 0x57 // 'W'

// reflexiveEvent is the serf user event by which a node tells the cluster
// where it observes a peer ("name ip:port").
const reflexiveEvent = "weft-ep"

// cutEvent is the serf user event by which a node tells a peer that the
// direct path between them stopped working on its side ("peer from"):
// tellCuts, takeCut.
const cutEvent = "weft-cut"

// cutRelayedEvent is a cutEvent's payload that came from the relay over the
// side channel (punch.go) instead of by gossip: it left the peer
// milliseconds ago, when its path went down (takeCut). It never goes on
// gossip.
const cutRelayedEvent = "weft-cut-relayed"

// peerRuntime is the data plane's memory of one peer (by public key).
type peerRuntime struct {
	since       time.Time
	rx, tx      int64
	lastRx      time.Time // when rx last grew
	lastObs     time.Time // the previous observe
	waitSince   time.Time // data went out since then and nothing came back (zero: nothing owed)
	ack         bool      // data came in since the previous observe and nothing went back
	movedAt     time.Time // we moved: keepalives until the peer is heard again (announceFor)
	lastHS      time.Time // latest completed handshake
	everUp      bool      // a handshake has completed
	reportedEP  netip.AddrPort
	reportedAt  time.Time
	addedAt     time.Time // last (re-)added to the device
	firstAdded  time.Time // first added to the device
	wasUp       bool      // Up at the previous reconcile (for the log)
	punch       punchState
	staleBefore time.Time // sessions from before this (a move) do not count as Up
	verifyAt    time.Time // a fresh handshake was asked of the peer then (engine.link)
}

// engine is the WireGuard data plane of one node.
type engine struct {
	cfg     Config
	log     *slog.Logger
	priv    wgtypes.Key
	dev     wgDevice
	wg      *wgctrl.Client
	readDev func() (*wgtypes.Device, error) // the device's peers and counters
	setDev  func(wgtypes.Config) error      // configures the device
	mtu     int
	overlay netip.Prefix
	addr    netip.Addr // our overlay address (.1 of our block)
	peers   map[wgtypes.Key]*peerRuntime
	routes  map[netip.Prefix]bool
	statMu  sync.Mutex // guards last and lastDev for Status readers
	last    topology
	lastDev *wgtypes.Device
	closed  bool
	linkIdx int
	ifname  string
	rawFD   int  // raw IPv4 socket for NAT priming; 0 = not open
	recheck bool // peers were (re-)configured: look again shortly
	// verified: this look asked a peer for a fresh handshake (linkState.Verify):
	// look again when its answer is due (verifyWait), not at the next probe.
	verified bool
	// calmLooks counts the latest looks in a row that found nothing to
	// follow up (calm); probeStretch spaces the probe by it.
	calmLooks int
	// watch is the userspace TUN's tripwire for traffic while the probe
	// is stretched; nil with the kernel module, which then never
	// stretches it.
	watch   *watchTUN
	firstUp time.Time
	procs   *procScaler // Config.IdleProcs; nil when off
}

// newEngine checks the system and creates the WireGuard device with its key
// and port, but leaves the link down: traffic before a node is configured
// stalls the first handshake (measurements §1.7.4).
func newEngine(cfg Config, priv wgtypes.Key, log *slog.Logger) (*engine, error) {
	overlay := netip.MustParsePrefix(cfg.OverlayCIDR).Masked()
	if err := checkOverlap(overlay, cfg.Interface); err != nil {
		return nil, err
	}
	e := &engine{
		cfg: cfg, log: log, priv: priv, overlay: overlay, ifname: cfg.Interface,
		peers: map[wgtypes.Key]*peerRuntime{}, routes: map[netip.Prefix]bool{},
	}
	e.mtu = overlayMTU(cfg.MTU, underlayMTU(cfg.Interface))
	if cfg.IdleProcs && idleProcsAllowed() {
		e.procs = &procScaler{}
	}
	if err := replaceLeftover(cfg.Interface, priv); err != nil {
		return nil, err
	}
	if !cfg.Userspace {
		kd, err := createKernelDevice(cfg.Interface, e.mtu)
		switch {
		case err == nil:
			e.dev = kd
		case errors.Is(err, errNoKernelWG):
			log.Info("no kernel WireGuard module; using userspace wireguard-go")
		default:
			return nil, err
		}
	}
	if e.dev == nil {
		ud, err := createUserDevice(cfg.Interface, e.mtu, func(s string) { log.Debug("wireguard-go: " + s) })
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		e.dev = ud
		e.watch = ud.watch
		if _, port, err := splitHostPortDefault(cfg.GossipBind, DefaultGossipPort); err == nil && port > 0 {
			e.watch.gossipPort.Store(uint32(port))
		}
	}
	wc, err := wgctrl.New()
	if err != nil {
		e.dev.Close()
		return nil, fmt.Errorf("mesh: opening wgctrl: %w", err)
	}
	e.wg = wc
	e.readDev = func() (*wgtypes.Device, error) { return wc.Device(cfg.Interface) }
	e.setDev = func(c wgtypes.Config) error { return wc.ConfigureDevice(cfg.Interface, c) }
	if ud, ok := e.dev.(*userDevice); ok {
		// In-process: no socket on every look, nor on every poke.
		e.readDev, e.setDev = ud.state, ud.configure
	}
	port := cfg.ListenPort
	if err := e.setDev(wgtypes.Config{PrivateKey: &priv, ListenPort: &port, ReplacePeers: true}); err != nil {
		e.close()
		return nil, fmt.Errorf("mesh: configuring %s: %w", cfg.Interface, err)
	}
	l, err := netlink.LinkByName(cfg.Interface)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("mesh: finding %s: %w", cfg.Interface, err)
	}
	e.linkIdx = l.Attrs().Index
	if l.Attrs().MTU != e.mtu {
		if err := netlink.LinkSetMTU(l, e.mtu); err != nil {
			e.close()
			return nil, fmt.Errorf("mesh: setting MTU %d on %s: %w", e.mtu, cfg.Interface, err)
		}
	}
	log.Info("WireGuard device created", "interface", cfg.Interface, "dataPlane", e.dev.Kind(), "mtu", e.mtu, "port", port, "publicKey", priv.PublicKey().String())
	return e, nil
}

// replaceLeftover deletes a kernel WireGuard link of this name left behind
// by a crashed run of this node: one holding this node's own private key
// (the data dir is locked, so no live weft shares the key). A link with
// another key belongs to something running in this network namespace —
// another weft, or wg-quick — and is refused rather than torn down.
func replaceLeftover(name string, priv wgtypes.Key) error {
	l, err := netlink.LinkByName(name)
	if err != nil || l.Type() != "wireguard" {
		return nil // absent, or not WireGuard: device creation says so
	}
	wc, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("mesh: interface %s already exists and cannot be inspected (%v); remove it, or give this node another --interface", name, err)
	}
	defer wc.Close()
	d, err := wc.Device(name)
	if err != nil {
		return fmt.Errorf("mesh: interface %s already exists and cannot be inspected (%v); remove it, or give this node another --interface", name, err)
	}
	if d.PrivateKey != priv {
		return fmt.Errorf("mesh: interface %s is already a WireGuard device of another identity (public key %s, port %d): another weft or WireGuard runs in this network namespace; stop it, or give this node another --interface", name, d.PublicKey, d.ListenPort)
	}
	return netlink.LinkDel(l)
}

// close removes the device (and with it its address and routes).
func (e *engine) close() {
	if e == nil || e.closed {
		return
	}
	e.closed = true
	if e.procs != nil && e.procs.idle {
		applyProcs(false)
	}
	if e.rawFD > 0 {
		_ = syscall.Close(e.rawFD)
	}
	if e.wg != nil {
		e.wg.Close()
	}
	if e.dev != nil {
		e.dev.Close()
	}
	// The userspace TUN goes away with its file; make sure either way.
	if l, err := netlink.LinkByName(e.ifname); err == nil && l.Attrs().Index == e.linkIdx {
		_ = netlink.LinkDel(l)
	}
}

// setAddress gives the interface our overlay address (a /32: each peer
// block gets its own route, and our block stays free for containers) and
// brings it up.
func (e *engine) setAddress(block netip.Prefix) error {
	l, err := netlink.LinkByIndex(e.linkIdx)
	if err != nil {
		return fmt.Errorf("mesh: finding %s: %w", e.ifname, err)
	}
	want := overlayIP(block)
	if e.addr.IsValid() && e.addr != want {
		old := &netlink.Addr{IPNet: &net.IPNet{IP: e.addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		_ = netlink.AddrDel(l, old)
		e.routes = map[netip.Prefix]bool{} // routes carried the old src
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: want.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("mesh: adding %s to %s: %w", want, e.ifname, err)
	}
	e.addr = want
	// Any node may relay for two others.
	_ = os.WriteFile("/proc/sys/net/ipv4/conf/"+e.ifname+"/forwarding", []byte("1"), 0o644)
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("mesh: bringing %s up: %w", e.ifname, err)
	}
	if u, ok := e.dev.(*userDevice); ok {
		if err := u.up(); err != nil {
			return fmt.Errorf("mesh: starting wireguard-go on %s: %w", e.ifname, err)
		}
	}
	return nil
}

// observe reads the device and updates per-peer liveness.
func (e *engine) observe(now time.Time) map[wgtypes.Key]wgtypes.Peer {
	d, err := e.readDev()
	if err != nil {
		e.log.Warn("reading WireGuard device", "err", err)
		return nil
	}
	e.statMu.Lock()
	e.lastDev = d
	e.statMu.Unlock()
	out := make(map[wgtypes.Key]wgtypes.Peer, len(d.Peers))
	for _, p := range d.Peers {
		out[p.PublicKey] = p
		rt := e.peers[p.PublicKey]
		if rt == nil {
			rt = &peerRuntime{since: now}
			e.peers[p.PublicKey] = rt
		}
		rt.traffic(p.ReceiveBytes, p.TransmitBytes, now, e.cfg.ProbeInterval)
		if !p.LastHandshakeTime.IsZero() {
			rt.everUp = true
			rt.lastHS = p.LastHandshakeTime
		}
	}
	if e.procs != nil {
		if idle, changed := e.procs.observe(processCPU(), now); changed {
			applyProcs(idle)
			e.log.Debug("process load changed: GOMAXPROCS", "procs", runtime.GOMAXPROCS(0))
		}
	}
	return out
}

// traffic takes the peer's byte counters at now: whether something came in
// since the previous look, whether data went out that nothing has answered
// yet, and whether data came in that nothing answered. period is the probe
// period: after a longer pause between looks (probeStretch) an unanswered
// send counts from one period back, as at the probe period, not from the
// previous look (a ping just sent would have counted as owed for seconds).
func (rt *peerRuntime) traffic(rx, tx int64, now time.Time, period time.Duration) {
	// Handshake messages count in rx too, so rx alone is no proof of a
	// session: a pair whose initiations crossed sends initiations but
	// no data (everUp needs a completed handshake). The counters start
	// again at 0 when a peer is re-added.
	rxd, txd := rx-rt.rx, tx-rt.tx
	if rxd < 0 {
		rxd = rx
	}
	if txd < 0 {
		txd = tx
	}
	if rxd > 0 {
		rt.lastRx = now
		rt.waitSince = time.Time{}
	} else if txd >= dataBytes && rt.waitSince.IsZero() {
		// Sent (not just a keepalive or two) and heard nothing: owed an
		// answer since the previous look at the latest.
		rt.waitSince = rt.lastObs
		if rt.waitSince.IsZero() {
			rt.waitSince = now
		}
		if period > 0 && rt.waitSince.Before(now.Add(-period)) {
			rt.waitSince = now.Add(-period)
		}
	}
	rt.ack = rxd >= dataBytes && txd == 0
	rt.rx, rt.tx, rt.lastObs = rx, tx, now
}

// announceFor is how long after a move a node keeps announcing itself to a
// peer it has not heard from since.
const announceFor = 10 * time.Second

// dataBytes is the least that rx or tx counters grow by for anything but
// keepalives: WireGuard counts an empty keepalive as 32 bytes and a data
// packet (an IP header and more, padded to 16) as 64 or more; a handshake
// initiation as 148. Three keepalives in one look are taken for data:
// rare, and the peer then answers once more.
const dataBytes = 96

// live reports whether the direct path to a peer works, as far as traffic
// shows: a handshake has completed since the last move, and nothing sent
// since has gone unanswered for DeadAfter. An idle link stays live with
// nothing on the wire (Tailscale's model: no probes on idle links); the
// first send that gets no answer marks it down. A peer answers data that
// got no reply with one keepalive (linkState.Ack), so a one-way flow
// (gossip, a UDP stream) is answered too.
//
// A direct path between two nodes behind NAT (a punched one) is no
// different: it hangs on both NATs' mappings, which each end keeps with
// its NAT keepalive (Config.NATKeepalive, inside the usual 30 s UDP
// timeout). A peer that moves drops the address from its tags, which
// takes the path down at once (computeTopology); a NAT that loses its
// mappings shows as data unanswered. (Such a path used to count only
// while packets flowed, with a keepalive from both ends every probe: the
// largest cost of an idle laptop.)
func (e *engine) live(rt *peerRuntime, now time.Time) bool {
	if !rt.everUp || rt.lastHS.Before(rt.staleBefore) {
		return false
	}
	return rt.waitSince.IsZero() || now.Sub(rt.waitSince) < e.cfg.DeadAfter || rt.verifying(now)
}

// verifyWait is how long a path whose data went unanswered stays up while a
// fresh handshake asks the peer whether it is there (asked verifyWait
// before DeadAfter): the handshake is answered by the peer's WireGuard at
// once, whatever the peer routes, so the next look tells.
const verifyWait = 900 * time.Millisecond

// unanswered reports whether data sent to the peer has gone unanswered
// for DeadAfter.
func (rt *peerRuntime) unanswered(now time.Time, deadAfter time.Duration) bool {
	return !rt.waitSince.IsZero() && now.Sub(rt.waitSince) >= deadAfter
}

// verifying reports whether a handshake asked of the peer for the current
// wait (engine.link) may still be answered.
func (rt *peerRuntime) verifying(now time.Time) bool {
	return rt.verifyAt.After(rt.waitSince) && now.Sub(rt.verifyAt) < verifyWait
}

func (e *engine) link(key wgtypes.Key, dev map[wgtypes.Key]wgtypes.Peer, now time.Time) linkState {
	rt := e.peers[key]
	if rt == nil {
		return linkState{}
	}
	l := linkState{EverUp: rt.everUp, Since: rt.since, AddedAt: rt.addedAt, LastHS: rt.lastHS}
	l.Session = rt.everUp && now.Sub(rt.lastHS) < sessionLife
	if now.Before(rt.punch.until) {
		l.PunchTo, l.PunchStart = rt.punch.to, rt.punch.start
	}
	l.PunchClear = rt.punch.clear
	// Data unanswered for DeadAfter does not take a working session down
	// on its own: the answer may be late (a busy peer answers one-way
	// data at its next look), or have come through a relay because the
	// peer took the path for down first. A path that goes down on one
	// side only is a black hole both ways (each end drops what the other
	// sends by the path it does not expect) until the other side finds
	// out, which took 12 s in bench/mesh. So first a fresh handshake,
	// whichever side initiates: the peer's WireGuard answers it at once.
	// Only when that goes unanswered too is the path down. The handshake
	// is asked for verifyWait before DeadAfter, so a path that is down is
	// found as soon as before.
	if rt.everUp && !rt.lastHS.Before(rt.staleBefore) && rt.unanswered(now, e.cfg.DeadAfter-verifyWait) && !rt.verifyAt.After(rt.waitSince) {
		rt.verifyAt = now
		l.Verify = true
	}
	l.Up = e.live(rt, now)
	// After a move, a keepalive every reconcile until the peer is heard
	// from again: idle links carry nothing else that would show the peer
	// where we are now (the first may leave before the new route exists).
	l.Ack = rt.ack || !rt.movedAt.IsZero() && now.Sub(rt.movedAt) < announceFor && !rt.lastRx.After(rt.movedAt)
	l.LastRx = rt.lastRx
	if p, ok := dev[key]; ok && p.Endpoint != nil {
		if ap, ok := netip.AddrFromSlice(p.Endpoint.IP); ok {
			l.Endpoint = netip.AddrPortFrom(ap.Unmap(), uint16(p.Endpoint.Port))
		}
	}
	return l
}

// apply brings the device and routes to tp, touching only what differs.
func (e *engine) apply(tp topology, dev map[wgtypes.Key]wgtypes.Peer, now time.Time) error {
	var cfgs, pokes, unpokes []wgtypes.PeerConfig
	want := map[wgtypes.Key]bool{}
	for _, p := range tp.Peers {
		key, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			continue
		}
		want[key] = true
		cur, exists := dev[key]
		rt := e.peers[key]
		if exists && p.Readd {
			cfgs = append(cfgs, wgtypes.PeerConfig{PublicKey: key, Remove: true})
			exists, cur = false, wgtypes.Peer{}
		}
		if rt != nil && (p.Readd || !exists) {
			rt.punch.start, rt.punch.clear = false, false
		}
		if exists && p.Poke && cur.PersistentKeepaliveInterval == p.Keepalive {
			// A keepalive interval set where there was none sends one
			// at once; the second step puts the planned one back.
			first, then := time.Duration(0), p.Keepalive
			if p.Keepalive == 0 {
				first, then = max(e.cfg.ProbeInterval, time.Second), 0
			}
			pokes = append(pokes, wgtypes.PeerConfig{PublicKey: key, UpdateOnly: true, PersistentKeepaliveInterval: &first})
			unpokes = append(unpokes, wgtypes.PeerConfig{PublicKey: key, UpdateOnly: true, PersistentKeepaliveInterval: &then})
		}
		pc := wgtypes.PeerConfig{PublicKey: key}
		changed := !exists
		if p.Endpoint.IsValid() && (cur.Endpoint == nil || udpAddrPort(cur.Endpoint) != p.Endpoint) {
			pc.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
			changed = true
		}
		if !exists || cur.PersistentKeepaliveInterval != p.Keepalive {
			ka := p.Keepalive
			pc.PersistentKeepaliveInterval = &ka
			changed = true
		}
		if !exists || !samePrefixes(cur.AllowedIPs, p.AllowedIPs) {
			pc.ReplaceAllowedIPs = true
			for _, a := range p.AllowedIPs {
				pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
			}
			changed = true
		}
		if changed {
			cfgs = append(cfgs, pc)
		}
		if !exists {
			if rt == nil {
				rt = &peerRuntime{since: now}
				e.peers[key] = rt
			}
			rt.addedAt = now
			if rt.firstAdded.IsZero() {
				rt.firstAdded = now
			}
		}
	}
	for key := range dev {
		if !want[key] {
			cfgs = append(cfgs, wgtypes.PeerConfig{PublicKey: key, Remove: true})
			delete(e.peers, key)
		}
	}
	cfgs = e.freshen(cfgs, dev)
	e.recheck = false
	for _, c := range cfgs {
		e.recheck = e.recheck || !c.Remove
	}
	if len(cfgs) > 0 {
		if err := e.setDev(wgtypes.Config{Peers: cfgs}); err != nil {
			return fmt.Errorf("configuring %s: %w", e.ifname, err)
		}
	}
	// Poke: turning the persistent keepalive off and on sends one at once.
	if len(pokes) > 0 {
		if err := e.setDev(wgtypes.Config{Peers: pokes}); err != nil {
			return fmt.Errorf("configuring %s: %w", e.ifname, err)
		}
		if err := e.setDev(wgtypes.Config{Peers: unpokes}); err != nil {
			return fmt.Errorf("configuring %s: %w", e.ifname, err)
		}
	}
	return e.syncRoutes(tp.Routes)
}

// freshen re-reads the device when the plan re-adds a peer or moves an
// endpoint, and undoes what the peer made stale since dev was read:
//   - a re-add, when something came from the peer meanwhile: most likely
//     its handshake initiation, which the device has answered; removing the
//     peer now drops that answer's session, and the peer, which completed
//     the handshake on the answer, sends into a session this node no longer
//     has (bench/mesh: a public node's 0.9 s initiator retries did this to
//     a newcomer behind NAT, 3-4 s until its data went unanswered). The
//     peer is updated in place instead.
//   - an endpoint change, when WireGuard moved the endpoint meanwhile: it
//     moves it only to where an authenticated packet of the peer came from,
//     which beats any plan made before it came (a reconcile that read the
//     device just before a NATed peer's first handshake put the peer's LAN
//     address back over its reflexive one).
//
// The device is read again only when one of the two is planned.
func (e *engine) freshen(cfgs []wgtypes.PeerConfig, dev map[wgtypes.Key]wgtypes.Peer) []wgtypes.PeerConfig {
	// A re-add is a removal and an add of the same peer in one batch; a
	// removal alone (the peer is no longer wanted) always goes ahead.
	removed := map[wgtypes.Key]bool{}
	readd := map[wgtypes.Key]bool{}
	for _, c := range cfgs {
		if _, exists := dev[c.PublicKey]; !exists {
			continue
		}
		if c.Remove {
			removed[c.PublicKey] = true
		} else if removed[c.PublicKey] {
			readd[c.PublicKey] = true
		}
	}
	check := len(readd) > 0
	for _, c := range cfgs {
		if _, exists := dev[c.PublicKey]; exists && c.Endpoint != nil && !c.Remove {
			check = true
		}
	}
	if !check {
		return cfgs
	}
	d, err := e.readDev()
	if err != nil {
		return cfgs
	}
	fresh := make(map[wgtypes.Key]wgtypes.Peer, len(d.Peers))
	for _, p := range d.Peers {
		fresh[p.PublicKey] = p
	}
	keep := map[wgtypes.Key]bool{} // re-adds undone: the peer stays
	for k := range readd {
		if f, ok := fresh[k]; ok && f.ReceiveBytes > dev[k].ReceiveBytes {
			keep[k] = true
			e.log.Debug("peer heard from since the device was read; updating it in place instead of re-adding it", "key", k.String()[:8])
		}
	}
	out := cfgs[:0:0]
	for _, c := range cfgs {
		old, exists := dev[c.PublicKey]
		switch {
		case c.Remove && keep[c.PublicKey]:
			continue
		case c.Remove || !exists || c.Endpoint == nil || readd[c.PublicKey] && !keep[c.PublicKey]:
			// a removal, a new peer, no endpoint planned, or a re-add
			// (which has no endpoint but the planned one)
		default:
			cur := fresh[c.PublicKey].Endpoint
			if cur != nil && (old.Endpoint == nil || udpAddrPort(cur) != udpAddrPort(old.Endpoint)) {
				e.log.Debug("endpoint roamed since the device was read; keeping it", "endpoint", udpAddrPort(cur).String(), "planned", c.Endpoint.String())
				c.Endpoint = nil
			}
		}
		out = append(out, c)
	}
	return out
}

func udpAddrPort(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func samePrefixes(cur []net.IPNet, want []netip.Prefix) bool {
	if len(cur) != len(want) {
		return false
	}
	got := make([]netip.Prefix, 0, len(cur))
	for _, n := range cur {
		a, _ := netip.AddrFromSlice(n.IP)
		ones, _ := n.Mask.Size()
		got = append(got, netip.PrefixFrom(a.Unmap(), ones))
	}
	slices.SortFunc(got, comparePrefix)
	return slices.Equal(got, want)
}

// syncRoutes installs a route per peer block into the interface and removes
// the ones no longer wanted.
func (e *engine) syncRoutes(want []netip.Prefix) error {
	if !e.addr.IsValid() {
		return nil
	}
	wantSet := map[netip.Prefix]bool{}
	var errs []error
	for _, p := range want {
		wantSet[p] = true
		if e.routes[p] {
			continue
		}
		r := &netlink.Route{
			LinkIndex: e.linkIdx,
			Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
			Src:       e.addr.AsSlice(),
			Scope:     netlink.SCOPE_LINK,
			Protocol:  routeProto,
		}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s dev %s: %w", p, e.ifname, err))
			continue
		}
		e.routes[p] = true
	}
	for p := range e.routes {
		if wantSet[p] {
			continue
		}
		r := &netlink.Route{
			LinkIndex: e.linkIdx,
			Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)},
			Src:       e.addr.AsSlice(),
			Scope:     netlink.SCOPE_LINK,
			Protocol:  routeProto,
		}
		if err := netlink.RouteDel(r); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("removing route %s: %w", p, err))
			continue
		}
		delete(e.routes, p)
	}
	return errors.Join(errs...)
}

// ---- the Mesh side of the overlay ----

// initialClaim is the static block, the persisted claim, or a provisional
// claim (Lamport time 0: it loses to every confirmed claim) derived from the
// public key. A provisional claim is confirmed once the cluster's claims
// have been seen.
func (m *Mesh) initialClaim() (blockClaim, error) {
	if m.cfg.StaticBlock != "" {
		return blockClaim{Block: netip.MustParsePrefix(m.cfg.StaticBlock), Static: true, Time: 1}, nil
	}
	c, ok, err := loadClaim(m.cfg.DataDir, m.overlay, m.cfg.BlockBits)
	if err != nil {
		return blockClaim{}, fmt.Errorf("mesh: %w", err)
	}
	if ok && !c.Static && c.Time > 0 {
		return c, nil
	}
	return blockClaim{Block: deriveBlock(m.overlay, m.cfg.BlockBits, m.PublicKey(), 0)}, nil
}

// setClaim records, persists, applies and publishes a block claim.
func (m *Mesh) setClaim(e *engine, c blockClaim) error {
	m.mu.Lock()
	m.claim = c
	m.clock = max(m.clock, c.Time)
	m.mu.Unlock()
	if !c.Static && c.Time > 0 {
		if err := saveClaim(m.cfg.DataDir, c); err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
	}
	if err := e.setAddress(c.Block); err != nil {
		return err
	}
	m.log.Info("overlay block claimed", "block", c.Block.String(), "address", overlayIP(c.Block).String(), "lamport", c.Time, "salt", c.Salt)
	m.publishAsync()
	return nil
}

// peerInfos decodes every member but self.
func (m *Mesh) peerInfos() []peerInfo {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	var out []peerInfo
	for _, sm := range s.Members() {
		if sm.Name == m.cfg.NodeName {
			continue
		}
		a, _ := netip.AddrFromSlice(sm.Addr)
		out = append(out, decodePeer(sm.Name, sm.Status.String(), a.Unmap(), sm.Tags))
	}
	return out
}

// reconcile computes the desired topology and applies it. It runs on the
// Run goroutine only.
func (m *Mesh) reconcile() {
	m.mu.Lock()
	e := m.wg
	s := m.serf
	m.mu.Unlock()
	if e == nil || s == nil || e.closed {
		return
	}
	now := time.Now()
	others := m.peerInfos()

	// Block conflicts: the earlier claim wins; the loser derives again.
	m.mu.Lock()
	for _, p := range others {
		m.clock = max(m.clock, p.BlockTime)
	}
	claim, clock := m.claim, m.clock
	m.mu.Unlock()
	if c, changed := resolveBlock(m.overlay, m.cfg.BlockBits, m.PublicKey(), m.cfg.NodeName, claim, others, 0); changed {
		m.log.Warn("block conflict: an earlier claim holds our block; claiming another", "lost", claim.Block.String(), "new", c.Block.String())
		if err := m.setClaim(e, c); err != nil {
			m.log.Error("claiming a new block", "err", err)
		}
		m.needRestart = true
		claim = c
	}
	if claim.Time == 0 && m.joined.Load() && !m.needRestart {
		// Confirm the provisional claim: later than every claim seen.
		claim.Time = clock + 1
		if err := m.setClaim(e, claim); err != nil {
			m.log.Error("confirming the block claim", "err", err)
		}
	}

	m.savePeerCache(others)
	dev := e.observe(now)
	if dev == nil && e.lastDev == nil {
		return
	}
	m.mu.Lock()
	self := decodePeer(m.cfg.NodeName, "alive", netip.Addr{}, m.tagsLocked())
	m.mu.Unlock()
	// The host's subnets as of the latest look (at start, on an address
	// change and every ReconcileInterval): listing the interfaces costs
	// a netlink dump per interface, too much for every second.
	m.mu.Lock()
	localPfx := m.localPfx
	m.mu.Unlock()
	punching := m.punchTick(e, self, others, localPfx, now)
	links := map[string]linkState{}
	keyOf := map[string]wgtypes.Key{}
	for _, p := range others {
		if k, err := wgtypes.ParseKey(p.PublicKey); err == nil {
			keyOf[p.Name] = k
			links[p.Name] = e.link(k, dev, now)
			if links[p.Name].Verify {
				m.log.Debug("data unanswered: asking the peer for a fresh handshake", "peer", p.Name)
				e.verified = true
			}
		}
	}
	m.settleNAT(links, others, now)
	up := false
	for _, l := range links {
		up = up || l.Up
	}
	if up && e.firstUp.IsZero() {
		e.firstUp = now
	}
	in := topoInput{
		Self: self, Peers: others, Links: links, LocalPrefixes: localPfx,
		SelfSettled: !e.firstUp.IsZero() && now.Sub(e.firstUp) >= 2*time.Second,
		Seeds:       m.seedAddrs(),
		RTT:         m.rtt, Now: now, Probe: m.cfg.ProbeInterval, NATKeepalive: m.cfg.NATKeepalive,
		Grace: m.cfg.DeadAfter + time.Second, Rotate: 5 * time.Second, DefaultPort: m.cfg.ListenPort,
		Overlay: m.overlay,
	}
	tp := computeTopology(in)
	if err := e.apply(tp, dev, now); err != nil {
		m.log.Warn("applying WireGuard topology", "err", err)
	}
	e.recheck = e.recheck || punching
	changedPath := !samePaths(e.last, tp)
	if changedPath {
		m.tellCuts(e.last, tp, others)
	}
	if e.calm(tp, links, keyOf, punching || changedPath) {
		e.calmLooks++
	} else {
		e.calmLooks = 0
	}
	e.statMu.Lock()
	e.last = tp
	e.statMu.Unlock()
	if changedPath {
		for _, p := range tp.Peers {
			m.log.Debug("path", "peer", p.Name, "path", p.Path, "via", p.Via, "endpoint", p.Endpoint.String())
		}
	}

	// Tell the cluster where we observe our peers (their reflexive
	// address); again every 10 s while the peer does not advertise it
	// (a broadcast can be lost while the overlay forms).
	advertises := map[string][]netip.AddrPort{}
	hard, nat := map[string]bool{}, map[string]bool{}
	infoByName := map[string]peerInfo{}
	for _, p := range others {
		infoByName[p.Name] = p
		advertises[p.Name] = p.Endpoints
		hard[p.Name], nat[p.Name] = p.HardNAT, p.NAT
	}
	for _, p := range tp.Peers {
		l := links[p.Name]
		rt := e.peers[keyOf[p.Name]]
		if rt != nil && l.Up != rt.wasUp {
			rt.wasUp = l.Up
			m.log.Debug("direct link", "peer", p.Name, "up", l.Up, "sinceAdded", now.Sub(rt.firstAdded).Round(time.Millisecond).String(), "endpoint", l.Endpoint.String())
		}
		if !l.Up || !l.Endpoint.IsValid() || m.overlay.Contains(l.Endpoint.Addr()) || rt == nil {
			continue
		}
		// A peer seen where it advertises itself learns nothing from a
		// report: every pair reporting that flooded gossip with n²
		// events while the mesh formed. Except once to a peer behind
		// NAT: it tells an easy NAT from a hard one only when a second
		// peer says where it sees it (natSettled), and waits 3 s for
		// one otherwise before its first hole punch.
		if slices.Contains(advertises[p.Name], l.Endpoint) && (!nat[p.Name] || rt.reportedEP == l.Endpoint) {
			rt.reportedEP = l.Endpoint
			continue
		}
		// A peer behind a hard NAT advertises none of the ports its
		// peers see: it hears once from each.
		if rt.reportedEP == l.Endpoint && (hard[p.Name] || now.Sub(rt.reportedAt) < 10*time.Second) {
			continue
		}
		rt.reportedEP, rt.reportedAt = l.Endpoint, now
		payload := []byte(p.Name + " " + l.Endpoint.String() + " " + m.cfg.NodeName)
		if err := s.UserEvent(reflexiveEvent, payload, false); err != nil {
			m.log.Debug("reporting reflexive endpoint", "err", err)
		}
		// And straight to the peer: gossip reaches one node only after
		// a few random hops (a second or more among many members), and
		// its punches wait for this.
		if pi, ok := infoByName[p.Name]; ok {
			m.sendSide(punchAddr(pi), "ep "+string(payload))
		}
	}
}

// calm reports whether a look at the data plane found nothing that needs
// the next look at the probe period: every peer's direct path is up with
// nothing sent unanswered, and the look changed nothing (no peer configured
// or poked, no path changed, no punch under way). A path kept by a
// keepalive every probe (two nodes behind NAT, or a path being brought up)
// is never calm.
func (e *engine) calm(tp topology, links map[string]linkState, keyOf map[string]wgtypes.Key, changed bool) bool {
	if changed || e.recheck {
		return false
	}
	for _, p := range tp.Peers {
		l := links[p.Name]
		rt := e.peers[keyOf[p.Name]]
		if rt == nil || !l.Up || p.Path != "direct" || p.Poke || p.Readd || l.Ack || !rt.waitSince.IsZero() ||
			p.Keepalive != 0 && p.Keepalive < e.cfg.NATKeepalive {
			return false
		}
	}
	return true
}

// Probe back-off: after calmFor calm looks in a row the data plane is
// looked at every maxStretch probe periods instead of every one; any look
// that is not calm (from the probe, a membership change, an address
// change or a punch answer), and the first packet the host sends into
// the overlay but gossip's (watchTUN), bring the probe period back at
// once. Each look costs an idle node a read of the whole device and a
// topology. engine.traffic dates a send first seen after a stretch no
// earlier than one period back, so DeadAfter runs as at the probe period.
// Only gossip's own packets wait for the stretched look: a direct path
// that gossip finds cut is found up to maxStretch-1 periods later than at
// the probe period (memberlist reaches the member through others
// meanwhile), and the peer is told at once (tellCuts).
const (
	calmFor    = 5
	maxStretch = 4
)

// probeStretch is how many probe periods the next look waits after calm
// calm looks in a row.
func probeStretch(calm int) int {
	if calm < calmFor {
		return 1
	}
	return maxStretch
}

// nextProbe is how many probe periods the engine waits for its next look,
// and arms the TUN's tripwire when that is more than one: only with a
// tripwire does the look stretch (data the host sends then brings it
// back at once).
func (e *engine) nextProbe() int {
	n := probeStretch(e.calmLooks)
	if e.watch == nil || n == 1 {
		return 1
	}
	e.watch.arm()
	return n
}

// unstretch ends a stretch: the next look comes within a period.
func (e *engine) unstretch() {
	e.calmLooks = 0
	if e.watch != nil {
		e.watch.disarm()
	}
}

// watchC fires when the host sent data into the overlay during a stretch
// (nil without a tripwire).
func (e *engine) watchC() <-chan struct{} {
	if e.watch == nil {
		return nil
	}
	return e.watch.C
}

func samePaths(a, b topology) bool {
	if len(a.Peers) != len(b.Peers) {
		return false
	}
	for i := range a.Peers {
		if a.Peers[i].Name != b.Peers[i].Name || a.Peers[i].Path != b.Peers[i].Path || a.Peers[i].Via != b.Peers[i].Via {
			return false
		}
	}
	return true
}

// maxCoordError is the Vivaldi error (it starts at 1.5) above which a
// coordinate is not trusted for relay choice.
const maxCoordError = 0.6

// rtt estimates the round trip between two members from serf coordinates.
func (m *Mesh) rtt(a, b string) (time.Duration, bool) {
	m.mu.Lock()
	s := m.serf
	m.mu.Unlock()
	if s == nil {
		return 0, false
	}
	ca, ok := s.GetCachedCoordinate(a)
	if a == m.cfg.NodeName {
		c, err := s.GetCoordinate()
		ca, ok = c, err == nil
	}
	if !ok || ca == nil {
		return 0, false
	}
	cb, ok := s.GetCachedCoordinate(b)
	if b == m.cfg.NodeName {
		c, err := s.GetCoordinate()
		cb, ok = c, err == nil
	}
	if !ok || cb == nil {
		return 0, false
	}
	// A fresh coordinate is mostly noise: the two ends of a pair would
	// pick different relays from it (and a relay used from one end only
	// carries nothing). Until both settle, the RTT counts as unknown.
	if ca.Error > maxCoordError || cb.Error > maxCoordError {
		return 0, false
	}
	return ca.DistanceTo(cb), true
}

// handleUserEvent takes reflexive-address reports about this node
// ("name ip:port reporter"; older nodes leave out the reporter).
func (m *Mesh) handleUserEvent(ev serf.UserEvent) {
	if (ev.Name == cutEvent || ev.Name == cutRelayedEvent) && m.cfg.WireGuard {
		m.takeCut(ev.Payload, ev.Name == cutRelayedEvent)
		return
	}
	if ev.Name != reflexiveEvent || !m.cfg.WireGuard {
		return
	}
	f := strings.Fields(string(ev.Payload))
	if len(f) < 2 || f[0] != m.cfg.NodeName {
		return
	}
	ep, err := netip.ParseAddrPort(f[1])
	if err != nil || m.overlay.Contains(ep.Addr()) {
		return
	}
	reporter := ""
	if len(f) > 2 {
		reporter = f[2]
	}
	local, _ := localAddrs(m.cfg.Interface, m.overlay)
	if slices.Contains(local, ep.Addr()) {
		return // seen at an address we own: nothing new
	}
	now := time.Now()
	m.mu.Lock()
	if until, ok := m.forgotten[ep.Addr()]; ok {
		if now.Before(until) {
			m.mu.Unlock()
			return // a report from before we moved
		}
		delete(m.forgotten, ep.Addr())
	}
	if reporter != "" {
		m.observedBy[reporter] = observation{ep: ep, at: now}
	}
	wasHard := m.hardNAT
	m.hardNAT = m.hardNATLocked(now)
	_, known := m.reflexive[ep]
	// Behind a hard NAT each peer sees its own port: keep the first,
	// so the tags do not change with every new peer.
	if !m.hardNAT || len(m.reflexive) == 0 {
		m.reflexive[ep] = now
	} else {
		known = true
	}
	// Keep the two newest observations.
	for len(m.reflexive) > 2 {
		var oldest netip.AddrPort
		var at time.Time
		for k, t := range m.reflexive {
			if at.IsZero() || t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(m.reflexive, oldest)
	}
	advertised := false
	for _, a := range m.cfg.Advertise {
		if h, _, err := net.SplitHostPort(a); err == nil && h == ep.Addr().String() || a == ep.Addr().String() {
			advertised = true
		}
	}
	wasNAT := m.nat
	m.nat = !advertised
	hard := m.hardNAT
	m.mu.Unlock()
	if !known || wasNAT != m.nat || wasHard != hard {
		kind := "none"
		if !advertised {
			kind = NATEasy
			if hard {
				kind = NATHard
			}
		}
		m.log.Info("peers observe this node at a reflexive address", "endpoint", ep.String(), "by", reporter, "nat", kind)
		m.publishAsync()
	}
}

// refreshLocalEndpoints recomputes our candidate endpoints: --advertise,
// then interface addresses, each with the WireGuard port. It reports
// whether they changed after gossip had started with an address new to
// the node (moved), or only lost one (lost: the first half of a move).
func (m *Mesh) refreshLocalEndpoints() (moved, lost bool) {
	if !m.cfg.WireGuard {
		return false, false
	}
	var eps []netip.AddrPort
	for _, a := range m.cfg.Advertise {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			eps = append(eps, ap)
			continue
		}
		host := a
		if h, p, err := net.SplitHostPort(a); err == nil {
			host = h
			if port, err := strconv.Atoi(p); err == nil {
				ips, _ := net.LookupIP(host)
				for _, ip := range ips {
					if ad, ok := netip.AddrFromSlice(ip); ok {
						eps = append(eps, netip.AddrPortFrom(ad.Unmap(), uint16(port)))
					}
				}
				continue
			}
		}
		if ad, err := netip.ParseAddr(host); err == nil {
			eps = append(eps, netip.AddrPortFrom(ad, uint16(m.cfg.ListenPort)))
			continue
		}
		ips, _ := net.LookupIP(host)
		for _, ip := range ips {
			if ad, ok := netip.AddrFromSlice(ip); ok {
				eps = append(eps, netip.AddrPortFrom(ad.Unmap(), uint16(m.cfg.ListenPort)))
			}
		}
	}
	local, localPfx := localAddrs(m.cfg.Interface, m.overlay)
	for _, a := range local {
		if a.Is4() {
			eps = append(eps, netip.AddrPortFrom(a, uint16(m.cfg.ListenPort)))
		}
	}
	m.mu.Lock()
	changed := !slices.Equal(eps, m.localEPs)
	// A move is a new address; one that only went away (the old network
	// is gone, the new one not there yet) is the first half of one: the
	// node moves once, when the new address comes, and does not forget
	// what peers report about it in between.
	gained := false
	for _, ep := range eps {
		gained = gained || !slices.Contains(m.localEPs, ep)
	}
	for _, ep := range m.localEPs {
		lost = lost || !slices.Contains(eps, ep)
	}
	if lost && !gained && m.lostAt.IsZero() {
		m.lostAt = time.Now()
	}
	m.localEPs = eps
	m.localPfx = localPfx
	started := m.serf != nil && m.claim.Block.IsValid()
	m.mu.Unlock()
	if changed && started {
		m.publishAsync()
	}
	return changed && started && gained, changed && started && lost && !gained
}

// fillOverlayStatus adds the data plane's view to a Status.
func (m *Mesh) fillOverlayStatus(st *Status) {
	m.mu.Lock()
	e := m.wg
	nat, hard := m.nat, m.hardNAT
	eps := m.advertisedLocked()
	m.mu.Unlock()
	if e == nil {
		return
	}
	st.NAT = nat
	st.NATKind = "none"
	if nat {
		st.NATKind = NATEasy
		if hard {
			st.NATKind = NATHard
		}
	}
	for _, ep := range eps {
		st.Endpoints = append(st.Endpoints, ep.String())
	}
	st.DataPlane = e.dev.Kind()
	st.Interface = e.ifname
	st.PublicKey = m.PublicKey()
	st.ListenPort = m.cfg.ListenPort
	st.MTU = e.mtu
	plans := map[string]peerPlan{}
	devPeers := map[string]wgtypes.Peer{}
	e.statMu.Lock()
	for _, p := range e.last.Peers {
		plans[p.Name] = p
	}
	if d := e.lastDev; d != nil {
		for _, p := range d.Peers {
			devPeers[p.PublicKey.String()] = p
		}
	}
	e.statMu.Unlock()
	kinds := map[string]string{}
	for _, p := range m.peerInfos() {
		kinds[p.Name] = p.NATKind()
	}
	now := time.Now()
	for i := range st.Peers {
		ps := &st.Peers[i]
		ps.NAT = kinds[ps.Name]
		pl, ok := plans[ps.Name]
		if !ok {
			continue
		}
		ps.Path, ps.Via = pl.Path, pl.Via
		ps.MTU, ps.DataPlane = e.mtu, e.dev.Kind()
		if dp, ok := devPeers[pl.PublicKey]; ok {
			if dp.Endpoint != nil {
				ps.Endpoint = dp.Endpoint.String()
			}
			if !dp.LastHandshakeTime.IsZero() {
				ps.HandshakeAge = now.Sub(dp.LastHandshakeTime).Round(time.Millisecond).Seconds()
			}
			ps.RxBytes, ps.TxBytes = dp.ReceiveBytes, dp.TransmitBytes
		}
	}
}

const peerCacheFile = "peers.json"

// loadPeerCache reads the underlay gossip addresses of the peers known
// before a restart.
func (m *Mesh) loadPeerCache() {
	if m.cfg.DataDir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, peerCacheFile))
	if err != nil {
		return
	}
	var addrs []string
	if json.Unmarshal(b, &addrs) == nil {
		m.mu.Lock()
		m.cachedPeers = addrs
		m.mu.Unlock()
	}
}

// savePeerCache keeps the underlay gossip addresses (endpoint IPs with our
// gossip port) of alive peers, for joining again after a restart.
func (m *Mesh) savePeerCache(others []peerInfo) {
	_, port, _ := splitHostPortDefault(m.cfg.GossipBind, DefaultGossipPort)
	var addrs []string
	for _, p := range others {
		if p.Status != "alive" {
			continue
		}
		for _, ep := range p.Endpoints {
			if !m.overlay.Contains(ep.Addr()) {
				addrs = append(addrs, net.JoinHostPort(ep.Addr().String(), strconv.Itoa(port)))
			}
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(addrs) > 16 {
		addrs = addrs[:16]
	}
	m.mu.Lock()
	same := slices.Equal(addrs, m.cachedPeers)
	if !same && len(addrs) > 0 {
		m.cachedPeers = addrs
	}
	m.mu.Unlock()
	if same || len(addrs) == 0 || m.cfg.DataDir == "" {
		return
	}
	b, _ := json.Marshal(addrs)
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, peerCacheFile), b, 0o600); err != nil {
		m.log.Debug("saving peer cache", "err", err)
	}
}

// primeTTL is the TTL of a priming packet: it passes our own NAT (usually
// the first hop) and expires before the peer's. The side answering a punch
// query sends one more at primeTTL+1, which passes a second
// (carrier-grade) NAT too: the asking side has primed its own NAT by then,
// so should it reach that NAT, it arrives as an answer there, not as a
// stranger (punch.go).
const primeTTL = 2

// prime sends a small UDP packet from our WireGuard port to ep whose TTL
// runs out on the way: it makes our NAT map the port toward ep without
// reaching ep's NAT (see punch.go).
func (e *engine) prime(ep netip.AddrPort, ttl byte) error {
	if !ep.Addr().Is4() {
		return nil
	}
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ep))
	if err != nil {
		return err
	}
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	c.Close()
	if e.rawFD == 0 {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		e.rawFD = fd
	}
	const payload = 4
	pkt := make([]byte, 20+8+payload)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = ttl
	pkt[9] = syscall.IPPROTO_UDP
	s4, d4 := src.As4(), ep.Addr().As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[20:], uint16(e.cfg.ListenPort))
	binary.BigEndian.PutUint16(pkt[22:], ep.Port())
	binary.BigEndian.PutUint16(pkt[24:], 8+payload)
	return syscall.Sendto(e.rawFD, pkt, 0, &syscall.SockaddrInet4{Addr: d4})
}

// tellCuts tells each peer whose direct path this look moved to a relay
// that the path is down on this side (cutEvent). A path down on one side
// only is a black hole both ways: the peer drops what comes through the
// relay (its WireGuard takes this node's block from this node's own
// endpoint only) and goes on sending where nothing arrives. Its engine
// finds out only when something it sends directly goes unanswered, and on
// an idle link that is memberlist's next probe of this node, which comes
// once in four times as many seconds as there are members. Told through
// the relay, it takes the path down at once; told by gossip, it asks for a
// fresh handshake first (takeCut).
func (m *Mesh) tellCuts(prev, tp topology, others []peerInfo) {
	blocks := map[string]netip.Prefix{}
	for _, p := range others {
		if p.Block.IsValid() {
			blocks[p.Name] = p.Block
		}
	}
	was := map[string]string{}
	for _, p := range prev.Peers {
		was[p.Name] = p.Path
	}
	s := m.currentSerf()
	for _, p := range tp.Peers {
		if p.Path != "relay" || was[p.Name] != "direct" || s == nil {
			continue
		}
		m.log.Debug("direct path down: telling the peer", "peer", p.Name, "via", p.Via)
		// Through the relay, which passes it on at once (punch.go), and
		// by gossip, which reaches the peer in a round or two
		// whatever became of the relay.
		if b, ok := blocks[p.Via]; ok {
			m.sendSide(netip.AddrPortFrom(overlayIP(b), punchPort), "cutfwd "+p.Via+" "+m.cfg.NodeName+" "+p.Name)
		}
		if err := s.UserEvent(cutEvent, []byte(p.Name+" "+m.cfg.NodeName), false); err != nil {
			m.log.Debug("telling a peer its direct path is down", "peer", p.Name, "err", err)
		}
	}
}

// takeCut handles a cutEvent: when it is for this node and the direct path
// to the sender is up here, that path goes down too. Passed on by the
// relay (relayed), it left the sender as its path went down, after a
// fresh handshake the sender asked went unanswered (engine.link): the path
// goes down at once. By gossip it may be seconds old, and the sender's
// path may be back: the engine asks the sender for a fresh handshake at
// the next look, as for data unanswered. The sender's WireGuard answers it
// whatever it routes: answered, the path stays up (the sender's own
// retries bring its side back); unanswered for verifyWait, it is down. A
// path taken down wrongly costs a detour through the relay until a retry
// (downRetry) finds it working: both ends relay meanwhile, so nothing is
// lost.
func (m *Mesh) takeCut(payload []byte, relayed bool) {
	f := strings.Fields(string(payload))
	if len(f) != 2 || f[0] != m.cfg.NodeName {
		return
	}
	m.mu.Lock()
	e := m.wg
	m.mu.Unlock()
	if e == nil {
		return
	}
	for _, p := range m.peerInfos() {
		if p.Name != f[1] {
			continue
		}
		k, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return
		}
		if e.suspect(k, time.Now(), relayed) {
			m.log.Debug("peer lost its direct path to us", "peer", p.Name, "down", relayed)
			m.reconcile()
		}
		return
	}
}

// suspect makes the direct path to the peer with key k owe an answer long
// enough that the next look asks for a fresh handshake (engine.link), or
// with down, long enough that the path is down, the handshake asked and
// unanswered. An answer owed already counts from when it was owed, if that
// is earlier. It does nothing to a path that is down, or never came up,
// and reports whether it did something.
func (e *engine) suspect(k wgtypes.Key, now time.Time, down bool) bool {
	rt := e.peers[k]
	if rt == nil || !e.live(rt, now) {
		return false
	}
	owed := now.Add(-(e.cfg.DeadAfter - verifyWait))
	if down {
		owed = now.Add(-e.cfg.DeadAfter)
	}
	if !down && !rt.waitSince.IsZero() && !rt.waitSince.After(owed) {
		return false // the ask is due at this look anyway
	}
	if rt.waitSince.IsZero() || rt.waitSince.After(owed) {
		rt.waitSince = owed
	}
	if down {
		rt.verifyAt = now.Add(-verifyWait)
	}
	return true
}
