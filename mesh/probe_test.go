package mesh

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

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
	if !e.live(rt, at(1+float64(maxStretch)), false) {
		t.Fatalf("a send not answered yet at a stretched look marks the path down (waiting since %v)", rt.waitSince.Sub(t0))
	}
	if want := at(float64(maxStretch)); !rt.waitSince.Equal(want) {
		t.Errorf("waiting since %v, want %v (one probe period before the look)", rt.waitSince.Sub(t0), want.Sub(t0))
	}
	if e.live(rt, at(float64(maxStretch)+2.6), false) {
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
