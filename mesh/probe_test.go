package mesh

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeTUN hands out the packets it is given, one per buffer.
type fakeTUN struct {
	tun.Device
	pkts [][]byte
}

func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for ; n < len(f.pkts) && n < len(bufs); n++ {
		sizes[n] = copy(bufs[n][offset:], f.pkts[n])
	}
	f.pkts = f.pkts[n:]
	return n, nil
}

func TestProbeStretch(t *testing.T) {
	for _, c := range []struct {
		calm, want int
	}{
		{0, 1}, {1, 1}, {calmFor - 1, 1}, {calmFor, maxStretch}, {calmFor + 1, maxStretch}, {1000, maxStretch},
	} {
		if got := probeStretch(c.calm); got != c.want {
			t.Errorf("probeStretch(%d) = %d, want %d", c.calm, got, c.want)
		}
	}
}

// After a stretched pause between looks, a send that is not answered yet
// counts from one probe period back, not from the previous look: a ping
// that left just before the look is not taken for a dead path, and one
// that stays unanswered is, DeadAfter after that.
func TestStretchedLookDatesUnansweredSend(t *testing.T) {
	e := &engine{cfg: Config{DeadAfter: 2500 * time.Millisecond, ProbeInterval: time.Second}}
	rt := &peerRuntime{everUp: true, lastHS: t0}
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rt.traffic(500, 500, at(1), e.cfg.ProbeInterval)
	rt.traffic(500, 700, at(1+float64(maxStretch)), e.cfg.ProbeInterval) // a stretched look; data out, nothing back yet
	if !e.live(rt, at(1+float64(maxStretch))) {
		t.Fatalf("a send not answered yet at a stretched look marks the path down (waiting since %v)", rt.waitSince.Sub(t0))
	}
	if want := at(float64(maxStretch)); !rt.waitSince.Equal(want) {
		t.Errorf("waiting since %v, want %v (one probe period before the look)", rt.waitSince.Sub(t0), want.Sub(t0))
	}
	if e.live(rt, at(float64(maxStretch)+2.6)) {
		t.Error("still no answer DeadAfter after that: want the path down")
	}
}

func TestCalm(t *testing.T) {
	ka := wgtypes.Key{1}
	kb := wgtypes.Key{2}
	keyOf := map[string]wgtypes.Key{"a": ka, "b": kb}
	direct := peerPlan{Name: "a", Path: "direct"}
	other := peerPlan{Name: "b", Path: "direct"}
	for _, c := range []struct {
		name    string
		plan    peerPlan
		link    linkState
		wait    bool
		changed bool
		recheck bool
		want    bool
	}{
		{name: "idle direct paths", plan: direct, link: up(""), want: true},
		{name: "NAT keepalive only", plan: peerPlan{Name: "a", Path: "direct", Keepalive: 20 * time.Second}, link: up(""), want: true},
		{name: "keepalive every probe", plan: peerPlan{Name: "a", Path: "direct", Keepalive: time.Second}, link: up(""), want: false},
		{name: "path down", plan: direct, link: linkState{EverUp: true}, want: false},
		{name: "relayed", plan: peerPlan{Name: "a", Path: "relay", Via: "b"}, link: up(""), want: false},
		{name: "send unanswered", plan: direct, link: up(""), wait: true, want: false},
		{name: "poke", plan: peerPlan{Name: "a", Path: "direct", Poke: true}, link: up(""), want: false},
		{name: "re-add", plan: peerPlan{Name: "a", Path: "direct", Readd: true}, link: up(""), want: false},
		{name: "owes an answer", plan: direct, link: linkState{Up: true, Ack: true}, want: false},
		{name: "path or punch changed", plan: direct, link: up(""), changed: true, want: false},
		{name: "peers configured", plan: direct, link: up(""), recheck: true, want: false},
	} {
		e := &engine{cfg: Config{ProbeInterval: time.Second, NATKeepalive: 20 * time.Second}, recheck: c.recheck,
			peers: map[wgtypes.Key]*peerRuntime{ka: {}, kb: {}}}
		if c.wait {
			e.peers[ka].waitSince = t0
		}
		tp := topology{Peers: []peerPlan{c.plan, other}}
		links := map[string]linkState{"a": c.link, "b": up("")}
		if got := e.calm(tp, links, keyOf, c.changed); got != c.want {
			t.Errorf("%s: calm = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestIsGossip(t *testing.T) {
	udp4 := func(src, dst uint16) []byte {
		p := make([]byte, 28)
		p[0], p[9] = 0x45, 17
		p[20], p[21], p[22], p[23] = byte(src>>8), byte(src), byte(dst>>8), byte(dst)
		return p
	}
	tcp6 := func(src, dst uint16) []byte {
		p := make([]byte, 60)
		p[0], p[6] = 0x60, 6
		p[40], p[41], p[42], p[43] = byte(src>>8), byte(src), byte(dst>>8), byte(dst)
		return p
	}
	icmp := udp4(7946, 7946)
	icmp[9] = 1
	for _, c := range []struct {
		name string
		p    []byte
		port uint16
		want bool
	}{
		{"udp4 ping to the gossip port", udp4(7946, 7946), 7946, true},
		{"tcp6 push-pull from an ephemeral port", tcp6(40000, 7946), 7946, true},
		{"udp4 to another port", udp4(40000, 53), 7946, false},
		{"icmp", icmp, 7946, false},
		{"no gossip port", udp4(7946, 7946), 0, false},
		{"truncated", udp4(7946, 7946)[:22], 7946, false},
		{"empty", nil, 7946, false},
	} {
		if got := isGossip(c.p, c.port); got != c.want {
			t.Errorf("%s: isGossip = %v, want %v", c.name, got, c.want)
		}
	}
}

// The tripwire fires once per arming, on the first packet that is not
// gossip, and never while disarmed.
func TestWatchTUNTrips(t *testing.T) {
	src := &fakeTUN{}
	w := newWatchTUN(src)
	w.gossipPort.Store(7946)
	gossip := make([]byte, 28)
	gossip[0], gossip[9], gossip[20], gossip[21], gossip[22], gossip[23] = 0x45, 17, 0x1f, 0x0a, 0x1f, 0x0a
	data := make([]byte, 28)
	data[0], data[9] = 0x45, 1
	read := func(pkts ...[]byte) {
		src.pkts = pkts
		bufs, sizes := make([][]byte, len(pkts)), make([]int, len(pkts))
		for i := range bufs {
			bufs[i] = make([]byte, 16+64)
		}
		if n, err := w.Read(bufs, sizes, 16); n != len(pkts) || err != nil {
			t.Fatalf("read %d, %v", n, err)
		}
	}
	fired := func() bool {
		select {
		case <-w.C:
			return true
		default:
			return false
		}
	}
	read(data)
	if fired() {
		t.Fatal("fired while disarmed")
	}
	w.arm()
	read(gossip)
	if fired() {
		t.Fatal("gossip tripped it")
	}
	read(data, data)
	if !fired() || fired() {
		t.Fatal("want exactly one signal for the first data packet")
	}
	read(data)
	if fired() {
		t.Fatal("fired again without being armed again")
	}
}
