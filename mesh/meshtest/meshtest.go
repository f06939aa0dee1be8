// Package meshtest builds multi-site testbeds out of Linux network
// namespaces for end-to-end tests of every weft package.
//
// A Testbed has one WAN router namespace. Each site is a bridge inside the
// router namespace (its hosts are one L2 segment; traffic between sites is
// routed by the router), with an optional delay on the packets that enter
// the site from the WAN, so the RTT between two sites is the sum of their
// delays. The delay is tc netem's where the kernel has sch_netem, else the
// router's own: it loops those packets through a TUN device whose reader
// holds them (delay.go); Site.DelayBy and Testbed.DelayNote say which. A
// NAT site is a NAT namespace between the router and a LAN bridge of
// private hosts, of one of the NATType kinds (port-restricted cone, full
// cone, symmetric), optionally behind a second carrier-grade NAT
// (DoubleNAT). Faults: CutLink/HealLink between two sites, Partition/Heal
// between groups of sites; Host.Move puts a host on another network.
//
//	tb := meshtest.New(t)               // skips unless root, /dev/net/tun, ip, tc, iptables
//	tb.AddSite("aws", meshtest.Delay(0))
//	tb.AddSite("london", meshtest.Delay(15*time.Millisecond))
//	h := tb.AddHost("london", "h1")
//	laptop := tb.AddNATHost("home", "laptop")
//	p := h.Start(weft, "agent", "--join", ...) // killed by PID on cleanup
//	err := laptop.Ping(ctx, "10.47.3.1")
//
// Nothing is created in the host's own network namespace, so the host's
// routes, links and iptables (Docker's FORWARD DROP policy included) are
// never touched; every namespace is deleted by name, and every process
// killed by PID, in t.Cleanup, also when the test fails. Each host process
// runs in its own mount namespace with a private tmpfs on /run/wireguard,
// because WireGuard's UAPI socket directory is shared by all network
// namespaces, and each host has its own /etc/resolv.conf (a copy of the
// host's, in /etc/netns/NS/), so that nothing a node does to its resolver
// reaches the real host. Names carry a per-testbed random prefix.
//
// meshtest imports no weft package.
package meshtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Testbed is a set of namespaces: a WAN router, sites and hosts.
type Testbed struct {
	t      testing.TB
	Prefix string // unique per testbed, e.g. "wt3fa2"
	Router string // the WAN router's namespace
	dir    string

	mu       sync.Mutex
	sites    map[string]*Site
	siteList []*Site
	hosts    map[string]*Host
	nsList   []string // namespaces to delete, in creation order
	procs    []*Process
	cuts     map[[2]string]bool
	delay    *delayer // the router's TUN delayer, when netem is missing
	etcDirs  []string // /etc/netns/NS directories to remove
}

// Site is one location: a bridge in the router (or, for a NAT site, a LAN
// behind a NAT namespace).
type Site struct {
	Name   string
	NAT    bool
	Subnet netip.Prefix // the hosts' subnet
	Gw     netip.Addr
	// Public is the NAT's public address (NAT sites only).
	Public netip.Addr
	NATNS  string // NAT namespace (NAT sites only)
	// NATType is how the site's NAT maps and filters (NAT sites only).
	NATType NATType
	// CGNNS is the outer (carrier-grade) NAT's namespace of a double NAT.
	CGNNS string
	Delay time.Duration
	// Delayed reports whether Delay is in force, and DelayBy by what:
	// "netem" (tc), or "tun" when the kernel lacks sch_netem and the
	// router holds the packets itself (delay.go).
	Delayed bool
	DelayBy string
	double  bool
	wanIf   string       // the router's interface toward the site
	wanPfx  netip.Prefix // the site's addresses as the WAN sees them
	idx     int
	nhosts  int
	first   *Host // the first host (a full-cone NAT's DMZ host)
}

// NATType is the behaviour of a NAT site's router (RFC 4787 terms).
type NATType int

