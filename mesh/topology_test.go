package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func pi(name, block string, eps ...string) peerInfo {
	p := peerInfo{Name: name, Status: "alive", PublicKey: "key-" + name, BlockTime: 1}
	if block != "" {
		p.Block = netip.MustParsePrefix(block)
	}
	for _, e := range eps {
		p.Endpoints = append(p.Endpoints, netip.MustParseAddrPort(e))
	}
	return p
}

func up(ep string) linkState {
	l := linkState{Up: true, EverUp: true, Session: true, Since: t0.Add(-time.Minute), AddedAt: t0.Add(-time.Minute), LastHS: t0.Add(-time.Minute)}
	if ep != "" {
		l.Endpoint = netip.MustParseAddrPort(ep)
	}
	return l
}

// render prints a topology one peer per line, for readable diffs.
func render(tp topology) string {
	var b strings.Builder
	for _, p := range tp.Peers {
		fmt.Fprintf(&b, "%s ep=%v allowed=%v ka=%v path=%s", p.Name, p.Endpoint, p.AllowedIPs, p.Keepalive, p.Path)
		if p.Via != "" {
			fmt.Fprintf(&b, " via=%s", p.Via)
		}
		if p.Readd {
			b.WriteString(" readd")
		}
		if p.Poke {
			b.WriteString(" poke")
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "routes=%v\n", tp.Routes)
	return b.String()
}

func TestComputeTopology(t *testing.T) {
	self := pi("m", "10.47.1.0/24", "172.20.1.2:51820")
	base := topoInput{
		Self:          self,
		LocalPrefixes: []netip.Prefix{netip.MustParsePrefix("172.20.1.0/24")},
		Now:           t0,
		Probe:         time.Second,
		Grace:         6 * time.Second,
		Rotate:        5 * time.Second,
		DefaultPort:   51820,
		Overlay:       netip.MustParsePrefix("10.47.0.0/16"),
		RTT: func(a, b string) (time.Duration, bool) {
			rtt := map[string]time.Duration{"r1": 30 * time.Millisecond, "r2": 5 * time.Millisecond}
			if d, ok := rtt[a]; ok {
				return d, true
			}
			if d, ok := rtt[b]; ok {
				return d, true
			}
			return 0, false
		},
	}
	tests := []struct {
		name string
		mod  func(in *topoInput)
		want string
	}{
		{
			name: "direct peers; left and keyless members skipped; failed kept",
			mod: func(in *topoInput) {
				failed := pi("f", "10.47.6.0/24", "172.20.2.6:51820")
				failed.Status = "failed"
				left := pi("l", "10.47.7.0/24", "172.20.2.7:51820")
				left.Status = "left"
				nokey := pi("n", "10.47.8.0/24")
				nokey.PublicKey = ""
				in.Peers = []peerInfo{pi("a", "10.47.2.0/24", "172.20.2.2:51820"), failed, left, nokey, pi("noblock", "")}
				in.Links = map[string]linkState{"a": up("172.20.2.2:51820"), "f": {EverUp: true, Since: t0.Add(-time.Hour)}}
			},
			want: `a ep=172.20.2.2:51820 allowed=[10.47.2.0/24] ka=0s path=direct
f ep=172.20.2.6:51820 allowed=[10.47.6.0/24] ka=0s path=down
routes=[10.47.2.0/24 10.47.6.0/24]
`,
		},
		{
			name: "same-subnet candidate first; roamed endpoint kept while up",
			mod: func(in *topoInput) {
				a := pi("a", "10.47.2.0/24", "198.51.100.7:40000", "172.20.1.9:51820", "10.47.2.1:51820")
				a.Addr = netip.MustParseAddr("10.47.2.1") // gossip over the overlay: never an endpoint
				in.Peers = []peerInfo{
					a,
					pi("b", "10.47.3.0/24", "198.51.100.8:51820"),
				}
				in.Links = map[string]linkState{"a": {Since: t0}, "b": up("198.51.100.99:1234")}
			},
			want: `a ep=172.20.1.9:51820 allowed=[10.47.2.0/24] ka=0s path=down
b ep=198.51.100.99:1234 allowed=[10.47.3.0/24] ka=0s path=direct
routes=[10.47.2.0/24 10.47.3.0/24]
`,
		},
		{
			name: "dead direct path relayed via the public peer with the lowest RTT",
			mod: func(in *topoInput) {
				nat := pi("n1", "10.47.9.0/24", "203.0.113.1:51820")
				nat.NAT = true
				in.Peers = []peerInfo{pi("b", "10.47.3.0/24", "172.20.3.3:51820"), pi("r1", "10.47.4.0/24", "172.20.4.4:51820"), pi("r2", "10.47.5.0/24", "172.20.5.5:51820"), nat}
				in.Links = map[string]linkState{
					"b":  {EverUp: true, Since: t0.Add(-time.Minute), Endpoint: netip.MustParseAddrPort("172.20.3.3:51820")},
					"r1": up(""), "r2": up(""), "n1": up(""),
				}
			},
			want: `b ep=172.20.3.3:51820 allowed=[] ka=0s path=relay via=r2
n1 ep=203.0.113.1:51820 allowed=[10.47.9.0/24] ka=0s path=direct
r1 ep=172.20.4.4:51820 allowed=[10.47.4.0/24] ka=0s path=direct
r2 ep=172.20.5.5:51820 allowed=[10.47.3.0/24 10.47.5.0/24] ka=0s path=direct
routes=[10.47.3.0/24 10.47.4.0/24 10.47.5.0/24 10.47.9.0/24]
`,
		},
		{
			name: "relay at a third site preferred over a closer one at either end",
			mod: func(in *topoInput) {
				in.Self.Site = "london"
				b := pi("b", "10.47.3.0/24", "172.20.3.3:51820")
				b.Site = "paris"
				near := pi("r2", "10.47.5.0/24", "172.20.5.5:51820")
				near.Site = "london"
				far := pi("r1", "10.47.4.0/24", "172.20.4.4:51820")
				far.Site = "aws"
				in.Peers = []peerInfo{b, far, near}
				in.Links = map[string]linkState{
					"b":  {EverUp: true, Since: t0.Add(-time.Minute), Endpoint: netip.MustParseAddrPort("172.20.3.3:51820")},
					"r1": up(""), "r2": up(""),
				}
			},
			want: `b ep=172.20.3.3:51820 allowed=[] ka=0s path=relay via=r1
r1 ep=172.20.4.4:51820 allowed=[10.47.3.0/24 10.47.4.0/24] ka=0s path=direct
r2 ep=172.20.5.5:51820 allowed=[10.47.5.0/24] ka=0s path=direct
routes=[10.47.3.0/24 10.47.4.0/24 10.47.5.0/24]
`,
		},
		{
			name: "new silent peer waits out the grace period; no relay without a candidate",
			mod: func(in *topoInput) {
				in.Peers = []peerInfo{pi("b", "10.47.3.0/24", "172.20.3.3:51820"), pi("c", "10.47.4.0/24", "172.20.3.4:51820")}
				in.Links = map[string]linkState{"b": {Since: t0.Add(-2 * time.Second)}, "c": {Since: t0.Add(-time.Minute)}}
			},
			want: `b ep=172.20.3.3:51820 allowed=[10.47.3.0/24] ka=0s path=down
c ep=172.20.3.4:51820 allowed=[10.47.4.0/24] ka=0s path=down
routes=[10.47.3.0/24 10.47.4.0/24]
`,
		},
		{
			name: "RTTs unknown: the seed relays, not the smallest name (both ends of a pair pick the same)",
			mod: func(in *topoInput) {
				b := pi("b", "10.47.3.0/24", "172.20.3.3:51820")
				in.Peers = []peerInfo{b, pi("d1", "10.47.4.0/24", "172.20.4.4:51820"), pi("m1", "10.47.5.0/24", "172.20.5.5:51820")}
				in.Links = map[string]linkState{
					"b":  {EverUp: true, Since: t0.Add(-time.Minute), Endpoint: netip.MustParseAddrPort("172.20.3.3:51820")},
					"d1": up(""), "m1": up(""),
				}
				in.Seeds = []netip.Addr{netip.MustParseAddr("172.20.5.5")}
				in.RTT = nil
			},
			want: `b ep=172.20.3.3:51820 allowed=[] ka=0s path=relay via=m1
d1 ep=172.20.4.4:51820 allowed=[10.47.4.0/24] ka=0s path=direct
m1 ep=172.20.5.5:51820 allowed=[10.47.3.0/24 10.47.5.0/24] ka=0s path=direct
routes=[10.47.3.0/24 10.47.4.0/24 10.47.5.0/24]
`,
		},
		{
			name: "a lower RTT wins over the seed",
			mod: func(in *topoInput) {
				b := pi("b", "10.47.3.0/24", "172.20.3.3:51820")
				in.Peers = []peerInfo{b, pi("r1", "10.47.4.0/24", "172.20.4.4:51820"), pi("r2", "10.47.5.0/24", "172.20.5.5:51820")}
				in.Links = map[string]linkState{
					"b":  {EverUp: true, Since: t0.Add(-time.Minute), Endpoint: netip.MustParseAddrPort("172.20.3.3:51820")},
					"r1": up(""), "r2": up(""),
				}
				in.Seeds = []netip.Addr{netip.MustParseAddr("172.20.4.4")}
			},
			want: `b ep=172.20.3.3:51820 allowed=[] ka=0s path=relay via=r2
r1 ep=172.20.4.4:51820 allowed=[10.47.4.0/24] ka=0s path=direct
r2 ep=172.20.5.5:51820 allowed=[10.47.3.0/24 10.47.5.0/24] ka=0s path=direct
routes=[10.47.3.0/24 10.47.4.0/24 10.47.5.0/24]
`,
		},
		{
			name: "block conflict: the earlier claim gets the block",
			mod: func(in *topoInput) {
				early := pi("x", "10.47.3.0/24", "172.20.3.3:51820")
				late := pi("w", "10.47.3.0/24", "172.20.3.4:51820")
				late.BlockTime = 7
				mine := pi("v", "10.47.1.0/24", "172.20.3.5:51820")
				mine.BlockTime = 9 // loses to self (time 1)
				in.Peers = []peerInfo{early, late, mine}
				in.Links = map[string]linkState{"x": up(""), "w": up(""), "v": up("")}
			},
			want: `v ep=172.20.3.5:51820 allowed=[] ka=0s path=direct
w ep=172.20.3.4:51820 allowed=[] ka=0s path=direct
x ep=172.20.3.3:51820 allowed=[10.47.3.0/24] ka=0s path=direct
routes=[10.47.3.0/24]
`,
		},
		{
			name: "idle links quiet; data with no reply answered; a silent session probed and handshaken again, by either side",
			mod: func(in *topoInput) {
				in.Peers = []peerInfo{pi("a", "10.47.2.0/24", "172.20.2.2:51820"), pi("b", "10.47.3.0/24", "172.20.3.3:51820"), pi("z", "10.47.4.0/24", "172.20.4.4:51820")}
				ack := up("172.20.2.2:51820")
				ack.Ack = true
				silent := up("172.20.3.3:51820")
				silent.Up = false
				silentToo := silent
				silentToo.Endpoint = netip.MustParseAddrPort("172.20.4.4:51820")
				in.Links = map[string]linkState{"a": ack, "b": silent, "z": silentToo}
			},
			want: `a ep=172.20.2.2:51820 allowed=[10.47.2.0/24 10.47.3.0/24 10.47.4.0/24] ka=0s path=direct poke
b ep=172.20.3.3:51820 allowed=[] ka=1s path=relay via=a readd poke
z ep=172.20.4.4:51820 allowed=[] ka=1s path=relay via=a readd poke
routes=[10.47.2.0/24 10.47.3.0/24 10.47.4.0/24]
`,
		},
		{
			name: "behind NAT: the NAT keepalive toward every peer, another NAT too (an idle punched path sends nothing else)",
			mod: func(in *topoInput) {
				in.Self.NAT = true
				in.Self.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:51820"), netip.MustParseAddrPort("172.20.1.2:51820")}
				in.NATKeepalive = 20 * time.Second
				nat := pi("n1", "10.47.9.0/24", "203.0.113.1:51820", "192.168.7.2:51820")
				nat.NAT = true
				in.Peers = []peerInfo{pi("a", "10.47.2.0/24", "172.20.2.2:51820"), nat}
				in.Links = map[string]linkState{"a": up("172.20.2.2:51820"), "n1": up("203.0.113.1:51820")}
			},
			want: `a ep=172.20.2.2:51820 allowed=[10.47.2.0/24] ka=20s path=direct
n1 ep=203.0.113.1:51820 allowed=[10.47.9.0/24] ka=20s path=direct
routes=[10.47.2.0/24 10.47.9.0/24]
`,
		},
		{
			name: "behind NAT: data unanswered on a punched path asks for a fresh handshake, as on any other",
			mod: func(in *topoInput) {
				in.Self.NAT = true
				in.Self.Endpoints = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.9:51820"), netip.MustParseAddrPort("172.20.1.2:51820")}
				in.NATKeepalive = 20 * time.Second
				nat := pi("n1", "10.47.9.0/24", "203.0.113.1:51820", "192.168.7.2:51820")
				nat.NAT = true
				verify := up("203.0.113.1:51820")
				verify.Verify = true
				in.Peers = []peerInfo{nat}
				in.Links = map[string]linkState{"n1": verify}
			},
			want: `n1 ep=203.0.113.1:51820 allowed=[10.47.9.0/24] ka=1s path=direct readd
routes=[10.47.9.0/24]
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.mod(&in)
			got := render(computeTopology(in))
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if again := render(computeTopology(in)); again != got {
				t.Errorf("not deterministic:\n%s", again)
			}
		})
	}
}

func TestChooseEndpointRotates(t *testing.T) {
	p := pi("a", "10.47.2.0/24", "198.51.100.7:40000", "192.168.1.2:51820")
	in := topoInput{Rotate: 5 * time.Second, DefaultPort: 51820}
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		in.Now = t0.Add(time.Duration(i) * 5 * time.Second)
		seen[chooseEndpoint(in, p, linkState{}).String()] = true
	}
	if !seen["198.51.100.7:40000"] || !seen["192.168.1.2:51820"] || len(seen) != 2 {
		t.Errorf("rotation tried %v", seen)
	}
}

func TestDeriveAndResolveBlock(t *testing.T) {
	overlay := netip.MustParsePrefix("10.47.0.0/16")
	b1 := deriveBlock(overlay, 24, "pk", 0)
	if b1 != deriveBlock(overlay, 24, "pk", 0) || !overlay.Contains(b1.Addr()) || b1.Bits() != 24 || b1.Masked() != b1 {
		t.Fatalf("derive = %v", b1)
	}
	if deriveBlock(overlay, 24, "pk", 1) == b1 && deriveBlock(overlay, 24, "pk", 2) == b1 {
		t.Error("salt does not change the block")
	}
	mine := blockClaim{Block: b1, Time: 5}
	// An earlier claim on the same block wins: self re-derives.
	other := peerInfo{Name: "z", Block: b1, BlockTime: 3, Status: "alive"}
	got, changed := resolveBlock(overlay, 24, "pk", "a", mine, []peerInfo{other}, 9)
	if !changed || got.Block == b1 || got.Salt == 0 || got.Time != 9 {
		t.Errorf("lost claim kept: %+v", got)
	}
	// A later claim loses to self.
	other.BlockTime = 8
	if _, changed := resolveBlock(overlay, 24, "pk", "a", mine, []peerInfo{other}, 9); changed {
		t.Error("earlier claim gave up")
	}
	// Equal time: smaller name wins.
	other.BlockTime = 5
	if _, changed := resolveBlock(overlay, 24, "pk", "a", mine, []peerInfo{other}, 9); changed {
		t.Error("a < z but a gave up")
	}
	// Left members hold nothing; static claims never move.
	other.BlockTime, other.Status = 1, "left"
	if _, changed := resolveBlock(overlay, 24, "pk", "a", mine, []peerInfo{other}, 9); changed {
		t.Error("lost to a left member")
	}
	other.Status = "alive"
	mine.Static = true
	if _, changed := resolveBlock(overlay, 24, "pk", "a", mine, []peerInfo{other}, 9); changed {
		t.Error("static block moved")
	}
	// Persistence round trip.
	dir := t.TempDir()
	if err := saveClaim(dir, got); err != nil {
		t.Fatal(err)
	}
	back, ok, err := loadClaim(dir, overlay, 24)
	if err != nil || !ok || back != got {
		t.Errorf("loadClaim = %+v %v %v, want %+v", back, ok, err, got)
	}
	if _, ok, _ := loadClaim(dir, overlay, 25); ok {
		t.Error("claim of another layout accepted")
	}
}

func TestKeyPersistsWithMode0600(t *testing.T) {
	dir := t.TempDir()
	k1, err := loadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := loadOrCreateKey(dir)
	if err != nil || k1 != k2 {
		t.Fatalf("key changed on reload: %v", err)
	}
	fi, err := statKey(dir)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v", fi.Mode().Perm(), err)
	}
}

func TestEndpointsTagBudget(t *testing.T) {
	var eps []netip.AddrPort
	for i := 0; i < 10; i++ {
		eps = append(eps, netip.MustParseAddrPort(fmt.Sprintf("[2001:db8::%d]:51820", i+1)))
	}
	s := encodeEndpoints(eps)
	if got := decodeEndpoints(s); len(got) != maxEndpoints {
		t.Errorf("kept %d endpoints: %q", len(got), s)
	}
}

func TestUnderlayInterface(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		ifc  net.Interface
		want bool
	}{
		{net.Interface{Name: "eth0", HardwareAddr: mac, Flags: net.FlagUp | net.FlagBroadcast}, true},
		{net.Interface{Name: "wg0", Flags: net.FlagUp | net.FlagPointToPoint}, false},
		{net.Interface{Name: "tun0", Flags: net.FlagUp}, false},
		{net.Interface{Name: "docker0", HardwareAddr: mac, Flags: net.FlagUp}, false},
		{net.Interface{Name: "br-1a2b", HardwareAddr: mac, Flags: net.FlagUp}, false},
	} {
		if got := underlayInterface(c.ifc); got != c.want {
			t.Errorf("%s: %v, want %v", c.ifc.Name, got, c.want)
		}
	}
}

// TestHandshakeRoles checks who initiates, how the silent side waits, and
// the hole punch between two nodes behind NAT.
func TestHandshakeRoles(t *testing.T) {
	slot := t0
	self := pi("m", "10.47.1.0/24", "192.168.1.2:51820")
	in := topoInput{Self: self, Probe: time.Second, Rotate: 5 * time.Second, DefaultPort: 51820,
		Overlay: netip.MustParsePrefix("10.47.0.0/16"), Grace: time.Hour}
	plan := func(in topoInput, p peerInfo, l linkState) peerPlan {
		in.Peers = []peerInfo{p}
		in.Links = map[string]linkState{p.Name: l}
		return computeTopology(in).Peers[0]
	}
	fresh := func(at time.Time) linkState { return linkState{Since: at, AddedAt: at} }

	// Public pair: the smaller name initiates and retries quickly; the
	// other stays silent, then falls back to initiating.
	in.Now = slot
	if pl := plan(in, pi("z", "10.47.2.0/24", "172.20.2.2:51820"), fresh(slot.Add(-time.Second))); pl.Keepalive != time.Second || !pl.Readd {
		t.Errorf("initiator toward z: %+v", pl)
	}
	if pl := plan(in, pi("a", "10.47.2.0/24", "172.20.2.2:51820"), fresh(slot.Add(-time.Second))); pl.Keepalive != 0 || pl.Readd {
		t.Errorf("responder toward a before the fallback: %+v", pl)
	}
	if pl := plan(in, pi("a", "10.47.2.0/24", "172.20.2.2:51820"), fresh(slot.Add(-4*time.Second))); pl.Keepalive != time.Second || !pl.Readd {
		t.Errorf("responder toward a after the fallback: %+v", pl)
	}
	// Behind NAT, m initiates toward a public a whatever the names.
	nat := in
	nat.Self.NAT = true
	if pl := plan(nat, pi("a", "10.47.2.0/24", "172.20.2.2:51820"), fresh(slot.Add(-time.Second))); pl.Keepalive != time.Second || !pl.Readd {
		t.Errorf("NATed m toward public a: %+v", pl)
	}

	// Both behind NAT, on different LANs: relayed at once, and nothing
	// goes to the peer but in a punch window (punch.go), which starts with
	// a handshake; a closed window drops the endpoint again.
	peer := pi("z", "10.47.2.0/24", "203.0.113.9:51820", "192.168.9.2:51820")
	peer.NAT, peer.Reflexive = true, 1
	refl := netip.MustParseAddrPort("203.0.113.9:51820")
	lan := netip.MustParseAddrPort("192.168.9.2:51820")
	nat.LocalPrefixes = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
	nat.Now = slot
	pl := plan(nat, peer, fresh(slot.Add(-time.Second)))
	if pl.Endpoint.IsValid() || pl.Keepalive != 0 || pl.Readd {
		t.Errorf("NAT pair outside a punch window: %+v", pl)
	}
	open := fresh(slot.Add(-time.Second))
	open.PunchTo, open.PunchStart = refl, true
	if pl := plan(nat, peer, open); pl.Endpoint != refl || !pl.Readd || pl.Keepalive != time.Second {
		t.Errorf("punch window opening: %+v", pl)
	}
	open.PunchStart = false
	if pl := plan(nat, peer, open); pl.Endpoint != refl || pl.Readd {
		t.Errorf("punch window open: %+v", pl)
	}
	closed := fresh(slot.Add(-time.Second))
	closed.PunchClear = true
	if pl := plan(nat, peer, closed); pl.Endpoint.IsValid() || !pl.Readd {
		t.Errorf("punch window closed: %+v", pl)
	}
	withRelay := nat
	withRelay.Peers = []peerInfo{peer, pi("r", "10.47.3.0/24", "172.20.3.2:51820")}
	withRelay.Links = map[string]linkState{"z": fresh(slot.Add(-time.Second)), "r": {Up: true, EverUp: true, Since: slot.Add(-time.Minute)}}
	for _, p := range computeTopology(withRelay).Peers {
		if p.Name == "z" && (p.Path != "relay" || p.Via != "r") {
			t.Errorf("NAT pair not relayed at once: %+v", p)
		}
	}
	// On one LAN (behind the same NAT) they need no punch.
	same := peer
	same.Endpoints = []netip.AddrPort{refl, netip.MustParseAddrPort("192.168.1.7:51820")}
	if pl := plan(nat, same, fresh(slot.Add(-time.Second))); pl.Endpoint != same.Endpoints[1] || !pl.Readd {
		t.Errorf("NAT peer on our LAN: %+v", pl)
	}
	// Behind a hard NAT, z initiates toward an easy a whatever the names.
	hard := nat
	hard.Self.HardNAT = true
	a := peer
	a.Name = "a"
	if !initiates(hard.Self, a) || initiates(nat.Self, peer) == initiates(peer, nat.Self) {
		t.Errorf("initiator roles: hard m -> a %v", initiates(hard.Self, a))
	}
	if pl := plan(nat, a, fresh(slot.Add(-time.Minute))); pl.Endpoint.IsValid() || pl.Keepalive != 0 || pl.Readd {
		t.Errorf("responder of a punch: %+v", pl)
	}
	// A public node not yet sure of itself keeps off a NATed peer's
	// reflexive endpoint.
	if pl := plan(in, peer, fresh(slot.Add(-time.Second))); pl.Endpoint != lan {
		t.Errorf("unsettled public node toward a NATed peer: %+v", pl)
	}
}

// TestLiveness follows one peer's byte counters: an idle link stays live,
// data that gets no answer for DeadAfter takes it down, any answer brings
// it back; lone keepalives owe nothing; data in with nothing out asks for
// an answer; so between two NATs.
func TestLiveness(t *testing.T) {
	e := &engine{cfg: Config{DeadAfter: 2500 * time.Millisecond}}
	rt := &peerRuntime{everUp: true, lastHS: t0}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	step := func(s float64, rx, tx int64) { rt.traffic(rx, tx, at(s), time.Second) }
	step(1, 500, 500)
	if !e.live(rt, at(1)) || rt.ack {
		t.Fatal("an answered link is not live")
	}
	step(60, 500, 532) // one keepalive out: owes nothing
	if !e.live(rt, at(60)) {
		t.Fatal("an idle link with a keepalive out is not live")
	}
	step(61, 500, 700) // data out, nothing back
	if !e.live(rt, at(62)) || e.live(rt, at(63.6)) {
		t.Fatal("unanswered data: want live within DeadAfter of the look before the send, down after")
	}
	step(64, 532, 800) // a keepalive back
	if !e.live(rt, at(64)) {
		t.Fatal("an answer does not bring the link back")
	}
	step(65, 700, 800)
	if !rt.ack {
		t.Fatal("data in with nothing out: want an answer")
	}
	step(66, 900, 900)
	if rt.ack {
		t.Fatal("data answered by data: no keepalive needed")
	}
	step(67, 10, 0) // re-added: counters from 0
	if rt.waitSince != (time.Time{}) || !e.live(rt, at(67)) {
		t.Fatal("counters reset by a re-add")
	}
	if !e.live(rt, at(70)) {
		t.Fatal("an idle link silent for 3 s is not live")
	}
	rt.staleBefore = at(68)
	if e.live(rt, at(69)) {
		t.Fatal("a session from before a move counts")
	}
}

func TestPredictPorts(t *testing.T) {
	ap := netip.MustParseAddrPort
	if got := predictPorts([]netip.AddrPort{ap("203.0.113.5:40001"), ap("203.0.113.5:40004"), ap("203.0.113.5:40002")}); len(got) != seqAhead+1 || got[0] != ap("203.0.113.5:40003") || got[1] != ap("203.0.113.5:40005") || got[seqAhead].Port() != 40004+seqAhead {
		t.Errorf("sequential ports: predicted %v", got)
	}
	for name, obs := range map[string][]netip.AddrPort{
		"one observation": {ap("203.0.113.5:40001")},
		"one port":        {ap("203.0.113.5:40001"), ap("203.0.113.5:40001")},
		"random ports":    {ap("203.0.113.5:40001"), ap("203.0.113.5:52013")},
		"two addresses":   {ap("203.0.113.5:40001"), ap("203.0.113.6:40002")},
	} {
		if got := predictPorts(obs); got != nil {
			t.Errorf("%s: predicted %v, want nothing", name, got)
		}
	}
	if got := predictPorts([]netip.AddrPort{ap("203.0.113.5:65530"), ap("203.0.113.5:65533")}); len(got) != 4 || got[3].Port() != 65535 {
		t.Errorf("near the top of the port range: %v", got)
	}
}

func TestEncodePorts(t *testing.T) {
	eps := predictPorts([]netip.AddrPort{netip.MustParseAddrPort("203.0.113.5:40000"), netip.MustParseAddrPort("203.0.113.5:40003")})
	enc := encodePorts(eps)
	if got := decodePorts(enc); !slices.Equal(got, eps) || len(eps) != seqAhead+2 || len(enc) > 300 {
		t.Errorf("%q decodes to %v, want %v", enc, got, eps)
	}
}

// A peer that initiates toward us (a newcomer behind NAT, which advertises
// only its LAN address yet) is answered where its packets come from, even
// before its handshake completes: putting its advertised address back
// would bring the link up there, unreachable, and hide its NAT from the
// report it waits for.
func TestResponderKeepsRoamedEndpoint(t *testing.T) {
	self := pi("m1", "10.47.1.0/24", "172.30.1.1:51820")
	p := pi("le1", "10.47.2.0/24", "192.168.82.1:51820")
	roamed := netip.MustParseAddrPort("172.31.82.1:51820")
	in := topoInput{Self: self, Now: t0, Probe: time.Second, Rotate: 5 * time.Second, DefaultPort: 51820,
		Overlay: netip.MustParsePrefix("10.47.0.0/16")}
	if initiates(self, p) {
		t.Fatal("m1 initiates toward le1; the case needs le1 to")
	}
	l := linkState{Since: t0.Add(-time.Second), AddedAt: t0.Add(-time.Second), Endpoint: roamed, LastRx: t0.Add(-100 * time.Millisecond)}
	var pl peerPlan
	planHandshake(in, p, l, &pl)
	if pl.Endpoint != roamed {
		t.Errorf("answering an initiating peer at %v, want where it came from (%v)", pl.Endpoint, roamed)
	}
	// Heard from before it was last added: its candidates, as before.
	l.LastRx = t0.Add(-2 * time.Second)
	pl = peerPlan{}
	planHandshake(in, p, l, &pl)
	if pl.Endpoint != p.Endpoints[0] {
		t.Errorf("a silent peer planned at %v, want its advertised %v", pl.Endpoint, p.Endpoints[0])
	}
}

// oneLinkEngine is an engine (DeadAfter 2.5 s) with one peer, key, whose
// session came up at t0: 500 bytes each way at 1 s, and tx2 bytes out in
// all at 2 s with nothing more back.
func oneLinkEngine(key wgtypes.Key, tx2 int64) (*engine, *peerRuntime) {
	rt := &peerRuntime{everUp: true, lastHS: t0}
	e := &engine{cfg: Config{DeadAfter: 2500 * time.Millisecond}, peers: map[wgtypes.Key]*peerRuntime{key: rt}}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rt.traffic(500, 500, at(1), time.Second)
	rt.traffic(500, tx2, at(2), time.Second)
	return e, rt
}

// TestUnansweredDataAsksForAHandshake: data unanswered does not take a
// working path down on its own. verifyWait before DeadAfter the engine asks
// the peer for a fresh handshake (once per wait), and the path stays up
// until the answer is due; an answer keeps it up, silence takes it down, as
// soon as DeadAfter alone did. A path that went down on one side only was a
// black hole both ways for 12 s in bench/mesh.
func TestUnansweredDataAsksForAHandshake(t *testing.T) {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	key := wgtypes.Key{1}
	start := func() (*engine, *peerRuntime) { return oneLinkEngine(key, 700) } // data out, nothing back: owed since 1
	e, rt := start()
	if l := e.link(key, nil, at(2.5)); !l.Up || l.Verify {
		t.Fatalf("unanswered for 1.5 s: %+v", l)
	}
	if l := e.link(key, nil, at(2.7)); !l.Up || !l.Verify {
		t.Fatalf("unanswered for DeadAfter-verifyWait: want a handshake asked and the path still up, got %+v", l)
	}
	if l := e.link(key, nil, at(3.55)); !l.Up || l.Verify {
		t.Fatalf("past DeadAfter while the handshake may still be answered: want up and no second ask, got %+v", l)
	}
	// Answered: the re-added peer's counters start from 0.
	rt.traffic(92, 148, at(3.3), time.Second)
	rt.lastHS = at(3.2)
	if l := e.link(key, nil, at(3.7)); !l.Up || l.Verify {
		t.Fatalf("handshake answered: want up, got %+v", l)
	}
	// A later wait asks again.
	rt.traffic(92, 400, at(4), time.Second) // owed since 3.3
	if l := e.link(key, nil, at(5)); !l.Up || !l.Verify {
		t.Fatalf("a new wait: want a new ask, got %+v", l)
	}

	// Not answered: down once the answer is due, and no ask again in the same wait.
	e, rt = start()
	e.link(key, nil, at(2.7))
	rt.traffic(0, 148, at(3.6), time.Second)
	if l := e.link(key, nil, at(3.6)); l.Up || l.Verify {
		t.Fatalf("handshake unanswered for verifyWait, data for DeadAfter: want down, got %+v", l)
	}
	if l := e.link(key, nil, at(9)); l.Up || l.Verify {
		t.Fatalf("still unanswered: want down and no new ask, got %+v", l)
	}
}

// TestSuspectAsksForAHandshake: told by the peer that the direct path is
// down on its side (takeCut), an idle, up path asks for a fresh handshake
// at the next look and goes down when that is not answered within
// verifyWait; answered, it stays up. Told through the relay, the path is
// down at once. An answer owed already counts from the earlier of the two
// (unless its own ask is due). Nothing is asked of a path that is down or
// never came up.
func TestSuspectAsksForAHandshake(t *testing.T) {
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	key := wgtypes.Key{1}
	start := func() (*engine, *peerRuntime) { return oneLinkEngine(key, 500) } // idle: nothing owed
	e, rt := start()
	if l := e.link(key, nil, at(10)); !l.Up || l.Verify {
		t.Fatalf("idle link: %+v", l)
	}
	if !e.suspect(key, at(10), false) {
		t.Fatal("suspect: not taken")
	}
	if l := e.link(key, nil, at(10)); !l.Up || !l.Verify {
		t.Fatalf("told the path is down: want a handshake asked now, path still up; got %+v", l)
	}
	if l := e.link(key, nil, at(10.5)); !l.Up || l.Verify {
		t.Fatalf("while the handshake may be answered: %+v", l)
	}
	rt.traffic(0, 148, at(10.95), time.Second) // the re-added peer: our initiation, nothing back
	if l := e.link(key, nil, at(10.95)); l.Up {
		t.Fatalf("unanswered for verifyWait: want down, got %+v", l)
	}

	e, rt = start()
	e.suspect(key, at(10), false)
	e.link(key, nil, at(10))
	rt.traffic(92, 148, at(10.2), time.Second) // answered
	rt.lastHS = at(10.1)
	if l := e.link(key, nil, at(11)); !l.Up || l.Verify {
		t.Fatalf("answered: want up, got %+v", l)
	}

	// Passed on by the relay: down at once, no second ask.
	e, _ = start()
	if !e.suspect(key, at(10), true) {
		t.Fatal("suspect (down): not taken")
	}
	if l := e.link(key, nil, at(10)); l.Up || l.Verify {
		t.Fatalf("told by the relay: want down now, no ask; got %+v", l)
	}

	e, rt = start()
	rt.everUp = false
	if e.suspect(key, at(10), false) {
		t.Error("a peer that never had a session was suspected")
	}
	// An answer owed already: asked for at once (the wait counts from
	// the earlier of the two), unless that ask is due anyway.
	e, rt = start()
	rt.traffic(500, 900, at(9.8), time.Second) // data out, nothing back: owed since 8.8 (a period back at most)
	if !e.suspect(key, at(10), false) {
		t.Fatal("a recent wait: not moved earlier")
	}
	if l := e.link(key, nil, at(10)); !l.Up || !l.Verify {
		t.Fatalf("a recent wait, told: want an ask now, got %+v", l)
	}
	e, rt = start()
	rt.traffic(500, 900, at(3), time.Second) // owed since 2
	was := rt.waitSince
	if e.suspect(key, at(3.7), false) || !rt.waitSince.Equal(was) {
		t.Errorf("a wait whose ask is due: changed %v -> %v", was.Sub(t0), rt.waitSince.Sub(t0))
	}
	// Down already: nothing to do.
	e, rt = start()
	rt.traffic(500, 900, at(3), time.Second)
	e.link(key, nil, at(4)) // the ask
	if e.suspect(key, at(10), true) {
		t.Error("a path down already was suspected")
	}
	if e.suspect(wgtypes.Key{2}, at(10), false) {
		t.Error("an unknown key was suspected")
	}
}

// TestPlanVerifyAndResponderRetry: an ask re-adds the peer with a keepalive
// (a handshake at once), whichever side initiates; a path down with a
// session is handshaken again by the responder too, except toward a peer
// behind NAT, which reaches this node first.
func TestPlanVerifyAndResponderRetry(t *testing.T) {
	self := pi("m", "10.47.1.0/24", "192.168.1.2:51820")
	in := topoInput{Self: self, Now: t0, Probe: time.Second, Rotate: 5 * time.Second, DefaultPort: 51820,
		Overlay: netip.MustParsePrefix("10.47.0.0/16"), Grace: time.Hour, NATKeepalive: 20 * time.Second}
	plan := func(p peerInfo, l linkState) peerPlan {
		in.Peers = []peerInfo{p}
		in.Links = map[string]linkState{p.Name: l}
		return computeTopology(in).Peers[0]
	}
	ep := netip.MustParseAddrPort("172.20.2.2:51820")
	up := linkState{Up: true, EverUp: true, Session: true, Since: t0.Add(-time.Minute), AddedAt: t0.Add(-time.Minute), LastHS: t0.Add(-time.Minute), Endpoint: ep}
	for _, name := range []string{"a", "z"} { // responder, initiator
		l := up
		l.Verify = true
		if pl := plan(pi(name, "10.47.2.0/24", ep.String()), l); !pl.Readd || pl.Keepalive != time.Second || pl.Path != "direct" {
			t.Errorf("ask toward %s: want a re-add with a keepalive on the direct path, got %+v", name, pl)
		}
		if pl := plan(pi(name, "10.47.2.0/24", ep.String()), up); pl.Readd || pl.Keepalive != 0 {
			t.Errorf("idle path toward %s: want nothing sent, got %+v", name, pl)
		}
		down := up
		down.Up = false
		if pl := plan(pi(name, "10.47.2.0/24", ep.String()), down); !pl.Readd {
			t.Errorf("down with a session toward %s: want a handshake again, got %+v", name, pl)
		}
		down.AddedAt = t0.Add(-time.Second)
		if pl := plan(pi(name, "10.47.2.0/24", ep.String()), down); pl.Readd {
			t.Errorf("down toward %s, re-added a second ago: want no re-add before downRetry, got %+v", name, pl)
		}
	}
	nat := pi("a", "10.47.2.0/24", ep.String())
	nat.NAT = true
	down := up
	down.Up = false
	if pl := plan(nat, down); pl.Readd {
		t.Errorf("down toward a peer behind NAT (it initiates): want no re-add, got %+v", pl)
	}
}

// TestFreshen: what the peer did after the device was read wins over the
// plan made from that read. An endpoint WireGuard moved (an authenticated
// packet came from there) is kept; an unmoved one takes the plan. A re-add
// of a peer heard from meanwhile (its handshake initiation, answered) is
// undone: the peer is updated in place; a re-add of a silent peer goes on,
// with the planned endpoint; a removal alone always goes on.
func TestFreshen(t *testing.T) {
	udp := func(s string) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	moved, still, readd, heard, gone := wgtypes.Key{1}, wgtypes.Key{2}, wgtypes.Key{3}, wgtypes.Key{4}, wgtypes.Key{5}
	read := map[wgtypes.Key]wgtypes.Peer{
		moved: {PublicKey: moved, Endpoint: udp("192.168.5.1:51820")},
		still: {PublicKey: still, Endpoint: udp("172.30.1.2:51820")},
		readd: {PublicKey: readd, Endpoint: udp("172.30.1.3:51820"), TransmitBytes: 148},
		heard: {PublicKey: heard, Endpoint: udp("192.168.4.1:51820"), TransmitBytes: 148},
		gone:  {PublicKey: gone, Endpoint: udp("172.30.1.9:51820")},
	}
	e := &engine{log: slog.New(slog.DiscardHandler), readDev: func() (*wgtypes.Device, error) {
		return &wgtypes.Device{Peers: []wgtypes.Peer{
			{PublicKey: moved, Endpoint: udp("172.31.5.1:51820"), ReceiveBytes: 32}, // roamed since the read
			{PublicKey: still, Endpoint: udp("172.30.1.2:51820")},
			{PublicKey: readd, Endpoint: udp("172.30.1.3:51820"), TransmitBytes: 296},
			{PublicKey: heard, Endpoint: udp("172.31.4.1:51820"), ReceiveBytes: 148, TransmitBytes: 240}, // its initiation, answered
			{PublicKey: gone, Endpoint: udp("172.30.1.9:51820"), ReceiveBytes: 500},                      // left, still sending
		}}, nil
	}}
	ka := time.Second
	got := e.freshen([]wgtypes.PeerConfig{
		{PublicKey: moved, Endpoint: udp("192.168.5.1:51820")},
		{PublicKey: still, Endpoint: udp("172.30.9.9:51820")},
		{PublicKey: readd, Remove: true},
		{PublicKey: readd, Endpoint: udp("172.30.1.3:51820"), PersistentKeepaliveInterval: &ka},
		{PublicKey: heard, Remove: true},
		{PublicKey: heard, Endpoint: udp("192.168.4.1:51820"), PersistentKeepaliveInterval: &ka},
		{PublicKey: gone, Remove: true},
	}, read)
	if len(got) != 6 {
		t.Fatalf("want the heard peer's removal dropped, 6 configs; got %d: %+v", len(got), got)
	}
	if !got[5].Remove || got[5].PublicKey != gone {
		t.Errorf("a peer no longer wanted must be removed even when it sent something since the read; got %+v", got[5])
	}
	if got[0].Endpoint != nil {
		t.Errorf("roamed endpoint overwritten with %v", got[0].Endpoint)
	}
	if got[1].Endpoint == nil || got[1].Endpoint.String() != "172.30.9.9:51820" {
		t.Errorf("unmoved endpoint: planned change dropped: %v", got[1].Endpoint)
	}
	if !got[2].Remove || got[2].PublicKey != readd || got[3].Endpoint == nil || got[3].Endpoint.String() != "172.30.1.3:51820" {
		t.Errorf("silent peer: want removed and added with the planned endpoint, got %+v %+v", got[2], got[3])
	}
	if got[4].PublicKey != heard || got[4].Remove || got[4].Endpoint != nil || got[4].PersistentKeepaliveInterval == nil {
		t.Errorf("heard peer: want updated in place, keeping its roamed endpoint; got %+v", got[4])
	}
}

// TestNoReaddWhileHandshaking: a new peer that was heard from since it was
// added, within handshakeHold, is not re-added by the initiator's retry or
// the responder's fallback: its initiation was answered, and its first
// packet completes the session.
func TestNoReaddWhileHandshaking(t *testing.T) {
	self := pi("m", "10.47.1.0/24", "192.168.1.2:51820")
	in := topoInput{Self: self, Now: t0, Probe: time.Second, Rotate: 5 * time.Second, DefaultPort: 51820,
		Overlay: netip.MustParsePrefix("10.47.0.0/16"), Grace: time.Hour}
	plan := func(p peerInfo, l linkState) peerPlan {
		in.Peers = []peerInfo{p}
		in.Links = map[string]linkState{p.Name: l}
		return computeTopology(in).Peers[0]
	}
	for name, wait := range map[string]time.Duration{"z": initiatorRetry, "a": responderFallback} { // initiator, responder
		added := t0.Add(-wait - time.Second)
		l := linkState{Since: added, AddedAt: added}
		if pl := plan(pi(name, "10.47.2.0/24", "172.20.2.2:51820"), l); !pl.Readd {
			t.Errorf("%s, silent: want a re-add, got %+v", name, pl)
		}
		l.LastRx = t0.Add(-300 * time.Millisecond)
		if pl := plan(pi(name, "10.47.2.0/24", "172.20.2.2:51820"), l); pl.Readd {
			t.Errorf("%s, heard 300 ms ago: want no re-add, got %+v", name, pl)
		}
		l.LastRx = t0.Add(-handshakeHold)
		if pl := plan(pi(name, "10.47.2.0/24", "172.20.2.2:51820"), l); !pl.Readd {
			t.Errorf("%s, heard handshakeHold ago and still no session: want a re-add, got %+v", name, pl)
		}
	}
}

// TestNATPeerKeepsWhereItIsHeardFrom: toward a peer behind NAT a public
// node uses the peer's LAN address only until the peer is heard from; then
// it keeps the endpoint the peer's packets came from (a newcomer that learns
// it is behind NAT keeps its sessions).
func TestNATPeerKeepsWhereItIsHeardFrom(t *testing.T) {
	self := pi("m", "10.47.1.0/24", "172.20.1.2:51820")
	in := topoInput{Self: self, Now: t0, Probe: time.Second, Rotate: 5 * time.Second, DefaultPort: 51820,
		Overlay: netip.MustParsePrefix("10.47.0.0/16"), Grace: time.Hour}
	laptop := pi("laptop", "10.47.2.0/24", "203.0.113.4:51820", "192.168.4.1:51820")
	laptop.NAT, laptop.Reflexive = true, 1
	refl := netip.MustParseAddrPort("203.0.113.4:51820")
	plan := func(l linkState) peerPlan {
		in.Peers = []peerInfo{laptop}
		in.Links = map[string]linkState{"laptop": l}
		return computeTopology(in).Peers[0]
	}
	added := t0.Add(-5 * time.Second)
	l := linkState{Since: added, AddedAt: added, Endpoint: refl, EverUp: true, LastHS: t0.Add(-2 * time.Second)}
	if pl := plan(l); pl.Endpoint.String() != "192.168.4.1:51820" {
		t.Errorf("not heard from since added: want its LAN address, got %v", pl.Endpoint)
	}
	l.LastRx = t0.Add(-time.Second)
	if pl := plan(l); pl.Endpoint != refl {
		t.Errorf("heard from a second ago at %v: want that endpoint kept, got %v", refl, pl.Endpoint)
	}
	l.LastRx = t0.Add(-11 * time.Second)
	l.AddedAt = t0.Add(-20 * time.Second)
	if pl := plan(l); pl.Endpoint.String() != "192.168.4.1:51820" {
		t.Errorf("heard from 11 s ago, path down: want its LAN address, got %v", pl.Endpoint)
	}
}