const (
	// NATRestricted is Linux MASQUERADE: endpoint-independent mapping
	// (a source port is kept toward every destination unless it clashes)
	// with address-and-port-dependent filtering ("port-restricted cone").
	NATRestricted NATType = iota
	// NATFullCone adds endpoint-independent filtering: every UDP packet
	// to the public address goes to the site's first host (a DMZ host),
	// whose source ports are kept. Later hosts of the site are behind
	// plain MASQUERADE.
	NATFullCone
	// NATSymmetric maps each new destination to a new random port
	// (MASQUERADE --random-fully): endpoint-dependent mapping, "hard".
	NATSymmetric
	// NATSequential maps each new UDP flow (a new destination address
	// and port) to the next public port, from 40000 up (an nftables snat
	// to a map of numgen inc, which runs once per new conntrack entry), with
	// address-and-port-dependent filtering: a hard NAT whose next port
	// can be predicted. Other protocols are MASQUERADEd.
	NATSequential
)

// NATSequential hands out sequentialPorts ports from sequentialBase, then
// starts again.
const (
	sequentialBase  = 40000
	sequentialPorts = 1000
)

func (n NATType) String() string {
	switch n {
	case NATFullCone:
		return "full-cone"
	case NATSymmetric:
		return "symmetric"
	case NATSequential:
		return "sequential"
	default:
		return "port-restricted"
	}
}

// WithNAT sets a NAT site's NAT type (default NATRestricted).
func WithNAT(n NATType) SiteOption { return func(s *Site) { s.NATType = n } }

// DoubleNAT puts a NAT site behind a second, carrier-grade NAT
// (MASQUERADE, on 100.64.N.0/24) between its NAT and the WAN.
func DoubleNAT() SiteOption { return func(s *Site) { s.double = true } }

// SiteOption configures AddSite.
type SiteOption func(*Site)

// Delay adds a one-way delay (tc netem) to packets entering the site from
// the WAN: the RTT between sites a and b is Delay(a)+Delay(b).
func Delay(d time.Duration) SiteOption { return func(s *Site) { s.Delay = d } }

// Host is a network namespace with one interface (eth0) on its site.
type Host struct {
	tb   *Testbed
	Name string
	Site *Site
	NS   string
	ip   netip.Addr
}

// New builds an empty testbed (just the WAN router) and registers its
// cleanup. It skips the test, saying why, unless it runs as root with
// /dev/net/tun, ip, tc and iptables.
func New(t testing.TB) *Testbed {
	t.Helper()
	if why := Missing(); why != "" {
		t.Skip("meshtest: " + why)
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	tb := &Testbed{
		t:      t,
		Prefix: "wt" + hex.EncodeToString(b[:]),
		dir:    t.TempDir(),
		sites:  map[string]*Site{},
		hosts:  map[string]*Host{},
		cuts:   map[[2]string]bool{},
	}
	tb.Router = tb.Prefix + "-wan"
	t.Cleanup(tb.cleanup)
	tb.addNS(tb.Router)
	tb.must(tb.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Explicit, though a fresh namespace already accepts: the policy is
	// ours to decide, not the host's.
	tb.must(tb.Router, "iptables", "-P", "FORWARD", "ACCEPT")
	return tb
}

// Missing says what the testbed needs and lacks ("" when all is there).
func Missing() string {
	var miss []string
	if os.Geteuid() != 0 {
		miss = append(miss, "root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		miss = append(miss, "/dev/net/tun")
	}
	for _, c := range []string{"ip", "tc", "iptables"} {
		if _, err := lookPath(c); err != nil {
			miss = append(miss, c)
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return "needs " + strings.Join(miss, ", ") + " (Debian: iproute2, iptables)"
}

func lookPath(c string) (string, error) {
	if p, err := exec.LookPath(c); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(d, c)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", c)
}

func (tb *Testbed) addNS(name string) {
	tb.mu.Lock()
	tb.nsList = append(tb.nsList, name)
	tb.mu.Unlock()
	tb.run("", "ip", "netns", "add", name)
	tb.must(name, "ip", "link", "set", "lo", "up")
}

// run runs a command in the host namespace (ns == "") or in ns, failing
// the test on error.
func (tb *Testbed) run(ns string, argv ...string) {
	tb.t.Helper()
	if out, err := tb.exec(ns, argv...); err != nil {
		tb.t.Fatalf("meshtest: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

func (tb *Testbed) must(ns string, argv ...string) { tb.t.Helper(); tb.run(ns, argv...) }

func (tb *Testbed) exec(ns string, argv ...string) ([]byte, error) {
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	p, err := lookPath(argv[0])
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p, argv[1:]...)
	return cmd.CombinedOutput()
}

// AddSite adds a site: a bridge in the router with subnet 172.30.N.0/24.
func (tb *Testbed) AddSite(name string, opts ...SiteOption) *Site {
	tb.t.Helper()
	return tb.addSite(name, false, opts)
}

// AddNATSite adds a site whose hosts sit behind one NAT (MASQUERADE):
// LAN 192.168.N.0/24, the NAT's public side 172.31.N.1.
func (tb *Testbed) AddNATSite(name string, opts ...SiteOption) *Site {
	tb.t.Helper()
	return tb.addSite(name, true, opts)
}

func (tb *Testbed) addSite(name string, nat bool, opts []SiteOption) *Site {
	tb.t.Helper()
	tb.mu.Lock()
	if s, ok := tb.sites[name]; ok {
		tb.mu.Unlock()
		if s.NAT != nat {
			tb.t.Fatalf("meshtest: site %q exists with NAT=%v", name, s.NAT)
		}
		return s
	}
	idx := len(tb.siteList) + 1
	s := &Site{Name: name, NAT: nat, idx: idx, wanIf: fmt.Sprintf("s%d", idx)}
	for _, o := range opts {
		o(s)
	}
	tb.sites[name] = s
	tb.siteList = append(tb.siteList, s)
	tb.mu.Unlock()
	if idx > 250 {
		tb.t.Fatal("meshtest: too many sites")
	}
	if !nat {
		s.Subnet = netip.MustParsePrefix(fmt.Sprintf("172.30.%d.0/24", idx))
		s.Gw = netip.MustParseAddr(fmt.Sprintf("172.30.%d.254", idx))
		s.wanPfx = s.Subnet
		tb.must(tb.Router, "ip", "link", "add", s.wanIf, "type", "bridge")
		tb.must(tb.Router, "ip", "addr", "add", s.Gw.String()+"/24", "dev", s.wanIf)
		tb.must(tb.Router, "ip", "link", "set", s.wanIf, "up")
	} else {
		s.NATNS = fmt.Sprintf("%s-nat%d", tb.Prefix, idx)
		s.Subnet = netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", idx))
		s.Gw = netip.MustParseAddr(fmt.Sprintf("192.168.%d.254", idx))
		s.Public = netip.MustParseAddr(fmt.Sprintf("172.31.%d.1", idx))
		s.wanPfx = netip.MustParsePrefix(fmt.Sprintf("172.31.%d.0/24", idx))
		outer := s.NATNS // the namespace holding the public address
		if s.double {
			s.CGNNS = fmt.Sprintf("%s-cgn%d", tb.Prefix, idx)
			outer = s.CGNNS
		}
		tb.addNS(outer)
		tb.must(tb.Router, "ip", "link", "add", s.wanIf, "type", "veth", "peer", "name", "wan", "netns", outer)
		tb.must(tb.Router, "ip", "addr", "add", fmt.Sprintf("172.31.%d.254/24", idx), "dev", s.wanIf)
		tb.must(tb.Router, "ip", "link", "set", s.wanIf, "up")
		tb.must(outer, "ip", "addr", "add", s.Public.String()+"/24", "dev", "wan")
		tb.must(outer, "ip", "link", "set", "wan", "up")
		tb.must(outer, "ip", "route", "add", "default", "via", fmt.Sprintf("172.31.%d.254", idx))
		if s.double {
			// CGN: wan 172.31.N.1, isp side 100.64.N.254; the home NAT's
			// wan is 100.64.N.1.
			tb.addNS(s.NATNS)
			tb.must(s.CGNNS, "ip", "link", "add", "isp", "type", "veth", "peer", "name", "wan", "netns", s.NATNS)
			tb.must(s.CGNNS, "ip", "addr", "add", fmt.Sprintf("100.64.%d.254/24", idx), "dev", "isp")
			tb.must(s.CGNNS, "ip", "link", "set", "isp", "up")
			tb.must(s.CGNNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			tb.must(s.CGNNS, "iptables", "-P", "FORWARD", "ACCEPT")
			tb.must(s.CGNNS, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE")
			homeWan := fmt.Sprintf("100.64.%d.1/24", idx)
			tb.must(s.NATNS, "ip", "addr", "add", homeWan, "dev", "wan")
			tb.must(s.NATNS, "ip", "link", "set", "wan", "up")
			tb.must(s.NATNS, "ip", "route", "add", "default", "via", fmt.Sprintf("100.64.%d.254", idx))
		}
		tb.must(s.NATNS, "ip", "link", "add", "lan", "type", "bridge")
		tb.must(s.NATNS, "ip", "addr", "add", s.Gw.String()+"/24", "dev", "lan")
		tb.must(s.NATNS, "ip", "link", "set", "lan", "up")
		tb.must(s.NATNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		tb.must(s.NATNS, "iptables", "-P", "FORWARD", "ACCEPT")
		masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"}
		if s.NATType == NATSymmetric {
			masq = append(masq, "--random-fully")
		}
		tb.must(s.NATNS, masq...)
		if s.NATType == NATSequential {
			// Before iptables' nat chain (srcnat, 100): the first NAT
			// rule that binds a new flow wins.
			// numgen's own value would reach the port in host byte
			// order; a map to ports gives them in sequence.
			var ports []string
			for i := 0; i < sequentialPorts; i++ {
				ports = append(ports, fmt.Sprintf("%d : %d", i, sequentialBase+i))
			}
			rules := fmt.Sprintf(`table ip seqnat {
	chain post {
		type nat hook postrouting priority 99; policy accept;
		oifname "wan" meta l4proto udp snat to %s : numgen inc mod %d map { %s }
	}
}
`, s.Public, sequentialPorts, strings.Join(ports, ", "))
			cmd := exec.Command("ip", "netns", "exec", s.NATNS, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				tb.t.Fatalf("meshtest: sequential NAT for site %s (needs nft): %v\n%s", name, err, out)
			}
		}
	}
	if s.Delay > 0 {
		ms := fmt.Sprintf("%dms", s.Delay.Milliseconds())
		if out, err := tb.exec(tb.Router, "tc", "qdisc", "add", "dev", s.wanIf, "root", "netem", "delay", ms, "limit", "100000"); err == nil {
			s.Delayed, s.DelayBy = true, "netem"
		} else if derr := tb.delayTo(s.wanPfx, s.Delay); derr != nil {
			tb.t.Logf("meshtest: no WAN delay for site %s (tc netem: %v %s; TUN delayer: %v)", name, err, bytes.TrimSpace(out), derr)
		} else {
			s.Delayed, s.DelayBy = true, "tun"
		}
		if s.Delayed {
			tb.t.Logf("meshtest: site %s: WAN delay %v one way into the site (%s)", name, s.Delay, s.DelayBy)
		}
	}
	return s
}

// DelayNote says which WAN delay is in force at each site, for logs and
// figures: "london 15ms (tun), paris 40ms (tun)" or "no WAN delay".
func (tb *Testbed) DelayNote() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var parts []string
	for _, s := range tb.siteList {
		switch {
		case s.Delayed:
			parts = append(parts, fmt.Sprintf("%s %v (%s)", s.Name, s.Delay, s.DelayBy))
		case s.Delay > 0:
			parts = append(parts, fmt.Sprintf("%s NONE (wanted %v)", s.Name, s.Delay))
		}
	}
	if len(parts) == 0 {
		return "no WAN delay"
	}
	return "WAN delay one way into: " + strings.Join(parts, ", ")
}

// AddHost adds a host on a (public) site, creating the site if needed.
func (tb *Testbed) AddHost(site, name string) *Host {
	tb.t.Helper()
	return tb.addHost(tb.AddSite(site), name)
}

// AddNATHost adds a host behind the NAT of site, creating it if needed.
func (tb *Testbed) AddNATHost(site, name string) *Host {
	tb.t.Helper()
	return tb.addHost(tb.AddNATSite(site), name)
}

func (tb *Testbed) addHost(s *Site, name string) *Host {
	tb.t.Helper()
	tb.mu.Lock()
	if _, ok := tb.hosts[name]; ok {
		tb.mu.Unlock()
		tb.t.Fatalf("meshtest: host %q exists", name)
	}
	h := &Host{tb: tb, Name: name, NS: tb.Prefix + "-" + name}
	tb.hosts[name] = h
	tb.mu.Unlock()
	tb.addNS(h.NS)
	tb.ownResolvConf(h.NS)
	tb.attach(h, s, 0)
	return h
}

// ownResolvConf gives a host namespace its own /etc/resolv.conf, a copy of
// the host's: ip netns exec bind-mounts /etc/netns/NS/resolv.conf over
// /etc/resolv.conf, so what a node writes there (weft's host DNS) stays in
// the testbed and never reaches the real host's file.
func (tb *Testbed) ownResolvConf(ns string) {
	tb.t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	tb.mu.Lock()
	tb.etcDirs = append(tb.etcDirs, dir)
	tb.mu.Unlock()
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		b = nil // an empty file still shields the host's
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatalf("meshtest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), b, 0o644); err != nil {
		tb.t.Fatalf("meshtest: %v", err)
	}
}

// attach gives h an eth0 on site s, with the site's next address; the
// link comes up upLate after the address is on it.
func (tb *Testbed) attach(h *Host, s *Site, upLate time.Duration) {
	tb.t.Helper()
	tb.mu.Lock()
	s.nhosts++
	n := s.nhosts
	first := s.first == nil
	if first {
		s.first = h
	}
	h.Site = s
	tb.mu.Unlock()
	if n > 250 {
		tb.t.Fatal("meshtest: too many hosts on one site")
	}
	h.ip = netip.AddrFrom4([4]byte{s.Subnet.Addr().As4()[0], s.Subnet.Addr().As4()[1], s.Subnet.Addr().As4()[2], byte(n)})
	parent, bridge := tb.Router, s.wanIf
	if s.NAT {
		parent, bridge = s.NATNS, "lan"
	}
	port := fmt.Sprintf("%sh%d", s.wanIf, n)
	tb.must(parent, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	tb.must(parent, "ip", "link", "set", port, "master", bridge)
	tb.must(parent, "ip", "link", "set", port, "up")
	tb.must(h.NS, "ip", "addr", "add", h.ip.String()+"/24", "dev", "eth0")
	time.Sleep(upLate)
	tb.must(h.NS, "ip", "link", "set", "eth0", "up")
	tb.must(h.NS, "ip", "route", "add", "default", "via", s.Gw.String())
	if s.NAT && s.NATType == NATFullCone && first {
		tb.must(s.NATNS, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan", "-p", "udp", "-j", "DNAT", "--to-destination", h.ip.String())
	}
}

// Move takes the host off its network and puts it on another site (which
// is created as a NAT site when natSite is set and it does not exist):
// a laptop going from Wi-Fi to LTE. Its processes keep running; its
// address, gateway and NAT change, and nothing of the old NAT's mappings
// follows it.
func (h *Host) Move(site string, natSite bool) {
	h.tb.t.Helper()
	h.MoveUpLate(site, natSite, 0)
}

// MoveUpLate is Move with the new link set up upLate after its address is
// given: a node that watched addresses only saw the new one on a link
// still down, and noticed the move late.
func (h *Host) MoveUpLate(site string, natSite bool, upLate time.Duration) {
	h.tb.t.Helper()
	var s *Site
	if natSite {
		s = h.tb.AddNATSite(site)
	} else {
		s = h.tb.AddSite(site)
	}
	h.tb.must(h.NS, "ip", "link", "del", "eth0")
	h.tb.attach(h, s, upLate)
}

// Host returns a host by name.
func (tb *Testbed) Host(name string) *Host {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.hosts[name]
}

// Hosts returns every host in creation order of their sites.
func (tb *Testbed) Hosts() []*Host {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []*Host
	for _, h := range tb.hosts {
		out = append(out, h)
	}
	sortHosts(out)
	return out
}

func sortHosts(hs []*Host) {
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hostLess(hs[j], hs[j-1]); j-- {
			hs[j], hs[j-1] = hs[j-1], hs[j]
		}
	}
}

func hostLess(a, b *Host) bool {
	if a.Site.idx != b.Site.idx {
		return a.Site.idx < b.Site.idx
	}
	return a.ip.Less(b.ip)
}

func (tb *Testbed) site(name string) *Site {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	s := tb.sites[name]
	if s == nil {
		tb.t.Fatalf("meshtest: no site %q", name)
	}
	return s
}

// CutLink drops all traffic between sites a and b at the WAN router.
func (tb *Testbed) CutLink(a, b string) {
	tb.t.Helper()
	sa, sb := tb.site(a), tb.site(b)
	key := [2]string{sa.wanIf, sb.wanIf}
	tb.mu.Lock()
	if tb.cuts[key] {
		tb.mu.Unlock()
		return
	}
	tb.cuts[key] = true
	tb.mu.Unlock()
	for _, r := range cutRules(sa, sb) {
		tb.must(tb.Router, append([]string{"iptables", "-I", "FORWARD"}, r...)...)
	}
}

// cutRules match the traffic between two sites by address, so that a
// packet looping through the TUN delayer is matched on either hop.
func cutRules(a, b *Site) [][]string {
	return [][]string{
		{"-s", a.wanPfx.String(), "-d", b.wanPfx.String(), "-j", "DROP"},
		{"-s", b.wanPfx.String(), "-d", a.wanPfx.String(), "-j", "DROP"},
	}
}

// HealLink undoes CutLink.
func (tb *Testbed) HealLink(a, b string) {
	tb.t.Helper()
	sa, sb := tb.site(a), tb.site(b)
	key := [2]string{sa.wanIf, sb.wanIf}
	rkey := [2]string{sb.wanIf, sa.wanIf}
	tb.mu.Lock()
	had := tb.cuts[key] || tb.cuts[rkey]
	if tb.cuts[rkey] {
		sa, sb = sb, sa
	}
	delete(tb.cuts, key)
	delete(tb.cuts, rkey)
	tb.mu.Unlock()
	if !had {
		return
	}
	for _, r := range cutRules(sa, sb) {
		tb.must(tb.Router, append([]string{"iptables", "-D", "FORWARD"}, r...)...)
	}
}

// Partition cuts every link between a site of one group and a site of
// another; Heal undoes it.
func (tb *Testbed) Partition(groups ...[]string) {
	tb.t.Helper()
	for i := range groups {
		for j := i + 1; j < len(groups); j++ {
			for _, a := range groups[i] {
				for _, b := range groups[j] {
					tb.CutLink(a, b)
				}
			}
		}
	}
}

// Heal removes every cut.
func (tb *Testbed) Heal() {
	tb.t.Helper()
	tb.mu.Lock()
	var cuts [][2]string
	for k := range tb.cuts {
		cuts = append(cuts, k)
	}
	tb.mu.Unlock()
	byIf := map[string]string{}
	for _, s := range tb.siteList {
		byIf[s.wanIf] = s.Name
	}
	for _, c := range cuts {
		tb.HealLink(byIf[c[0]], byIf[c[1]])
	}
}

// cleanup kills every process by PID, then deletes every namespace by name.
func (tb *Testbed) cleanup() {
	tb.mu.Lock()
	procs := append([]*Process(nil), tb.procs...)
	nss := append([]string(nil), tb.nsList...)
	dl := tb.delay
	tb.delay = nil
	tb.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(3 * time.Second) }()
	}
	wg.Wait()
	if tb.t.Failed() || os.Getenv("WEFT_MESHTEST_LOGS") != "" {
		for _, p := range procs {
			tb.t.Logf("meshtest: --- output of %s on %s (last 400 lines) ---\n%s", p.argv0(), p.host.Name, tail(p.Output(), 400))
		}
	}
	dl.close()
	tb.mu.Lock()
	dirs := tb.etcDirs
	tb.mu.Unlock()
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := tb.exec("", "ip", "netns", "del", nss[i]); err != nil && !strings.Contains(string(out), "No such file") {
			tb.t.Logf("meshtest: deleting namespace %s: %v %s", nss[i], err, out)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// IP is the host's underlay address.
func (h *Host) IP() netip.Addr { return h.ip }

// String names the host.
func (h *Host) String() string { return h.Name }

// Exec runs argv in the host's namespace and returns its combined output.
func (h *Host) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", h.NS}, argv...)
	ip, err := lookPath("ip")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, ip, full...).CombinedOutput()
}

// Process is a long-running command in a host namespace.
type Process struct {
	host *Host
	argv []string
	cmd  *exec.Cmd
	out  string // log file
	done chan struct{}
	err  error
}

// Start runs argv in the host's namespace, in its own mount namespace with
// a private tmpfs on /run/wireguard. The process is killed by PID when the
// test ends. Its output is kept (Output) and logged if the test fails.
func (h *Host) Start(argv ...string) *Process {
	h.tb.t.Helper()
	ip, err := lookPath("ip")
	if err != nil {
		h.tb.t.Fatal(err)
	}
	script := `mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 tmpfs /run/wireguard && exec "$@"`
	args := append([]string{"netns", "exec", h.NS, "sh", "-c", script, "sh"}, argv...)
	cmd := exec.Command(ip, args...)
	f, err := os.CreateTemp(h.tb.dir, h.Name+"-*.log")
	if err != nil {
		h.tb.t.Fatal(err)
	}
	defer f.Close()
	p := &Process{host: h, argv: argv, cmd: cmd, out: f.Name(), done: make(chan struct{})}
	// Output goes to a file (no pipe a child could hold open); the
	// process gets its own group so its children die with it.
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		h.tb.t.Fatalf("meshtest: starting %v on %s: %v", argv, h.Name, err)
	}
	h.tb.mu.Lock()
	h.tb.procs = append(h.tb.procs, p)
	h.tb.mu.Unlock()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p
}

func (p *Process) argv0() string {
	if len(p.argv) == 0 {
		return "?"
	}
	return strings.Join(p.argv[:min(2, len(p.argv))], " ")
}

// PID is the process id (ip netns exec and sh exec into the command).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output is everything the process wrote so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit error once Done is closed.
func (p *Process) Err() error { <-p.done; return p.err }

// Stop sends SIGTERM and waits up to 10 s, then kills.
func (p *Process) Stop() error { p.stop(10 * time.Second); return p.Err() }

// Kill sends SIGKILL (no graceful leave) and waits.
func (p *Process) Kill() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// Suspend stops the process (SIGSTOP), as a laptop's lid closing does;
// Resume continues it.
func (p *Process) Suspend() { p.signal(syscall.SIGSTOP) }

// Resume continues a suspended process (SIGCONT).
func (p *Process) Resume() { p.signal(syscall.SIGCONT) }

// signal signals the process group the process leads (by its id).
func (p *Process) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *Process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGCONT) // a suspended process could not stop
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the leader.
	p.signal(syscall.SIGKILL)
}

// Eventually retries cond every 100 ms until it returns nil or within
// passes; it returns the last error.
func Eventually(ctx context.Context, within time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var err error
	for {
		if err = cond(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("not within %v: %w", within, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
